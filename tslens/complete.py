"""Beam search over *complete* answers: continuations that end at a stop string (newline).

Used for the paper's "tasks solved" metric: the K-th most likely complete answer sets the bar
p_K, and task i counts as solved on a prompt when P(answer_i) >= p_K. Beams share each prompt's
prefix KV cache (computed once) and advance all prompts' beams in one batched step.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from jaxtyping import Bool
from torch import Tensor

from tslens.scoring import (
    default_batch_size,
    forward_continuation,
    forward_prefix,
    left_pad,
    pad_token_id,
    prompt_token_ids,
)


@lru_cache(maxsize=8)
def _stop_tokens(tokenizer, stop: str) -> Bool[Tensor, " vocab"]:
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return torch.tensor([stop in t for t in texts])


@torch.inference_mode()
def beam_complete_answers(
    model,
    prompts: Sequence[str],
    width: int = 8,
    max_new_tokens: int = 12,
    stop: str = "\n",
    batch_size: int | None = None,
) -> list[list[str]]:
    """Most likely complete answers of each prompt, by beam search.

    Args:
        model: a ``TransformerBridge``.
        prompts: texts ending where the answer starts.
        width: beams kept per prompt (also the most complete answers returned per prompt).
        max_new_tokens: longest answer searched, in tokens.
        stop: the string that ends an answer.
        batch_size: prompts searched together (default: ``default_batch_size``).

    Returns:
        Per prompt, distinct non-empty answer strings (text before ``stop``), best first.
    """
    return _in_chunks(model, prompts, stop, batch_size, _search, width, max_new_tokens)


def _in_chunks(model, prompts, stop, batch_size, search, *options) -> list:
    """``search(model, prompt_ids, stop, is_stop, *options)`` over chunks of the prompts."""
    is_stop = _stop_tokens(model.tokenizer, stop).to(model.cfg.device)
    batch_size = batch_size or default_batch_size(model)
    results: list = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompt_token_ids(model, prompts[start : start + batch_size])
        results += search(model, chunk, stop, is_stop, *options)
    return results


def _search(model, prompt_ids, stop, is_stop, width, max_new_tokens) -> list[list[str]]:
    device = model.cfg.device
    batch = left_pad(prompt_ids, pad_token_id(model), device)
    n = len(prompt_ids)
    logprobs, cache = forward_prefix(model, batch)  # [n, vocab]: one beam per prompt so far
    scores = torch.zeros(n, 1, device=device)
    seqs = torch.zeros(n, 1, 0, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
    for step in range(max_new_tokens):
        beams = scores.shape[1]
        total = scores[:, :, None] + logprobs.view(n, beams, -1)  # [n, beams, vocab]
        vocab = total.shape[-1]
        ends = is_stop.expand_as(total)
        # Best candidates that end the answer now, and best that continue it.
        end_scores, end_idx = total.masked_fill(~ends, -torch.inf).view(n, -1).topk(width, -1)
        keep_score, keep_idx = total.masked_fill(ends, -torch.inf).view(n, -1).topk(width, -1)
        for b in range(n):
            for score, idx in zip(end_scores[b].tolist(), end_idx[b].tolist(), strict=True):
                if score > -torch.inf:
                    finished[b].append((score, seqs[b, idx // vocab].tolist() + [idx % vocab]))
        keep_beam, keep_tok = keep_idx // vocab, keep_idx % vocab
        if _done(finished, keep_score, width) or step == max_new_tokens - 1:
            break
        rows = (torch.arange(n, device=device)[:, None] * beams + keep_beam).flatten()
        cache.batch_select_indices(rows)
        seqs = torch.cat(
            [seqs.view(n * beams, -1)[rows].view(n, width, -1), keep_tok[..., None]], -1
        )
        scores = keep_score
        prompt_rows = torch.arange(n, device=device).repeat_interleave(width)
        logprobs = forward_continuation(
            model, cache, batch, prompt_rows, keep_tok.view(-1, 1), offset=step
        )[:, -1]
    return [_texts(model.tokenizer, f, width, stop) for f in finished]


def _done(finished, alive_scores: Tensor, width: int) -> bool:
    """Stop when no alive beam can still beat any prompt's width-th finished answer."""
    for b, found in enumerate(finished):
        if len(found) < width:
            return False
        bar = sorted((s for s, _ in found), reverse=True)[width - 1]
        if alive_scores[b].max().item() > bar:
            return False
    return True


