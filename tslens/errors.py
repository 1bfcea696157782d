"""One error type for every mistake a user can make.

Library functions raise :class:`TslensError` with a one-line message that names what is wrong
and how to fix it; the CLI turns it into that line on stderr and exit status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TslensError(ValueError):
    """Bad user input (unknown task, bad weights, missing model, ...). Message is one line."""


def close_names(name: str, choices: Iterable[str], n: int = 4) -> str:
    """``"did you mean: a, b?"`` for the names in ``choices`` closest to ``name`` (or '')."""
    near = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f"; did you mean: {', '.join(near)}?" if near else ""


def differing(saved: dict, wanted: dict) -> str:
    """``"seed, tasks"``: the keys whose values differ between two argument records, for the
    line that refuses to mix a run with one of other arguments."""
    return ", ".join(sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k)))
