"""User tasks from a file of input/output pairs (JSON, JSONL or CSV), loaded with ``datasets``.

Columns: ``input`` and ``output`` (``x``/``y`` also accepted), optionally ``family`` (one value
for the whole file) so that the task can be mixed with built-in tasks of that family. The task's
name is the path as given; its inputs are the file's inputs.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from tslens.errors import TslensError
from tslens.io import reading
from tslens.tasks.base import Family, Task

SUFFIXES = {".json": "json", ".jsonl": "json", ".csv": "csv"}
COLUMN_NAMES = (("input", "output"), ("x", "y"))


def is_task_file(name: str) -> bool:
    """Whether ``name`` is meant as a task file (by its suffix)."""
    return Path(name).suffix.lower() in SUFFIXES


def load_rows(path: str | Path, what: str = "file"):
    """A JSON/JSONL/CSV file as a ``datasets.Dataset``, quietly (no progress bars or logs).
    A missing or malformed file raises :class:`TslensError` naming it as ``what`` (``"task
    file"``, ``"prompt file"``)."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    with reading(path, what, "see docs/cli.md for the columns it needs") as file:
        if file.suffix.lower() not in SUFFIXES:
            raise ValueError(f"use a {', '.join(SUFFIXES)} file")
        return datasets.load_dataset(
            SUFFIXES[file.suffix.lower()], data_files=str(file), split="train"
        )


@cache
def load_task_file(path: str) -> Task:
    """Read a task file into a :class:`Task`; raise :class:`TslensError` if unusable."""
    file = Path(path).expanduser()
    rows = load_rows(path, "task file")
    columns = next((c for c in COLUMN_NAMES if set(c) <= set(rows.column_names)), None)
    if columns is None:
        raise TslensError(
            f"task file {path} needs columns input,output (or x,y); it has "
            f"{','.join(rows.column_names) or 'none'}"
        )
    pairs: dict[str, str] = {}
    for row in rows:
        x, y = row[columns[0]], row[columns[1]]
        if x is None or y is None or str(x) == "" or str(y) == "":
            continue
        pairs.setdefault(str(x), str(y))
    if not pairs:
        raise TslensError(f"task file {path} holds no input/output pairs")
    families = set(rows["family"]) if "family" in rows.column_names else {"user"}
    if len(families) != 1:
        raise TslensError(f"task file {path} names several families: {sorted(families)}")
    inputs = tuple(pairs)
    family = Family(str(families.pop()), load_pool=lambda: inputs)
    return Task(path, family, pairs.__getitem__, f"user task from {file.name} ({len(pairs)} pairs)")
