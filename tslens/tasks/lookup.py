"""Finding tasks by name: a registered task, or a user task file by its path; and checking
that the tasks of one mixture can share its prompts."""

from __future__ import annotations

from collections.abc import Sequence

from tslens.errors import TslensError, close_names
from tslens.tasks.base import _REGISTRY, Task
from tslens.tasks.files import is_task_file, load_task_file


def get_task(name: str) -> Task:
    """A registered task by name, or a user task file by path (JSON, JSONL or CSV)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if is_task_file(name):
        return load_task_file(name)
    raise TslensError(
        f"unknown task {name!r}; run `tslens tasks` for the list" + close_names(name, _REGISTRY)
    )


def resolve_tasks(names: str | Sequence[str | Task], same_family: bool = True) -> list[Task]:
    """Parse ``"a,b,c"`` (or a list of names / tasks) into tasks that can share one mixture
    prompt; raise :class:`TslensError` for unknown, repeated or (unless ``same_family`` is
    False) cross-family tasks."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise TslensError("no tasks given; pass e.g. --tasks capital,continent")
    tasks = [get_task(n) if isinstance(n, str) else n for n in names]
    if len({t.name for t in tasks}) != len(tasks):
        raise TslensError(f"a task is listed twice in {','.join(t.name for t in tasks)}")
    families = {t.family.name for t in tasks}
    if same_family and len(families) > 1:
        detail = ", ".join(f"{t.name}: {t.family.name}" for t in tasks)
        raise TslensError(
            f"tasks of one mixture must share an input family, got {detail}; "
            "pick tasks of one family (see `tslens tasks`)"
        )
    return tasks
