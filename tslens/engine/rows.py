"""Answers scored behind a cached prompt: rows that continue the prompts' KV cache.

A *row* continues cached prompt ``owner`` from its token ``start``: it sees the prompt's tokens
before ``start`` in the cache, recomputes ``suffix`` (the tokens from ``start`` on, possibly
with some deleted) at their own positions, and has its answers packed behind it
(:func:`tslens.engine.packing.pack_answers`). Scoring all answers of a prompt behind its cache is
the row ``start = len(prompt) - 1, suffix = [last token]``; a prompt with demonstrations deleted is
the row that starts at the first deletion. Each row costs its own suffix and answers, never the
prompt again; rows of similar length share a forward. A row may also replace one head's ``z``
at some of its suffix positions (``ablate``): per-position head patching, a variant per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from tslens.engine.architecture import attention_masks
from tslens.engine.batching import default_batch_size
from tslens.engine.continuation import PrefixBatch, cached_forward, fork
from tslens.engine.packing import pack_answers, read_packed
from tslens.hooks.ablate import replacing_cells


@dataclass
class Row:
    """Continue cached prompt ``owner`` from token ``start`` with ``suffix``, then score
    ``answers`` (token ids; ``None`` entries score ``-inf``)."""

    owner: int
    start: int
    suffix: list[int]
    answers: Sequence[list[int] | None]
    # (layer, head, suffix indices, value [d_head]): that head's z there is replaced by value
    ablate: tuple[int, int, list[int], Tensor] | None = None


def score_rows(
    model, cache, prefix: PrefixBatch, rows: Sequence[Row], k: int, pad_id: int
) -> Float[Tensor, "row k"]:
    """log P of every answer of every row (float64, CPU; ``-inf`` where there is none).
    ``cache`` holds the prompts of ``prefix`` (:func:`tslens.engine.continuation.run_prefix`)
    and is left as it was."""
    out = torch.full((len(rows), k), float("-inf"), dtype=torch.float64)
    width = prefix.ids.shape[1]
    # each forward holds about as many tokens as a default batch of whole prompts
    budget = default_batch_size(model, width) * width

    def cost(r: int) -> int:
        return len(rows[r].suffix) + sum(len(a) for a in rows[r].answers if a is not None)

    order = sorted((r for r in range(len(rows)) if any(a for a in rows[r].answers)), key=cost)
    chunk: list[int] = []
    for r in [*order, None]:
        if chunk and (r is None or (len(chunk) + 1) * cost(r) > budget):
            got = _forward_rows(model, cache, prefix, [rows[i] for i in chunk], k, pad_id)
            out[chunk] = got
            chunk = []
        if r is not None:
            chunk.append(r)
    return out


def _forward_rows(model, cache, prefix, rows: Sequence[Row], k: int, pad_id: int) -> Tensor:
    width = prefix.ids.shape[1]
    packed = pack_answers([r.suffix for r in rows], [r.answers for r in rows], pad_id)
    owners, start = torch.tensor([r.owner for r in rows]), torch.tensor([r.start for r in rows])
    new_positions = packed.positions + start[:, None]
    # the cache columns each row sees: its prompt's real tokens before the row's start
    index = torch.arange(width) - (width - prefix.lengths.cpu()[owners])[:, None]  # [row, col]
    see = (index >= 0) & (index < start[:, None])
    see_cache = torch.zeros(len(rows), 1, packed.ids.shape[1], width)
    see_cache.masked_fill_(~see[:, None, None, :], torch.finfo().min)
    device = model.cfg.device
    mask = torch.cat([see_cache, packed.mask], dim=-1).to(device)
    keys = torch.cat([prefix.positions.cpu()[owners], new_positions], dim=-1)
    suffix_width = max(len(r.suffix) for r in rows)  # pack_answers left-pads the suffixes
    cells = [
        (b, r.ablate[0], r.ablate[1], suffix_width - len(r.suffix) + c, r.ablate[3])
        for b, r in enumerate(rows) if r.ablate is not None for c in r.ablate[2]
    ]  # fmt: skip
    with replacing_cells(model, cells) if cells else nullcontext():
        logits = cached_forward(
            model,
            packed.ids.to(device),
            fork(cache, owners.to(device)),
            attention_masks(model, mask, new_positions, keys),
            new_positions.to(device),
            logits_to_keep=packed.keep,
        )
    sums, _, scored = read_packed(logits, packed.reads, len(rows), k, greedy=False)
    return torch.where(scored, sums, float("-inf")).cpu()
