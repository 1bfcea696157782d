"""Exact answer probabilities: P(answer | prompt) by the chain rule over the answer's tokens.

The fast path computes each prompt's prefix once (one batched, left-padded forward that keeps
the KV cache and only the last position's logits), then scores *all* answers of all prompts in
one batched continuation over that cache. :func:`answer_logprobs_naive` is the plain reference
(one full forward per prompt+answer); the two agree to float32 precision (tested).

Tokenization: a prompt is tokenized as ``[BOS] + tokens(prompt)`` when the model's TransformerLens
config prepends BOS (``cfg.default_prepend_bos``), and an answer's tokens are
``tokens(prompt + answer)`` minus the prompt's tokens. If the prompt's tokens are not a prefix
of the prompt+answer tokens (the answer merges with the prompt's last token), scoring raises
:class:`TokenBoundaryError` instead of silently scoring other tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from tslens.errors import TslensError


class TokenBoundaryError(TslensError):
    """An answer's first token merges with the prompt's last token."""


def prompt_token_ids(model, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text as tslens scores it: BOS (if the model uses one) + the text."""
    tok = model.tokenizer
    bos = (
        [tok.bos_token_id] if model.cfg.default_prepend_bos and tok.bos_token_id is not None else []
    )
    return [bos + ids for ids in tok(list(texts), add_special_tokens=False)["input_ids"]]


def answer_token_ids(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    prompt_ids: Sequence[list[int]],
    labels: Sequence[str] | None = None,
) -> list[list[list[int]]]:
    """Token ids of every answer in context: ``tokens(prompt+answer)[len(tokens(prompt)):]``.

    Args:
        labels: a name per answer slot (e.g. the task names) used in error messages.

    Raises:
        TokenBoundaryError: when an answer is empty or merges with the end of its prompt.
    """
    flat = [p + a for p, ans in zip(prompts, answers, strict=True) for a in ans]
    full_ids = iter(prompt_token_ids(model, flat))
    out = []
    for prompt, ans, p_ids in zip(prompts, answers, prompt_ids, strict=True):
        row = []
        for k, answer in enumerate(ans):
            ids = next(full_ids)
            if ids[: len(p_ids)] != p_ids or len(ids) == len(p_ids):
                who = f"task {labels[k]}" if labels else f"answer {k}"
                raise TokenBoundaryError(
                    f"{who}: answer {answer!r} merges with the prompt's end {prompt[-12:]!r} into "
                    "other tokens; use a template whose answer starts a new token (e.g. arrow, or "
                    "a separator before the answer)"
                )
            row.append(ids[len(p_ids) :])
        out.append(row)
    return out


@dataclass
class PrefixBatch:
    """Left-padded prompts: ``ids``/``mask``/``positions`` are [batch, pos]; ``lengths`` [batch]."""

    ids: Int[Tensor, "batch pos"]
    mask: Int[Tensor, "batch pos"]
    positions: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]


