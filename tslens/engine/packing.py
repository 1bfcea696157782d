"""Packed forwards: many continuations of a prompt scored in ONE row of one forward pass.

A row holds a prompt, then segments that continue it (its answers), each seeing only what its
own sequence would see (an additive 4D block mask) at the positions it would have (explicit
position ids). :func:`read_packed` then sums the answer tokens' log-probs at the read
positions. Used by exact answer scoring (:mod:`tslens.engine.scoring`), patching, ablation and
demonstration attribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from tslens.engine.architecture import attention_masks


@dataclass
class PackedBatch:
    """Prompts with all their answers packed behind them in one row each.

    Row ``b`` holds the left-padded prompt (width ``prompt_width``), then, for every answer,
    the answer's tokens but the last (the inputs that predict tokens 2..n). The additive 4D
    ``mask`` lets each answer segment see its prompt and its own earlier tokens only, and its
    ``positions`` restart right after the prompt, so every answer is scored exactly as if it
    were the only continuation. ``keep`` says which positions' logits the forward computes:
    the last ``keep`` positions. ``reads`` index the kept logits:
    for every token of every answer, ``(row, kept_position, token, slot)``.
    """

    ids: Int[Tensor, "batch pos"]
    mask: Float[Tensor, "batch 1 pos pos"]
    positions: Int[Tensor, "batch pos"]
    keep: int
    reads: Int[Tensor, "read 4"]


def pack_answers(
    prompt_ids: Sequence[list[int]],
    answer_ids: Sequence[Sequence[list[int] | None]],
    pad_id: int,
    dtype: torch.dtype = torch.float32,
    width: int | None = None,
) -> PackedBatch:
    """Lay out prompts and answers for one forward pass (see :class:`PackedBatch`), the
    prompts left-padded to ``width`` (default: the longest)."""
    width = width or max(len(p) for p in prompt_ids)
    segments = [sum(len(a) - 1 for a in ans if a is not None) for ans in answer_ids]
    total = width + max(segments)
    ids = torch.full((len(prompt_ids), total), pad_id, dtype=torch.long)
    positions = torch.zeros((len(prompt_ids), total), dtype=torch.long)
    allow = torch.zeros((len(prompt_ids), total, total), dtype=torch.bool)
    reads = []
    first = width - 1  # logits are kept from the prompt's last position on
    for b, (p_ids, ans) in enumerate(zip(prompt_ids, answer_ids, strict=True)):
        n, start = len(p_ids), width - len(p_ids)
        ids[b, start:width] = torch.tensor(p_ids)
        positions[b, start:width] = torch.arange(n)
        allow[b, start:width, start:width] = torch.ones(n, n, dtype=torch.bool).tril()
        offset = width
        for k, a_ids in enumerate(ans):
            if a_ids is None:
                continue
            m = len(a_ids) - 1
            ids[b, offset : offset + m] = torch.tensor(a_ids[:-1], dtype=torch.long)
            positions[b, offset : offset + m] = n + torch.arange(m)
            allow[b, offset : offset + m, start:width] = True
            allow[b, offset : offset + m, offset : offset + m] = torch.ones(m, m).tril().bool()
            # token 0 is predicted at the prompt's last position, token j at segment slot j-1
            sources = [width - 1, *range(offset, offset + m)]
            reads += [(b, src - first, tok, k) for src, tok in zip(sources, a_ids, strict=True)]
            offset += m
    idle = ~allow.any(-1)  # padding queries attend to themselves (their outputs are unused)
    allow |= torch.eye(total, dtype=torch.bool) & idle[..., None]
    mask = torch.zeros(allow.shape, dtype=dtype).masked_fill_(~allow, torch.finfo(dtype).min)
    return PackedBatch(ids, mask[:, None], positions, total - first, torch.tensor(reads))


def packed_inputs(model, packed: PackedBatch) -> tuple[Tensor, Tensor | dict, Tensor]:
    """``ids, masks, positions`` of a :class:`PackedBatch` on the model's device, the masks as
    :func:`tslens.engine.architecture.attention_masks` gives them."""
    device = model.cfg.device
    positions = packed.positions.to(device)
    masks = attention_masks(model, packed.mask.to(device), positions, positions)
    return packed.ids.to(device), masks, positions


def forward_packed(model, packed: PackedBatch) -> Float[Tensor, "batch kept vocab"]:
    """One forward of a :class:`PackedBatch`, keeping the logits that :func:`read_packed`
    reads (active hooks apply)."""
    ids, masks, positions = packed_inputs(model, packed)
    return model(ids, attention_mask=masks, position_ids=positions, logits_to_keep=packed.keep)


def logsumexp_inplace(rows: Float[Tensor, "row vocab"], chunk: int = 64) -> Float[Tensor, " row"]:
    """``logsumexp`` over the last axis (float32), computed in place chunk by chunk: ``rows``
    is overwritten (float32 rows) or copied a chunk at a time (other dtypes). Twice as fast
    as ``torch.logsumexp`` on a [1000, 262k] CPU tensor, which allocates a full copy."""
    out = torch.empty(len(rows), dtype=torch.float32, device=rows.device)
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        part = part if part.dtype == torch.float32 else part.float()
        top = part.amax(-1, keepdim=True)
        out[start : start + chunk] = part.sub_(top).exp_().sum(-1).log_() + top[:, 0]
    return out


def read_packed(
    logits: Float[Tensor, "row kept vocab"],
    reads: Int[Tensor, "read 4"],
    n_rows: int,
    k: int,
    greedy: bool = True,
) -> tuple[Float[Tensor, "row k"], Float[Tensor, "row k"], Bool[Tensor, "row k"]]:
    """Sum the answer tokens' log-probs read from a packed forward (see :class:`PackedBatch`).

    Each read position's normaliser (log-sum-exp over the vocabulary) is computed once, however
    many answers read there, and the log-softmax is never materialised: with a 262k vocabulary
    that copy costs as much as the normaliser itself. The read rows of ``logits`` are
    overwritten (it is scratch once read).

    Returns ``(logprob sums, tokens that are not the argmax, which slots were scored)``, each
    ``[row, k]`` on the logits' device; the misses are all 0 unless ``greedy``.
    """
    row, pos, tok, slot = reads.to(logits.device).unbind(-1)
    flat = logits.reshape(-1, logits.shape[-1])  # a view: [row * kept, vocab]
    where, column = torch.unique(row * logits.shape[1] + pos, return_inverse=True)
    read = flat if len(where) == len(flat) else flat[where]  # only rows that are read
    token_logits = read[column, tok].float()
    sums = torch.zeros(n_rows, k, dtype=torch.float64, device=logits.device)
    misses = torch.zeros_like(sums)
    if greedy:
        misses.index_put_((row, slot), (read.argmax(-1)[column] != tok).double(), accumulate=True)
    token_lps = token_logits - logsumexp_inplace(read)[column]
    sums.index_put_((row, slot), token_lps.double(), accumulate=True)
    scored = torch.zeros_like(sums, dtype=torch.bool).index_put_((row, slot), torch.tensor(True))
    return sums, misses, scored
