"""Tasks, input families and the task registry.

A :class:`Task` maps an input string to its answer string. Tasks belong to an input *family*
(``a@b`` operand pairs, country names, words, digits, 8-letter strings, ...): a mixture prompt
asks one query and expects one answer per task, so all tasks of a mixture must share a family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tslens.errors import TslensError


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
