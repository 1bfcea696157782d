"""Patch activations row by row: at (layer, position) replace the activation with a vector
(Hendel et al. 2023) or add a vector to it (Todd et al. 2024). One forward can carry a
different patch in every batch row, which is what makes batched sweeps possible.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tslens.errors import TslensError
from tslens.hooks.names import check_layers, hook_name

MODES = ("replace", "add")


def convex_combination(
    vectors: Float[Tensor, "k ... d"], weights: Float[Tensor, "point k"]
) -> Float[Tensor, "point ... d"]:
    """``sum_k weights[p, k] * vectors[k]`` for every point ``p``; the weights must lie on the
    simplex (non-negative, summing to 1), as in the paper's convex task-vector patching."""
    weights = torch.as_tensor(weights, dtype=vectors.dtype)
    if weights.ndim != 2 or weights.shape[1] != vectors.shape[0]:
        raise TslensError(f"need one weight per vector ({vectors.shape[0]}) for every point")
    if (weights < -1e-9).any() or ((weights.sum(-1) - 1).abs() > 1e-6).any():
        raise TslensError("convex weights must be >= 0 and sum to 1 (lambda in [0, 1])")
    return torch.einsum("pk,k...->p...", weights, vectors)


@contextmanager
def patching(
    model,
    layers: Int[Tensor, " row"] | Int[Tensor, "row m"],
    vectors: Float[Tensor, "row d"] | Float[Tensor, "row m d"],
    position: int | Int[Tensor, " row"] = -1,
    mode: str = "replace",
    kind: str = "resid_post",
) -> Iterator[None]:
    """Within the block, every forward's row ``r`` gets ``vectors[r]`` written into (or, with
    ``mode="add"``, added to) the ``kind`` activation of layer ``layers[r]`` at ``position``
    (an index of the forward's sequence axis, one for all rows or one per row). Rows with
    layer -1 are left alone. For multi-layer patches give ``layers[r, j]`` and
    ``vectors[r, j]`` (layer -1 pads). Hooks are removed on exit, also after an error.
    """
    if mode not in MODES:
        raise TslensError(f"unknown patch mode {mode!r}; use replace or add")
    layers = torch.as_tensor(layers)
    if layers.ndim == 1:
        layers, vectors = layers[:, None], vectors[:, None]
    if layers.shape != vectors.shape[:2]:
        raise ValueError("one layer per patched row (and slot)")
    wanted = sorted({int(layer) for layer in layers.flatten().tolist() if layer >= 0})
    check_layers(model, wanted)
    positions = torch.as_tensor(position).expand(len(layers))

    def patch_at(layer: int):
        rows, slots = (layers == layer).nonzero(as_tuple=True)

        def hook(act: Tensor, hook) -> Tensor:
            r, p = rows.to(act.device), positions[rows].to(act.device)
            new = vectors[rows, slots].to(device=act.device, dtype=act.dtype)
            if mode == "add":
                new = act[r, p] + new
            return act.index_put((r, p), new)  # not in place: autograd-safe

        return hook

    with model.hooks(fwd_hooks=[(hook_name(kind, layer), patch_at(layer)) for layer in wanted]):
        yield
