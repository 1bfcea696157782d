"""Activations of a prompt set at chosen hook points and positions, batched (progress, resume,
OOM back-off through :func:`tslens.engine.batching.batched`), keeping only what was asked for
(:func:`tslens.hooks.capture.capturing`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from tslens.engine.batching import batched
from tslens.engine.lens import as_lens
from tslens.hooks.capture import capturing
from tslens.hooks.names import check_layers


@torch.inference_mode()
def capture_activations(
    model,
    texts: Sequence[str],
    kinds: Sequence[str] = ("resid_post",),
    layers: Sequence[int] | None = None,
    positions: int | Sequence[int] = -1,
    batch_size: int | None = None,
    progress: bool = False,
    reduce: Callable[[list[int], dict[str, Tensor]], dict[str, Tensor]] | None = None,
    reduce_key: Any = None,
) -> dict[str, Float[Tensor, "prompt layer ..."]]:
    """Activations of ``texts`` (tokenized as :func:`tslens.engine.scoring.prompt_token_ids`) at
    every requested hook kind and layer (default: all layers).

    Args:
        kinds: keys of :data:`tslens.hooks.names.HOOK_KINDS` (``resid_post``, ``z``, ...).
        positions: an offset from the end (``-1``: the final token) or a list of them.
        reduce: ``reduce(chunk, acts)`` turns each batch's activations (prompt indices
            ``chunk``; ``acts`` laid out as returned, for those prompts) into what is kept,
            ``{name: [prompt, ...]}``, before batches are joined: a statistic instead of the
            activations, or a reduction over the key axis of ``pattern``, whose width is the
            batch's (left-padded) length. ``reduce_key``: everything besides the token ids
            the reduction depends on (it keys the saved batches of a resumable run).

    Returns:
        ``{kind: tensor}`` on the CPU, ``[prompt, layer, d]`` for one position or
        ``[prompt, layer, position, d]`` for a list (``z`` has ``head, d_head`` for ``d``);
        with ``reduce``, the joined outputs of ``reduce``.
    """
    single = isinstance(positions, int)
    offsets = [positions] if single else list(positions)
    if any(p >= 0 for p in offsets):
        raise ValueError("positions are offsets from the end of the prompt: -1, -2, ...")
    lens = as_lens(model)
    layers = check_layers(lens, layers)
    ids = lens.token_ids(texts)
    if min(len(i) for i in ids) < max(-p for p in offsets):
        raise ValueError("a prompt is shorter than the positions asked for")

    def run(chunk: list[int]) -> dict[str, Tensor]:
        batch = lens.left_pad([ids[i] for i in chunk])
        with capturing(lens, kinds, layers, offsets) as store:
            lens(
                batch.ids,
                attention_mask=batch.mask,
                position_ids=batch.positions,
                logits_to_keep=1,  # the unembedding of other positions is never needed
            )
        acts = {kind: torch.stack(store[kind], dim=1).cpu() for kind in kinds}  # [b, l, pos, ..]
        acts = {kind: t[:, :, 0] if single else t for kind, t in acts.items()}
        return acts if reduce is None else reduce(chunk, acts)

    batches = batched(
        lens, len(ids), run, kind="capture", desc="capturing", progress=progress,
        key=lambda chunk: [[ids[i] for i in chunk], kinds, layers, offsets]
        + ([] if reduce is None else [reduce.__qualname__, reduce_key]),
        batch_size=batch_size or lens.batch_size(max(len(i) for i in ids)),
    )  # fmt: skip
    parts = [got for _, got in batches]
    return {name: torch.cat([got[name] for got in parts]) for name in parts[0]}