def _texts(tokenizer, found, width: int, stop: str) -> list[str]:
    texts: list[str] = []
    for _, ids in sorted(found, key=lambda f: -f[0]):
        text = tokenizer.decode(ids).split(stop)[0]
        if text and text not in texts:
            texts.append(text)
    return texts[:width]


@torch.inference_mode()
def branch_complete_answers(
    model,
    prompts: Sequence[str],
    width: int = 4,
    max_new_tokens: int = 12,
    stop: str = "\n",
    batch_size: int | None = None,
    finish_at_max: bool = False,
) -> list[list[tuple[str, float]]]:
    """Decoding that keeps the superposition: one branch per each of the ``width`` most likely
    first tokens, each continued greedily over the shared prefix cache until ``stop``.

    Greedy decoding commits to one task at the first token (the paper's generation collapse);
    beam search of the same width may spend every beam on one first token. Here every branch
    starts from a different first token, so the K task answers of a K-task prompt come back
    from one call when their first tokens are among the top ``width``.

    ``finish_at_max`` also keeps branches that reach ``max_new_tokens`` without ``stop`` (for
    models trained without a loss on the separator, such as the shipped character model).

    Returns:
        Per prompt, ``(answer, probability)`` of every branch that reached ``stop`` within
        ``max_new_tokens`` (answer = text before ``stop``; probability of its tokens, the
        stop not included, as :func:`tslens.scoring.answer_logprobs` scores it), distinct
        answers, most likely first.
    """
    return _in_chunks(
        model, prompts, stop, batch_size, _branch, width, max_new_tokens, finish_at_max
    )


def _branch(model, prompt_ids, stop, is_stop, width, max_new_tokens, finish_at_max):
    device = model.cfg.device
    batch = left_pad(prompt_ids, pad_token_id(model), device)
    n = len(prompt_ids)
    logprobs, cache = forward_prefix(model, batch)
    scores, tokens = logprobs.masked_fill(is_stop, -torch.inf).topk(width, -1)  # [n, width]
    rows = torch.arange(n, device=device).repeat_interleave(width)
    cache.batch_select_indices(rows)
    scores, tokens = scores.flatten().double(), tokens.flatten()
    seqs, alive = tokens[:, None], torch.ones_like(tokens, dtype=torch.bool)
    done: list[dict[str, float]] = [{} for _ in range(n)]

    def finish(branches: Tensor) -> None:
        for r in branches.nonzero()[:, 0].tolist():
            text = model.tokenizer.decode(seqs[r].tolist()).split(stop)[0]
            if text:
                best = done[r // width]
                best[text] = max(best.get(text, -torch.inf), scores[r].item())

    for step in range(max_new_tokens):
        if step == max_new_tokens - 1:  # the branches are as long as allowed
            if finish_at_max:
                finish(alive)
            break
        logprobs = forward_continuation(model, cache, batch, rows, tokens[:, None], step)[:, -1]
        tokens = logprobs.argmax(-1)
        finish(alive & is_stop[tokens])
        alive &= ~is_stop[tokens]
        if not alive.any():
            break
        scores = scores + logprobs.gather(-1, tokens[:, None])[:, 0].double()
        seqs = torch.cat([seqs, tokens[:, None]], dim=-1)
    return [[(text, float(torch.tensor(lp).exp())) for text, lp in _best_first(d)] for d in done]


def _best_first(found: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(found.items(), key=lambda item: -item[1])
