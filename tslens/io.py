"""Atomic writes (a crash or Ctrl-C never leaves a half-written result behind) and the JSON
form of result dataclasses."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """Where tslens caches built fixtures, vocabularies and converted models: ``$TSLENS_CACHE``,
    else ``~/.cache/tslens``."""
    return Path(os.environ.get("TSLENS_CACHE", Path.home() / ".cache" / "tslens"))


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results should read like any file
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; it replaces ``path`` only on success, so
    an interrupted build never leaves a directory that looks finished."""
    import shutil

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def plain(value: Any) -> Any:
    """``value`` in plain JSON types: tensors and arrays as (nested) lists, NaN as ``None``
    (JSON has no NaN), dicts, lists and tuples converted element by element."""
    if hasattr(value, "tolist"):  # torch.Tensor, numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def record(obj: Any, skip: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """A result dataclass as JSON: its fields (``dataclasses.fields``, in order, converted by
    :func:`plain`) but ``skip``, then ``extra`` (derived values, converted too). The fields are
    read shallowly, so nothing is deep-copied on the way."""
    out = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name not in skip}
    return plain({**out, **extra})


def json_form(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples as lists, paths and other objects as
    strings, keys sorted): what a saved record of arguments is compared with."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    return write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


@contextmanager
def reading(path: str | os.PathLike[str], what: str, hint: str = "") -> Iterator[Path]:
    """Open-and-parse ``path`` inside the block; any failure becomes one :class:`TslensError`
    line naming ``what`` and the file (and ``hint``, what to do): the one place where tslens
    translates the errors of files it reads back."""
    from tslens.errors import TslensError

    file = Path(path).expanduser()
    if not file.exists():
        raise TslensError(f"cannot read {what} {path}: it does not exist")
    try:
        yield file
    except TslensError:
        raise
    except Exception as err:  # noqa: BLE001 - every parser raises its own types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise TslensError(
            f"cannot read {what} {path}: malformed or damaged ({first})"
            + (f"; {hint}" if hint else "")
        ) from err


def read_json(path: str | os.PathLike[str], what: str, hint: str = "") -> Any:
    """A JSON file's content (see :func:`reading`)."""
    with reading(path, what, hint) as file:
        return json.loads(file.read_text(encoding="utf-8"))


def read_toml(path: str | os.PathLike[str], what: str, hint: str = "") -> dict[str, Any]:
    """A TOML file's content (see :func:`reading`)."""
    import tomllib

    with reading(path, what, hint) as file:
        return tomllib.loads(file.read_text(encoding="utf-8"))


def dir_write_problem(path: str | os.PathLike[str]) -> str | None:
    """Why tslens could not write into directory ``path`` (creating it if need be), as the
    rest of a sentence that starts with the path ("is a file, not a directory"), or ``None``
    when it can. Nothing is left behind: the check makes and removes one empty probe
    directory in ``path`` or its nearest existing parent, because permission bits tell
    nothing on read-only or virtual file systems, or to root."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        return "is a file, not a directory"
    parent = target
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"lies below {parent}, which is a file"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tslens-probe-", dir=parent))
    except OSError as err:
        reason = err.strerror or type(err).__name__
        if parent == target:
            return f"is not writable ({reason})"
        return f"cannot be created: {parent} is not writable ({reason})"
    return None


def file_write_problem(path: str | os.PathLike[str]) -> str | None:
    """Why tslens could not write file ``path`` (atomically: a temporary file beside it,
    then renamed), in the form of :func:`dir_write_problem`, or ``None`` when it can."""
    target = Path(path).expanduser()
    if target.is_dir():
        return "is a directory, not a file"
    problem = dir_write_problem(target.parent)
    if problem is None:
        return None
    return f"cannot be written: its directory {target.parent} {problem}"
