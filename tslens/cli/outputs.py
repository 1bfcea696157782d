"""Where a command writes, checked before anything is computed, and what a finished run leaves.

Every path tslens writes (``--out``, ``--vectors``, ``--card``, the ``TSLENS_CACHE``
directory) must be writable *before* a model loads: a file where a directory is expected, a
path below a file, or a parent that cannot be written to is one line and exit 2, not an
error after the computation. Nothing is created by the check.

A finished run records its arguments in ``OUT/.tslens-finished.json`` (one entry per
command). A later run of the same command into the same ``--out``:

- with the same arguments re-runs and replaces the results (they are the same numbers);
- with other arguments, or over results this record does not describe, is refused, saying
  which arguments differ, unless ``--overwrite`` is given;
- over a partial (interrupted) run resumes it, or is refused if its arguments differ
  (:mod:`tslens.engine.resume`).

This module imports nothing heavy: it runs before any model, torch included, is needed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tslens.errors import TslensError, differing
from tslens.io import (
    cache_dir,
    dir_write_problem,
    file_write_problem,
    json_form,
    write_json_atomic,
)

FINISHED = ".tslens-finished.json"


def add_out_args(parser: argparse.ArgumentParser, outputs: tuple[str, ...]) -> None:
    """``--out`` (the directory that gets ``outputs``) and ``--overwrite``."""
    parser.add_argument("--out", required=True, type=Path,
                        help=f"output directory (gets {', '.join(outputs)})")  # fmt: skip
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the finished results of a run with other arguments in --out (without "
        "it that run is refused; a re-run with the same arguments replaces them anyway)",
    )
    parser.set_defaults(outputs=outputs)


def _refuse(flag: str, path: Path, problem: str, what: str) -> None:
    raise TslensError(f"{flag} {path} {problem}; {what}")


def check_outputs(args: argparse.Namespace, arguments: dict[str, Any]) -> None:
    """Raise :class:`TslensError` unless every path this run writes can be written, and its
    ``--out`` holds no finished results of another run (see the module docstring).
    ``arguments`` are the run's own (what a finished record is compared with)."""
    out = getattr(args, "out", None)
    if out is not None:
        problem = dir_write_problem(out)
        if problem:
            _refuse("--out", out, problem, "use another --out")
        _check_finished(args, arguments)
    vectors = getattr(args, "vectors", None)
    if vectors is not None and not Path(vectors).is_file():  # an existing file is read, not written
        problem = file_write_problem(vectors)
        if problem:
            _refuse("--vectors", vectors, problem, "name a file in a writable directory")
    card = getattr(args, "card", None)
    if card is not None:
        if not (Path(card) / "README.md").is_file():
            _refuse("--card", card, "has no README.md model card", "name a tslens train directory")
        problem = dir_write_problem(card)
        if problem:
            _refuse("--card", card, problem, "copy the model directory somewhere writable")
    if args.command not in ("models", "tasks"):  # everything else may build or convert models
        problem = dir_write_problem(cache_dir())
        if problem:
            raise TslensError(
                f"the tslens cache {cache_dir()} {problem}; point TSLENS_CACHE at a writable "
                "directory"
            )


def _finished_runs(out: Path) -> dict[str, Any]:
    try:
        runs = json.loads((Path(out) / FINISHED).read_text())
    except (OSError, ValueError):
        return {}
    return runs if isinstance(runs, dict) else {}


def _check_finished(args: argparse.Namespace, arguments: dict[str, Any]) -> None:
    present = [name for name in getattr(args, "outputs", ()) if (Path(args.out) / name).exists()]
    if not present or args.overwrite:
        return
    saved = _finished_runs(args.out).get(args.command)
    wanted = json_form(arguments)
    if saved == wanted:
        return
    if isinstance(saved, dict):
        changed = differing(saved, wanted)
        whose = f"a tslens {args.command} run with other arguments ({changed} differ)"
    else:
        whose = "another run (no record of its arguments)"
    raise TslensError(
        f"--out {args.out} already holds {', '.join(present)} of {whose}; use another --out, "
        "or add --overwrite to replace them"
    )


def record_finished(args: argparse.Namespace, arguments: dict[str, Any]) -> None:
    """Record in ``--out`` that this command finished with ``arguments``."""
    if getattr(args, "out", None) is None or not getattr(args, "outputs", None):
        return
    runs = _finished_runs(args.out)
    runs[args.command] = json_form(arguments)
    write_json_atomic(Path(args.out) / FINISHED, runs)
