"""The small languages of the command line (``--layers 3:8``, ``--heads 9.3,12.1``,
``--lambdas 0:1:11``) and the checks of each option against a model's shape.

:data:`SHAPE_CHECKS` maps an option to the check :func:`tslens.cli.validate.validate` runs on
it, before any weights load, for whichever subcommand has that option: a new option with a
limit adds one entry here, and validation knows nothing about subcommands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tslens.errors import TslensError
from tslens.hooks.names import check_layers

Head = tuple[int, int]


def parse_head(spec: str, model: Any = None) -> Head:
    """``"3.1"`` -> ``(3, 1)`` (layer 3, head 1), checked against ``model`` if given (a Lens,
    a bridge or anything with ``cfg.n_layers`` and ``cfg.n_heads``)."""
    try:
        layer, head = (int(x) for x in spec.strip().split("."))
    except ValueError:
        raise TslensError(f"cannot read head {spec!r}: write LAYER.HEAD, e.g. 3.1") from None
    if model is not None:
        check_layers(model, [layer])
        if not 0 <= head < model.cfg.n_heads:
            raise TslensError(f"head {spec}: layer {layer} has heads 0..{model.cfg.n_heads - 1}")
    return layer, head


def parse_heads(spec: str, model: Any = None) -> list[Head]:
    """``"9.3,12.1"`` -> ``[(9, 3), (12, 1)]`` (empty items skipped), each checked as in
    :func:`parse_head`."""
    return [parse_head(item, model) for item in spec.split(",") if item.strip()]


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """``all`` | ``a:b`` (Python slice) | ``l1,l2``; checked against the model's depth."""
    if spec == "all":
        return list(range(n_layers))
    try:
        if ":" not in spec:
            return [int(x) for x in spec.split(",")]  # the caller checks the range
        a, b = (int(x) if x else None for x in spec.split(":"))
    except ValueError:
        raise TslensError(f"cannot read --layers {spec!r}: use all, a:b or l1,l2") from None
    layers = list(range(n_layers))[slice(a, b)]
    if not layers:
        raise TslensError(f"--layers {spec} selects no layer of 0..{n_layers - 1}")
    return layers


def parse_lambdas(spec: str) -> list[float]:
    """``start:stop:count`` (inclusive grid) or a comma list; each in [0, 1]."""
    try:
        if ":" in spec:
            start, stop, count = spec.split(":")
            a, b, n = float(start), float(stop), int(count)
            values = [a + (b - a) * i / (n - 1) for i in range(n)] if n > 1 else [a] * n
        else:
            values = [float(x) for x in spec.split(",")]
    except ValueError as err:
        raise TslensError(f"cannot read --lambdas {spec!r}: use 0:1:11 or 0,0.5,1") from err
    if not values:
        raise TslensError(f"--lambdas {spec!r} gives no lambda; use a count >= 1, e.g. 0:1:11")
    bad = [v for v in values if not 0 <= v <= 1]
    if bad:
        raise TslensError(f"lambda must lie in [0, 1], got {bad[0]}")
    return values


def parse_counts(spec: str, flag: str) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]``: positive counts, deduplicated, in order."""
    try:
        counts = [int(c) for c in spec.split(",") if c.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise TslensError(f"{flag} {spec!r}: give positive counts, e.g. 1,2,4,8")
    return sorted(set(counts))


def _layers(value: str, shape: Any, options: dict[str, Any]) -> None:
    check_layers(shape, parse_layers(value, shape.n_layers))


def _heads(value: str, shape: Any, options: dict[str, Any]) -> None:
    if value != "auto":
        parse_heads(value, shape)


def _fv_heads(value: int, shape: Any, options: dict[str, Any]) -> None:
    if value > shape.n_layers * shape.n_heads:
        raise TslensError(
            f"--fv-heads {value}: {shape.name} has {shape.n_layers * shape.n_heads} heads in all"
        )


def _width(value: int, shape: Any, options: dict[str, Any]) -> None:
    if value > shape.vocab:
        raise TslensError(f"--width {value}: {shape.name}'s vocabulary has {shape.vocab}")


def _n_random(value: int, shape: Any, options: dict[str, Any]) -> None:
    """Random-head controls draw as many heads as there are tasks."""
    n_tasks = len(options.get("task_list") or ())
    if value and n_tasks > shape.n_layers * shape.n_heads:
        raise TslensError(f"{n_tasks} tasks need {n_tasks} heads; {shape.name} has "
                          f"{shape.n_layers * shape.n_heads}")  # fmt: skip


# option -> check(value, model shape, all options and the resolved "task_list"); run when the
# option is set (not None or 0)
SHAPE_CHECKS: dict[str, Callable[[Any, Any, dict[str, Any]], None]] = {
    "layers": _layers,
    "heads": _heads,
    "ablate": _heads,
    "ns": lambda value, shape, options: parse_counts(value, "--ns"),
    "fv_heads": _fv_heads,
    "width": _width,
    "n_random": _n_random,
}
