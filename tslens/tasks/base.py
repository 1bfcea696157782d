"""Tasks, input families and the task registry.

A :class:`Task` maps an input string to its answer string. Tasks belong to an input *family*
(``a@b`` operand pairs, country names, words, digits, 8-letter strings, ...): a mixture prompt
asks one query and expects one answer per task, so all tasks of a mixture must share a family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tslens.errors import TslensError, close_names


@dataclass(frozen=True)
class Family:
    """The inputs a group of tasks accepts.

    Attributes:
        name: stable family name (``"a@b"``, ``"country"``, ``"word"``, ``"digit"``, ...).
        load_pool: returns every input, for finite families (called lazily, so that
            importing tslens never reads data files); ``None`` when inputs are generated.
        generate: ``(rng, n) -> n inputs`` for generated families.
        template: name of the prompt template the family's tasks are usually shown in.
    """

    name: str
    load_pool: Callable[[], tuple[str, ...]] | None = None
    generate: Callable[[np.random.Generator, int], list[str]] | None = None
    template: str = "arrow"

    @property
    def pool(self) -> tuple[str, ...] | None:
        """Every input of a finite family, ``None`` for generated families."""
        return self.load_pool() if self.load_pool is not None else None

    def sample(self, rng: np.random.Generator, n: int, exclude: str | None = None) -> list[str]:
        """Draw ``n`` inputs, never ``exclude``; without replacement while the pool allows it."""
        if self.load_pool is None:
            assert self.generate is not None
            out: list[str] = []
            while len(out) < n:
                out += [x for x in self.generate(rng, n - len(out)) if x != exclude]
            return out
        pool = [x for x in self.pool or () if x != exclude]
        replace = len(pool) < n
        return [pool[i] for i in rng.choice(len(pool), size=n, replace=replace)]


@dataclass(frozen=True)
class Task:
    """A named input -> answer map within a family.

    Attributes:
        name: registry name (``"capital"``, ``"plus3"``, or a file path for user tasks).
        family: the inputs it accepts.
        fn: the map itself; must return a non-empty string for every input of the family.
        description: one line for ``tslens tasks``.
    """

    name: str
    family: Family
    fn: Callable[[str], str] = field(repr=False)
    description: str = ""

    def answer(self, x: str) -> str:
        """The task's answer to input ``x``."""
        return self.fn(x)


_REGISTRY: dict[str, Task] = {}


def register_task(task: Task, overwrite: bool = False) -> Task:
    """Add ``task`` to the registry so every ``--tasks`` / ``get_task`` can name it."""
    if task.name in _REGISTRY and not overwrite:
        raise TslensError(f"task {task.name!r} is already registered (pass overwrite=True)")
    _REGISTRY[task.name] = task
    return task


def task(
    name: str, family: Family, description: str = ""
) -> Callable[[Callable[[str], str]], Callable[[str], str]]:
    """Decorator form of :func:`register_task` for a plain ``input -> answer`` function."""

    def wrap(fn: Callable[[str], str]) -> Callable[[str], str]:
        register_task(Task(name, family, fn, description or (fn.__doc__ or "").strip()))
        return fn

    return wrap


def list_tasks() -> list[Task]:
    """All registered tasks, built-in ones first, in registration order."""
    return list(_REGISTRY.values())


def get_task(name: str) -> Task:
    """A registered task by name, or a user task file by path (JSON, JSONL or CSV)."""
    from tslens.tasks.files import is_task_file, load_task_file

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
