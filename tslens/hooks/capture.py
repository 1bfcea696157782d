"""Capture activations at chosen hook points and positions, keeping only what was asked for.

A forward pass through a ``TransformerBridge`` fires a hook at every point; each capture hook
slices the positions it wants (by default the final token) out of the activation at once, so
memory grows with prompts x layers x d_model, never with the sequence length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from tslens.batching import default_batch_size
from tslens.engine.continuation import left_pad
from tslens.hooks.names import HEADS_FIRST, check_layers, hook_name
from tslens.resume import cached
from tslens.scoring import pad_token_id, prompt_token_ids


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


@torch.inference_mode()
def capture_activations(
    model,
    texts: Sequence[str],
    kinds: Sequence[str] = ("resid_post",),
    layers: Sequence[int] | None = None,
    positions: int | Sequence[int] = -1,
    batch_size: int | None = None,
    progress: bool = False,
) -> dict[str, Float[Tensor, "prompt layer ..."]]:
    """Activations of ``texts`` (tokenized as :func:`tslens.scoring.prompt_token_ids`) at
    every requested hook kind and layer (default: all layers).

    Args:
        kinds: keys of :data:`tslens.hooks.names.HOOK_KINDS` (``resid_post``, ``z``, ...).
        positions: an offset from the end (``-1``: the final token) or a list of them.

    Returns:
        ``{kind: tensor}`` on the CPU, ``[prompt, layer, d]`` for one position or
        ``[prompt, layer, position, d]`` for a list (``z`` has ``head, d_head`` for ``d``).
    """
    single = isinstance(positions, int)
    offsets = [positions] if single else list(positions)
    if any(p >= 0 for p in offsets):
        raise ValueError("positions are offsets from the end of the prompt: -1, -2, ...")
    layers = check_layers(model, layers)
    ids = prompt_token_ids(model, texts)
    if min(len(i) for i in ids) < max(-p for p in offsets):
        raise ValueError("a prompt is shorter than the positions asked for")
    batch_size = batch_size or default_batch_size(model, max(len(i) for i in ids))
    chunks: dict[str, list[Tensor]] = {kind: [] for kind in kinds}

    def run(rows: list[list[int]]) -> dict[str, Tensor]:
        batch = left_pad(rows, pad_token_id(model), model.cfg.device)
        with capturing(model, kinds, layers, offsets) as store:
            model(
                batch.ids,
                attention_mask=batch.mask,
                position_ids=batch.positions,
                logits_to_keep=1,  # the unembedding of other positions is never needed
            )
        # [batch, layer, pos, ...]
        return {kind: torch.stack(store[kind], dim=1).cpu() for kind in kinds}

    bar = tqdm(total=len(ids), desc="capturing", unit="prompt", disable=not progress, leave=False)
    for start in range(0, len(ids), batch_size):
        rows = ids[start : start + batch_size]
        got = cached("capture", model, [rows, kinds, layers, offsets], lambda rows=rows: run(rows))
        for kind in kinds:
            chunks[kind].append(got[kind])
        bar.update(len(rows))
    bar.close()
    out = {kind: torch.cat(parts) for kind, parts in chunks.items()}
    return {kind: t[:, :, 0] if single else t for kind, t in out.items()}
