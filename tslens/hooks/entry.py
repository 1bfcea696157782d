"""Let each group of columns of a forward enter the stack at its own layer.

A patch at layer ``l`` changes nothing below ``l``, so in a layer sweep the variants patched at
layer ``l`` need blocks ``l..L-1`` only; below it they are all the same unpatched computation,
done once by the caller. With the columns ordered by entry layer, block ``l`` runs only the
columns that have entered by then (a prefix of the sequence): the columns entering at ``l``
start from the caller's unpatched residual, the columns not yet entered pass through untouched
and cost nothing. Each layer's KV cache then gets its own active columns only, which is exactly
what that layer's attention reads (each layer attends to its own cache). The last block can
return a subset of columns, so the unembedding runs on the positions that are read and no more.

This wraps the model's blocks where the model's own loop calls them, so everything a forward
normally does (hooks, rotary embeddings, per-layer-type masks) still happens; which arguments
of a block call have a query or key axis is :data:`QUERY_AXIS_ARGUMENTS`.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

# Block-call arguments whose dim 1 (dim 0 for cache_position) is the query axis; the attention
# mask's last two dims are (query, key), keys laid out as [cache | this forward's columns].
QUERY_AXIS_ARGUMENTS = ("hidden_states", "position_embeddings", "position_ids")


def _slice_queries(value, n: int):
    if isinstance(value, tuple):  # rotary (cos, sin)
        return tuple(_slice_queries(v, n) for v in value)
    return value[:, :n] if isinstance(value, Tensor) and value.ndim >= 2 else value


def _slice_mask(mask, width: int, n: int):
    if not isinstance(mask, Tensor) or mask.ndim != 4:
        return mask
    cached = mask.shape[-1] - width  # keys: the cache, then this forward's columns
    return mask[..., :n, : cached + n]


def _map_call(names: list[str], args: tuple, kwargs: dict, change) -> tuple[tuple, dict]:
    """The call with ``change(name, value)`` applied to every argument, positional ones named by
    the block's signature; the caller's positional/keyword layout is kept (the bridge's blocks
    treat a bare ``block(hidden_states)`` call differently)."""
    args = tuple(change(name, v) for name, v in zip(names, args, strict=False))
    return args, {name: change(name, v) for name, v in kwargs.items()}


def _first_columns(hidden: Tensor, width: int, n: int):
    """An argument changer keeping the first ``n`` of ``width`` query columns, the hidden states
    taken from ``hidden`` (the block's input with the entering columns written in)."""

    def change(name: str, value):
        if name == "hidden_states":
            return hidden[:, :n]
        if name in QUERY_AXIS_ARGUMENTS:
            return _slice_queries(value, n)
        if name == "attention_mask":
            return _slice_mask(value, width, n)
        if name == "cache_position" and isinstance(value, Tensor):
            return value[:n]
        return value

    return change


@contextmanager
def staggered_entry(
    blocks: Sequence[nn.Module],
    active: Sequence[int],
    entering: Callable[[int, int], Float[Tensor, "batch col d_model"]],
    read_columns: Int[Tensor, " col"] | None = None,
) -> Iterator[None]:
    """Within the block, ``blocks[l]`` computes only the first ``active[l]`` columns.

    Args:
        blocks: the model's blocks in order (TransformerBridge blocks or plain HF layers).
        active: non-decreasing, one entry per block plus one for after the last block: how
            many columns have entered by block ``l`` (``active[L]``: all of them).
        entering: ``entering(l, n)`` gives the residual of the ``n`` columns entering at block
            ``l`` (``l = L``: columns that enter no block, their final residual).
        read_columns: columns the last block returns (default: all), for the unembedding.
    """
    n_layers = len(blocks)
    if len(active) != n_layers + 1 or any(a > b for a, b in itertools.pairwise(active)):
        raise ValueError("active needs one non-decreasing count per block, plus the total")

    def wrap(block: nn.Module, layer: int):
        original = type(block).forward
        signature = inspect.signature(getattr(block, "original_component", block).forward)
        names = list(signature.parameters)
        before, now = (active[layer - 1] if layer else 0), active[layer]

        def forward(*args, **kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            width = hidden.shape[1]
            if now > before:  # the columns entering here start from their unpatched residual
                new = entering(layer, now - before).to(hidden.device, hidden.dtype)
                hidden = torch.cat([hidden[:, :before], new, hidden[:, now:]], dim=1)
            result = None
            if now:
                args, kwargs = _map_call(names, args, kwargs, _first_columns(hidden, width, now))
                result = original(block, *args, **kwargs)
            out = result[0] if isinstance(result, tuple) else result
            out = hidden if out is None else torch.cat([out, hidden[:, now:]], dim=1)
            if layer == n_layers - 1:
                if active[n_layers] > now:
                    new = entering(n_layers, active[n_layers] - now).to(out.device, out.dtype)
                    out = torch.cat([out[:, :now], new, out[:, active[n_layers] :]], dim=1)
                if read_columns is not None:
                    out = out[:, read_columns.to(out.device)]
            return (out, *result[1:]) if isinstance(result, tuple) else out

        return forward

    for layer, block in enumerate(blocks):  # an instance attribute shadows the class's forward;
        object.__setattr__(block, "forward", wrap(block, layer))  # object.__setattr__: the
    try:  # bridge's own setattr would forward it to the wrapped HF module
        yield
    finally:
        for block in blocks:
            vars(block).pop("forward", None)
