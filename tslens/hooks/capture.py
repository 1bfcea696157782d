"""Capture hooks: keep only the positions asked for of chosen hook points.

A forward pass through a ``TransformerBridge`` fires a hook at every point; each capture hook
slices the positions it wants (e.g. the final token) out of the activation at once, so memory
grows with prompts x layers x d_model, never with the sequence length. The batched runner over
a prompt set is :func:`tslens.engine.capture.capture_activations`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from tslens.hooks.names import HEADS_FIRST, hook_name


@contextmanager
def capturing(
    model, kinds: Sequence[str], layers: Sequence[int], positions: Sequence[int]
) -> Iterator[dict[str, list[Tensor | None]]]:
    """Within the block, every forward stores ``act[:, positions]`` for each hook kind and
    layer into the yielded ``{kind: [tensor per layer]}`` (overwritten by the next forward).

    ``positions`` index the forward's sequence axis (negative = from the end, which with left
    padding is the same token in every row); for ``pattern`` the query axis, stored as
    ``[batch, position, head, key]``. Hooks are removed on exit, also after an error.
    """
    store: dict[str, list[Tensor | None]] = {kind: [None] * len(layers) for kind in kinds}
    index = torch.tensor(list(positions))

    def grab(kind: str, i: int):
        def hook(act: Tensor, hook) -> None:
            act = act.transpose(1, 2) if kind in HEADS_FIRST else act
            store[kind][i] = act[:, index.to(act.device)].detach()

        return hook

    fwd = [
        (hook_name(kind, layer), grab(kind, i)) for kind in kinds for i, layer in enumerate(layers)
    ]
    with model.hooks(fwd_hooks=fwd):
        yield store
