"""Task registry: built-in tasks of the paper, user tasks from files or Python functions."""

from tslens.tasks import builtin as _builtin  # noqa: F401  (registers the built-in tasks)
from tslens.tasks.base import Family, Task, list_tasks, register_task, task
from tslens.tasks.files import load_task_file
from tslens.tasks.lookup import get_task, resolve_tasks

__all__ = [
    "Family",
    "Task",
    "get_task",
    "list_tasks",
    "load_task_file",
    "register_task",
    "resolve_tasks",
    "task",
]
