"""``tslens`` command line: a thin shell over library functions.

Every subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args)``.
Bad input ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tslens.cli import (
    ablate,
    decode,
    evaluate,
    heads,
    models,
    patch,
    probs,
    scale,
    tasks,
    train,
)
from tslens.cli.common import apply_model_template
from tslens.errors import TslensError

SUBCOMMANDS = (models, tasks, probs, patch, heads, ablate, scale, decode, train, evaluate)


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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(argv)
        args.argv = argv  # so results can state the command that made them
        apply_model_template(args)
        return args.run(args) or 0
    except TslensError as err:
        print(f"tslens: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tslens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
