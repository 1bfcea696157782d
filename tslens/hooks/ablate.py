"""Ablate attention heads: overwrite a head's ``z`` (its output before ``W_O``) with a fixed
value (zero ablation), the head's mean (mean ablation) or its value on another prompt
(resample ablation); the values are computed by the caller, see
:mod:`tslens.engine.ablation`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tslens.hooks.names import check_layers, hook_name


@contextmanager
def ablating(
    model,
    values: Mapping[tuple[int, int], Float[Tensor, "... d_head"]],
    columns: Int[Tensor, " col"] | None = None,
) -> Iterator[None]:
    """Within the block, head ``(layer, head)``'s ``z`` at the sequence positions ``columns``
    (default: all) is replaced by ``values[(layer, head)]``, broadcast to
    ``[batch, col, d_head]`` (a ``[d_head]`` mean, a ``[batch, col, d_head]`` resample, or a
    zero tensor). Hooks are removed on exit, also after an error."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in values:
        by_layer.setdefault(layer, []).append(head)
    check_layers(model, list(by_layer))

    def replace_at(layer: int):
        heads = by_layer[layer]

        def hook(act: Tensor, hook) -> Tensor:
            act = act.clone()  # not in place: the hook's input may be needed elsewhere
            cols = torch.arange(act.shape[1]) if columns is None else columns
            cols = cols.to(act.device)
            for head in heads:
                new = values[(layer, head)].to(device=act.device, dtype=act.dtype)
                act[:, cols, head] = new.expand(act.shape[0], len(cols), act.shape[-1])
            return act

        return hook

    with model.hooks(fwd_hooks=[(hook_name("z", layer), replace_at(layer)) for layer in by_layer]):
        yield


@contextmanager
def replacing_cells(
    model,
    cells: Sequence[tuple[int, int, int, int, Float[Tensor, " d_head"]]],
) -> Iterator[None]:
    """Within the block, ``z[row, col, head]`` of layer ``layer`` is replaced by ``value`` for
    each cell ``(row, layer, head, col, value)``: a different head and position per batch row
    (one row per patch variant). One indexed write per edited layer."""
    by_layer: dict[int, list[tuple[int, int, int, Tensor]]] = {}
    for row, layer, head, col, value in cells:
        by_layer.setdefault(layer, []).append((row, col, head, value))
    check_layers(model, list(by_layer))
    index = {
        layer: (torch.tensor([c[0] for c in got]), torch.tensor([c[1] for c in got]),
                torch.tensor([c[2] for c in got]), torch.stack([c[3] for c in got]))
        for layer, got in by_layer.items()
    }  # fmt: skip

    def replace_at(layer: int):
        rows, cols, heads, values = index[layer]

        def hook(act: Tensor, hook) -> Tensor:
            act = act.clone()
            device = act.device
            act[rows.to(device), cols.to(device), heads.to(device)] = values.to(device, act.dtype)
            return act

        return hook

    with model.hooks(fwd_hooks=[(hook_name("z", layer), replace_at(layer)) for layer in by_layer]):
        yield
