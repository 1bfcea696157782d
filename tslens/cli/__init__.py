"""``tslens`` command line: a thin shell over library functions.

Every subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args)``.
Bad input ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from tslens.cli import (
    ablate,
    atp,
    decode,
    demos,
    doctor,
    evaluate,
    heads,
    models,
    patch,
    probs,
    reproduce,
    scale,
    tasks,
    train,
    types,
)
from tslens.cli.common import apply_model_defaults
from tslens.cli.outputs import record_finished
from tslens.cli.validate import validate
from tslens.errors import TslensError

SUBCOMMANDS = (
    models, tasks, probs, patch, heads, types, atp, ablate, demos, scale, decode, train,
    evaluate, reproduce, doctor,
)  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse's default prints the whole usage first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise TslensError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tslens",
        description="Task superposition, measured layer by layer and head by head.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


# Commands whose batches are saved as they go (tslens.engine.resume); train has its own checkpoints.
RESUMABLE = ("probs", "patch", "heads", "types", "atp", "ablate", "demos", "scale", "decode",
             "evaluate", "reproduce")  # fmt: skip
EXIT_STATUS = {
    0: "success",
    1: "an unexpected internal error (a bug: please report it, with TSLENS_DEBUG=1's traceback)",
    2: "bad input: a value, a size, a device, a model or a file that cannot work (one line says "
    "which and what to do); nothing was computed or written",
    130: "interrupted (Ctrl-C): finished batches are kept in DIR/.tslens-partial (train: "
    "DIR/checkpoint); run the same command again to resume",
}


def _arguments(args: argparse.Namespace) -> dict:
    """What a resumed run must share with the partial one: every option but the output."""
    skip = {"run", "argv", "out", "outputs", "overwrite"}
    return {k: v for k, v in sorted(vars(args).items()) if k not in skip}


def _close_progress_bars() -> None:
    """Close the progress bars an interrupted loop left open, so the message that follows
    starts its own line instead of running on from a bar's."""
    from tqdm.auto import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


class _StatusHandler(logging.Handler):
    """The library's INFO messages (a model being loaded, converted or built, the first-run
    checks) as ``tslens: ...`` lines on the current stderr, written around any progress bar.
    Notebooks and library callers see them only if they configure logging themselves;
    ``TSLENS_QUIET=1`` hides them (the test suite sets it; ``TQDM_DISABLE=1`` hides the bars)."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        tqdm.write(f"tslens: {record.getMessage()}", file=sys.stderr)


def _show_status() -> None:
    logger = logging.getLogger("tslens")
    if os.environ.get("TSLENS_QUIET") == "1":
        logger.setLevel(logging.WARNING)
        return
    if not any(isinstance(h, _StatusHandler) for h in logger.handlers):
        logger.addHandler(_StatusHandler(logging.INFO))
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tslens`` with ``argv``; returns the exit status (:data:`EXIT_STATUS`)."""
    state = args = None
    _show_status()
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(argv)
        args.argv = argv  # so results can state the command that made them
        apply_model_defaults(args)
        arguments = _arguments(args)  # before the run: what a later run's check compares
        validate(args, arguments)
        if args.command not in RESUMABLE:
            status = args.run(args) or 0
        else:
            from tslens.engine.resume import checkpointing

            with checkpointing(args.out, arguments) as state:
                status = args.run(args) or 0
        if status == 0:
            record_finished(args, arguments)
        return status
    except TslensError as err:
        _close_progress_bars()
        print(f"tslens: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        if state is not None:
            done = state.saved + state.loaded
            print(
                f"tslens: interrupted; {done} finished batches are saved in {state.dir}: run "
                "the same command again to resume",
                file=sys.stderr,
            )
        elif args is not None and args.command == "train":
            print(
                f"tslens: interrupted; the last checkpoint is in {args.out}/checkpoint: run the "
                "same command again to resume",
                file=sys.stderr,
            )
        else:
            print("tslens: interrupted", file=sys.stderr)
        return 130
    except Exception:
        if os.environ.get("TSLENS_DEBUG"):
            raise
        _close_progress_bars()
        err = sys.exc_info()[1]
        first = (str(err).strip().splitlines() or [""])[0][:200]
        print(
            f"tslens: internal error: {type(err).__name__}: {first} (a bug; run with "
            "TSLENS_DEBUG=1 for the traceback and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