def left_pad(seqs: Sequence[list[int]], pad_id: int, device: torch.device) -> PrefixBatch:
    """Pad token sequences on the left so that every prompt ends at the last position."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # real tokens at 0..len-1 whatever the padding
    lengths = mask.sum(-1)
    return PrefixBatch(ids.to(device), mask.to(device), positions.to(device), lengths.to(device))


def forward_prefix(model, batch: PrefixBatch) -> tuple[Float[Tensor, "batch vocab"], object]:
    """Run the prompts once; return last-position log-probs (float32) and the KV cache."""
    logits, cache = model(
        batch.ids,
        return_type="logits_and_cache",
        attention_mask=batch.mask,
        position_ids=batch.positions,
        logits_to_keep=1,  # the prompt's other positions' logits are never needed
    )
    return torch.log_softmax(logits[:, -1].float(), dim=-1), cache


def forward_continuation(
    model,
    cache,
    batch: PrefixBatch,
    rows: Int[Tensor, " row"],
    tokens: Int[Tensor, "row new"],
    offset: int = 0,
) -> Float[Tensor, "row new vocab"]:
    """Continue the cached prompts ``rows`` (repeats allowed) with ``tokens``; log-probs out.

    ``cache`` must already be laid out row by row (``cache.batch_select_indices(rows)``) and
    hold ``offset`` continuation tokens beyond the prompts.
    """
    new = tokens.shape[1]
    mask = torch.cat(
        [
            batch.mask[rows],
            torch.ones(len(rows), offset + new, dtype=torch.long, device=rows.device),
        ],
        dim=1,
    )
    positions = batch.lengths[rows, None] + offset + torch.arange(new, device=rows.device)
    logits = model(tokens, attention_mask=mask, position_ids=positions, past_key_values=cache)
    return torch.log_softmax(logits.float(), dim=-1)


def _pad_right(seqs: Sequence[list[int]], pad_id: int) -> tuple[Tensor, Bool[Tensor, "r a"]]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    valid = torch.zeros((len(seqs), width), dtype=torch.bool)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
        valid[row, : len(seq)] = True
    return ids, valid


def _pad_id(model) -> int:
    tok = model.tokenizer
    return next(i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None)


def _check_context(model, prompt_ids: Sequence[list[int]], answer_ids) -> None:
    n_ctx = model.cfg.n_ctx
    longest = max(
        len(p) + max((len(a) for a in ans), default=0)
        for p, ans in zip(prompt_ids, answer_ids, strict=True)
    )
    if n_ctx and longest > n_ctx:
        raise TslensError(
            f"a prompt plus answer is {longest} tokens, longer than the model's context of "
            f"{n_ctx}; use fewer --n-examples"
        )


@torch.inference_mode()
def answer_logprobs(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    batch_size: int = 8,
    labels: Sequence[str] | None = None,
    progress: bool = False,
) -> Float[Tensor, "prompt k"]:
    """log P(answer | prompt) for every answer of every prompt (float64, on the CPU).

    Args:
        model: a ``TransformerBridge`` (see :func:`tslens.models.load_model`).
        prompts: the texts to score, each ending right before its answers.
        answers: per prompt, its candidate answers (prompts may have different counts).
        batch_size: prompts per forward; each carries all its answers in the continuation.
        labels: a name per answer position for error messages (e.g. task names).
        progress: show a progress bar over batches.

    Returns:
        ``[prompt, k]`` log-probabilities with ``k`` the most answers of any prompt; missing
        entries (ragged input) are ``-inf``.
    """
    prompt_ids = prompt_token_ids(model, prompts)
    answer_ids = answer_token_ids(model, prompts, answers, prompt_ids, labels)
    _check_context(model, prompt_ids, answer_ids)
    k_max = max(len(a) for a in answers)
    out = torch.full((len(prompts), k_max), float("-inf"), dtype=torch.float64)
    device, pad = model.cfg.device, _pad_id(model)
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="scoring", disable=not progress, leave=False):
        stop = min(start + batch_size, len(prompts))
        batch = left_pad(prompt_ids[start:stop], pad, device)
        first, cache = forward_prefix(model, batch)
        owners = [i for i in range(stop - start) for _ in answer_ids[start + i]]
        flat = [a for ans in answer_ids[start:stop] for a in ans]
        if not flat:
            continue
        rows = torch.tensor(owners, device=device)
        tokens, valid = _pad_right(flat, pad)
        tokens, valid = tokens.to(device), valid.to(device)
        token_lp = torch.zeros(tokens.shape, dtype=torch.float32, device=device)
        token_lp[:, 0] = first[rows, tokens[:, 0]]
        if tokens.shape[1] > 1:
            cache.batch_select_indices(rows)  # one cache row per answer, shared prefix reused
            rest = forward_continuation(model, cache, batch, rows, tokens[:, :-1])
            token_lp[:, 1:] = rest.gather(-1, tokens[:, 1:, None]).squeeze(-1)
        totals = (token_lp.double() * valid).sum(-1).cpu()
        cols = [k for i in range(stop - start) for k in range(len(answer_ids[start + i]))]
        out[torch.tensor(owners) + start, torch.tensor(cols)] = totals
    return out


@torch.inference_mode()
def answer_logprobs_naive(
    model, prompts: Sequence[str], answers: Sequence[Sequence[str]]
) -> Float[Tensor, "prompt k"]:
    """Reference implementation: one plain forward of prompt+answer per answer, no batching,
    no cache. Same output layout as :func:`answer_logprobs`."""
    prompt_ids = prompt_token_ids(model, prompts)
    answer_ids = answer_token_ids(model, prompts, answers, prompt_ids)
    out = torch.full(
        (len(prompts), max(len(a) for a in answers)), float("-inf"), dtype=torch.float64
    )
    for i, (p_ids, ans) in enumerate(zip(prompt_ids, answer_ids, strict=True)):
        for k, a_ids in enumerate(ans):
            ids = torch.tensor([p_ids + a_ids], device=model.cfg.device)
            logits = model(ids)[0, len(p_ids) - 1 : -1].float()
            lp = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(a_ids)[:, None])
            out[i, k] = lp.double().sum()
    return out
