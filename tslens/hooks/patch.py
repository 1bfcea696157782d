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
    vectors: Float[Tensor, "k ... d"], weights: Float[Tensor, "point n"]
) -> Float[Tensor, "point ... d"]:
    """``sum_k weights[p, k] * vectors[k]`` for every point ``p``; the weights (user input: one
    per vector, ``n == k``, is checked here with a message) must lie on the simplex
    (non-negative, summing to 1), as in the paper's convex task-vector patching."""
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
    heads: Int[Tensor, " row"] | Int[Tensor, "row m"] | None = None,
    rows: Int[Tensor, " row"] | None = None,
) -> Iterator[None]:
    """Within the block, every forward's row ``r`` gets ``vectors[r]`` written into (or, with
    ``mode="add"``, added to) the ``kind`` activation of layer ``layers[r]`` at ``position``
    (an index of the forward's sequence axis, one for all rows or one per row). Rows with
    layer -1 are left alone. For multi-layer patches give ``layers[r, j]`` and
    ``vectors[r, j]`` (layer -1 pads). With ``heads`` (``kind="z"`` only) the vectors are
    ``[row, (m,) d_head]`` and go into head ``heads[r]`` alone, the other heads untouched.
    With ``rows``, patch ``r`` goes to batch row ``rows[r]`` instead of row ``r``, so one row
    can take several patches at different positions. Hooks are removed on exit, also after
    an error.
    """
    if mode not in MODES:
        raise TslensError(f"unknown patch mode {mode!r}; use replace or add")
    if heads is not None and kind != "z":
        raise ValueError("per-head patches act on the z hook (kind='z')")
    layers = torch.as_tensor(layers)
    if layers.ndim == 1:
        layers, vectors = layers[:, None], vectors[:, None]
        heads = None if heads is None else torch.as_tensor(heads)[:, None]
    if layers.shape != vectors.shape[:2] or (heads is not None and heads.shape != layers.shape):
        raise ValueError("one layer (and head) per patched row (and slot)")
    wanted = sorted({int(layer) for layer in layers.flatten().tolist() if layer >= 0})
    check_layers(model, wanted)
    positions = torch.as_tensor(position).expand(len(layers))
    batch_rows = torch.arange(len(layers)) if rows is None else torch.as_tensor(rows)

    def patch_at(layer: int):
        patches, slots = (layers == layer).nonzero(as_tuple=True)
        where = (batch_rows[patches], positions[patches])
        where += () if heads is None else (heads[patches, slots],)
        new_cpu = vectors[patches, slots]

        def hook(act: Tensor, hook) -> Tensor:
            at = tuple(i.to(act.device) for i in where)
            new = new_cpu.to(device=act.device, dtype=act.dtype)
            if mode == "add":
                new = act[at] + new
            return act.index_put(at, new)  # not in place: autograd-safe

        return hook

    with model.hooks(fwd_hooks=[(hook_name(kind, layer), patch_at(layer)) for layer in wanted]):
        yield
