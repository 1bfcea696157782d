"""Packed forwards: many continuations of a prompt scored in ONE row of one forward pass.

A row holds a prompt, then segments that continue it (answers, or a prompt with some of its
tokens deleted), each seeing only what its own sequence would see (an additive 4D block mask)
at the positions it would have (explicit position ids). :func:`read_packed` then sums the
answer tokens' log-probs at the read positions. Used by exact answer scoring
(:mod:`tslens.scoring`), patching, ablation and demonstration attribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from tslens.architecture import attention_masks


@dataclass
class PackedBatch:
    """Prompts with all their answers packed behind them in one row each.

    Row ``b`` holds the left-padded prompt (width ``prompt_width``), then, for every answer,
    the answer's tokens but the last (the inputs that predict tokens 2..n). The additive 4D
    ``mask`` lets each answer segment see its prompt and its own earlier tokens only, and its
    ``positions`` restart right after the prompt, so every answer is scored exactly as if it
    were the only continuation. ``keep`` says which positions' logits the forward computes:
    the last ``keep`` (an int) or these columns (a tensor). ``reads`` index the kept logits:
    for every token of every answer, ``(row, kept_position, token, slot)``.
    """

    ids: Int[Tensor, "batch pos"]
    mask: Float[Tensor, "batch 1 pos pos"]
    positions: Int[Tensor, "batch pos"]
    keep: int | Int[Tensor, " kept"]
    reads: Int[Tensor, "read 4"]


def pack_answers(
    prompt_ids: Sequence[list[int]],
    answer_ids: Sequence[Sequence[list[int] | None]],
    pad_id: int,
    dtype: torch.dtype = torch.float32,
) -> PackedBatch:
    """Lay out prompts and answers for one forward pass (see :class:`PackedBatch`)."""
    width = max(len(p) for p in prompt_ids)
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


def forward_packed(model, packed: PackedBatch) -> Float[Tensor, "batch kept vocab"]:
    """One forward of a :class:`PackedBatch`, keeping the logits that :func:`read_packed`
    reads (active hooks apply)."""
    device = model.cfg.device
    positions = packed.positions.to(device)
    return model(
        packed.ids.to(device),
        attention_mask=attention_masks(model, packed.mask.to(device), positions, positions),
        position_ids=positions,
        logits_to_keep=packed.keep,
    )


def _logsumexp_(rows: Float[Tensor, "row vocab"], chunk: int = 64) -> Float[Tensor, " row"]:
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
    token_lps = token_logits - _logsumexp_(read)[column]
    sums.index_put_((row, slot), token_lps.double(), accumulate=True)
    scored = torch.zeros_like(sums, dtype=torch.bool).index_put_((row, slot), torch.tensor(True))
    return sums, misses, scored


def pack_deletions(
    prompt_ids: Sequence[list[int]],
    deletions: Sequence[Sequence[Sequence[int]]],
    answer_ids: Sequence[Sequence[list[int]]],
    pad_id: int,
    dtype: torch.dtype = torch.float32,
) -> PackedBatch:
    """Score every answer after the intact prompt AND after each copy of the prompt with some
    of its tokens deleted, all in one row per prompt (demonstration attribution).

    Args:
        prompt_ids: per row, the prompt's token ids.
        deletions: per row, per variant, the sorted token indices that variant deletes.
        answer_ids: per row, the answers' token ids (each answer is scored after the intact
            prompt and after every variant).

    Returns:
        A :class:`PackedBatch` whose slot ``v * n_answers + k`` is answer ``k`` after variant
        ``v`` (``v = 0``: the intact prompt, ``v >= 1``: ``deletions[v - 1]``), with
        ``n_answers`` the most answers of any row. A variant that deletes from index ``c`` on
        shares the prompt's first ``c`` tokens (their keys and values, computed once) and
        recomputes only its kept tokens after ``c``, at positions ``c, c + 1, ...``: exactly
        the prompt with those tokens removed. Segments are aligned across rows, so the logits
        are kept at a few columns only (``keep`` is a tensor of columns).
    """
    n_rows = len(prompt_ids)
    n_variants = 1 + max((len(d) for d in deletions), default=0)
    n_answers = max((len(a) for a in answer_ids), default=0)
    # where each variant's suffix starts (an empty deletion keeps the whole prompt)
    cuts = [
        [d[0] if d else len(p) for d in rows] for p, rows in zip(prompt_ids, deletions, strict=True)
    ]
    suffixes = [
        [
            [t for i, t in enumerate(p) if i >= cut and i not in set(d)]
            for d, cut in zip(rows, c, strict=True)
        ]
        for p, rows, c in zip(prompt_ids, deletions, cuts, strict=True)
    ]
    width = max(len(p) for p in prompt_ids)
    suffix_width = [
        max((len(s[v]) for s in suffixes if v < len(s)), default=0) for v in range(n_variants - 1)
    ]
    answer_width = [
        max((len(a[k]) - 1 for a in answer_ids if k < len(a)), default=0) for k in range(n_answers)
    ]
    suffix_at = [width + sum(suffix_width[:v]) for v in range(n_variants - 1)]
    answers_at = width + sum(suffix_width)
    total = answers_at + n_variants * sum(answer_width)
    ids = torch.full((n_rows, total), pad_id, dtype=torch.long)
    positions = torch.zeros((n_rows, total), dtype=torch.long)
    allow = torch.zeros((n_rows, total, total), dtype=torch.bool)
    reads = []
    for b, p_ids in enumerate(prompt_ids):
        n, start = len(p_ids), width - len(p_ids)
        ids[b, start:width] = torch.tensor(p_ids)
        positions[b, start:width] = torch.arange(n)
        allow[b, start:width, start:width] = torch.ones(n, n, dtype=torch.bool).tril()
        # per variant: the columns its sequence consists of, and its length
        seen: list[Tensor] = [torch.arange(start, width)]
        for v, (cut, suffix) in enumerate(zip(cuts[b], suffixes[b], strict=True)):
            end = suffix_at[v] + suffix_width[v]
            cols = torch.arange(end - len(suffix), end)  # right-aligned: the last token at end-1
            ids[b, cols] = torch.tensor(suffix, dtype=torch.long)
            positions[b, cols] = cut + torch.arange(len(suffix))
            allow[b, cols, start : start + cut] = True
            allow[b, cols[:, None], cols] = torch.ones(len(cols), len(cols)).tril().bool()
            seen.append(torch.cat([torch.arange(start, start + cut), cols]))
        for v, cols in enumerate(seen):
            offset = answers_at + v * sum(answer_width)
            for k, a_ids in enumerate(answer_ids[b]):
                m = len(a_ids) - 1
                own = torch.arange(offset, offset + m)
                ids[b, own] = torch.tensor(a_ids[:-1], dtype=torch.long)
                positions[b, own] = len(cols) + torch.arange(m)
                allow[b, own[:, None], cols] = True
                allow[b, own[:, None], own] = torch.ones(m, m).tril().bool()
                sources = [int(cols[-1]), *own.tolist()]
                slot = v * n_answers + k
                reads += [(b, src, tok, slot) for src, tok in zip(sources, a_ids, strict=True)]
                offset += answer_width[k]
    idle = ~allow.any(-1)  # padding queries attend to themselves (their outputs are unused)
    allow |= torch.eye(total, dtype=torch.bool) & idle[..., None]
    mask = torch.zeros(allow.shape, dtype=dtype).masked_fill_(~allow, torch.finfo(dtype).min)
    read = torch.tensor(reads, dtype=torch.long).reshape(-1, 4)
    keep, read[:, 1] = torch.unique(read[:, 1], return_inverse=True)
    return PackedBatch(ids, mask[:, None], positions, keep, read)
