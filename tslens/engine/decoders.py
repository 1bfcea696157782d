"""Decoders of whole answers over one shared prefix cache: branches (one per likely first
token, each continued greedily: decoding that keeps the superposition), greedy and sampled
continuations. The beam search over complete answers is :mod:`tslens.engine.search`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tslens.engine.continuation import continue_prefix, run_prefix
from tslens.engine.lens import as_lens
from tslens.engine.search import decode_in_chunks


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
        stop not included, as :func:`tslens.engine.scoring.answer_logprobs` scores it), distinct
        non-empty answers, most likely first.
    """
    found = decode_in_chunks(
        model, prompts, stop, batch_size, _decode, width, "branch", max_new_tokens, finish_at_max
    )
    return [_distinct(row) for row in found]


@torch.inference_mode()
def sample_complete_answers(
    model,
    prompts: Sequence[str],
    n_samples: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 12,
    stop: str = "\n",
    seed: int = 0,
    batch_size: int | None = None,
    finish_at_max: bool = False,
) -> list[list[tuple[str | None, float]]]:
    """Plain decoding of whole answers: greedy (``temperature=0``) or ancestral sampling.

    Each prompt's prefix is computed once and its ``n_samples`` continuations share that cache.
    Sampling draws from ``softmax(logits / temperature)`` with a generator seeded by ``seed``
    (same seed, same samples).

    Returns:
        Per prompt, ``n_samples`` pairs ``(answer, probability)``: the text before ``stop``
        and the model's probability (at temperature 1) of its tokens, the stop not included;
        ``("", P(stop))`` when the first token is the stop; ``(None, p)`` for a continuation
        that did not stop within ``max_new_tokens`` (unless ``finish_at_max``).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    generator = torch.Generator(as_lens(model).device).manual_seed(seed)
    mode = ("sample", temperature, generator) if temperature > 0 else "greedy"
    return decode_in_chunks(
        model, prompts, stop, batch_size, _decode, n_samples, mode, max_new_tokens, finish_at_max
    )


def _pick(mode, logprobs: Float[Tensor, "row vocab"]) -> Int[Tensor, " row"]:
    if mode == "greedy" or mode == "branch":
        return logprobs.argmax(-1)
    _, temperature, generator = mode
    probs = (logprobs.float() / temperature).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _decode(
    model, prompt_ids, stop, is_stop, copies, mode, max_new_tokens, finish_at_max
) -> list[list[tuple[str | None, float]]]:
    """``copies`` continuations per prompt over its shared prefix cache. The first tokens are
    the ``copies`` most likely non-stop tokens (``mode="branch"``), or picked as every later
    token is (greedy or sampled). Returns per prompt ``copies`` pairs (text or None, prob)."""
    lens = as_lens(model)
    device = lens.device
    batch = lens.left_pad(prompt_ids)
    n = len(prompt_ids)
    logprobs, cache = run_prefix(model, batch)  # [n, vocab]
    rows = torch.arange(n, device=device).repeat_interleave(copies)
    if mode == "branch":
        scores, tokens = logprobs.masked_fill(is_stop, -torch.inf).topk(copies, -1)
        scores, tokens = scores.flatten(), tokens.flatten()
    else:
        tokens = _pick(mode, logprobs[rows])
        scores = logprobs[rows].gather(-1, tokens[:, None])[:, 0]
    cache.batch_select_indices(rows)
    scores = scores.double()
    seqs, alive = tokens[:, None], ~is_stop[tokens]
    results: list[tuple[str | None, float]] = [(None, 0.0)] * len(rows)

    def finish(ended: Tensor) -> None:
        for r in ended.nonzero()[:, 0].tolist():
            ids = seqs[r].tolist()
            text = model.tokenizer.decode(ids).split(stop)[0] if not is_stop[ids[0]] else ""
            results[r] = (text, scores[r].exp().item())

    finish(~alive)
    for step in range(max_new_tokens):
        if not alive.any():
            break
        if step == max_new_tokens - 1:  # the continuations are as long as allowed
            if finish_at_max:
                finish(alive)
            else:
                for r in alive.nonzero()[:, 0].tolist():
                    results[r] = (None, scores[r].exp().item())
            break
        logprobs = continue_prefix(model, cache, batch, rows, tokens[:, None], step)[:, -1]
        tokens = _pick(mode, logprobs)
        ends = alive & is_stop[tokens]
        finish(ends)
        alive &= ~ends
        scores = scores + logprobs.gather(-1, tokens[:, None])[:, 0].double()
        seqs = torch.cat([seqs, tokens[:, None]], dim=-1)
    return [results[i * copies : (i + 1) * copies] for i in range(n)]


def _distinct(found: list[tuple[str | None, float]]) -> list[tuple[str, float]]:
    """Distinct non-empty answers, most likely first."""
    best: dict[str, float] = {}
    for text, prob in found:
        if text:
            best[text] = max(best.get(text, 0.0), prob)
    return sorted(best.items(), key=lambda item: -item[1])
