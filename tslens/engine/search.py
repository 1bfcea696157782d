"""Beam search over *complete* answers: continuations that end at a stop string (newline).

Used for the paper's "tasks solved" metric: the K-th most likely complete answer sets the bar
p_K, and task i counts as solved on a prompt when P(answer_i) >= p_K. Beams share each prompt's
prefix KV cache (computed once) and advance all prompts' beams in one batched step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from tslens.engine.batching import batched, status
from tslens.engine.continuation import PrefixBatch, continue_beams, fork, run_prefix
from tslens.engine.lens import as_lens
from tslens.engine.packing import logsumexp_inplace


@lru_cache(maxsize=8)
def stop_tokens(tokenizer, stop: str) -> Bool[Tensor, " vocab"]:
    """Which tokens of the vocabulary contain the ``stop`` string (they end an answer)."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return torch.tensor([stop in t for t in texts])


@dataclass(frozen=True)
class Completion:
    """A complete answer the beam found: ``text`` (before the stop string), the generated
    ``tokens`` (the stop token included, unless the search finished it at its length),
    ``logprob``, log P(tokens | prompt), and ``answer_logprob``, log P of the tokens before
    the stop token (the answer's own probability when those tokens are how the tokenizer
    writes ``text`` after the prompt)."""

    text: str
    logprob: float
    tokens: tuple[int, ...]
    answer_logprob: float


@torch.inference_mode()
def beam_search(
    model,
    prompts: Sequence[str],
    width: int = 8,
    max_new_tokens: int = 12,
    stop: str = "\n",
    batch_size: int | None = None,
    finish_at_max: bool = False,
    progress: bool = False,
) -> list[list[Completion]]:
    """Most likely complete answers of each prompt, by beam search.

    Args:
        model: a ``TransformerBridge``.
        prompts: texts ending where the answer starts.
        width: beams kept per prompt (also the most complete answers returned per prompt).
        max_new_tokens: longest answer searched, in tokens.
        stop: the string that ends an answer.
        batch_size: prompts searched together (default: ``default_batch_size``).
        finish_at_max: beams still alive after ``max_new_tokens`` count as complete too (for
            models never trained to end an answer, whose answers have a known length).
        progress: show a progress bar over the prompts.

    Returns:
        Per prompt, the :class:`Completion` of each distinct non-empty answer text, best first.
    """
    found = decode_in_chunks(
        model, prompts, stop, batch_size, _beam, width, max_new_tokens, finish_at_max,
        progress=progress, desc="beam search",
    )  # fmt: skip
    return [[Completion(text, score, tuple(ids), answer) for text, score, ids, answer in row]
            for row in found]  # fmt: skip


def beam_complete_answers(
    model, prompts: Sequence[str], width: int = 8, max_new_tokens: int = 12, stop: str = "\n",
    batch_size: int | None = None, finish_at_max: bool = False, progress: bool = False,
) -> list[list[str]]:  # fmt: skip
    """The answer texts of :func:`beam_search` (same arguments), best first."""
    found = beam_search(model, prompts, width, max_new_tokens, stop, batch_size, finish_at_max,
                        progress)  # fmt: skip
    return [[c.text for c in row] for row in found]


def decode_in_chunks(
    model, prompts, stop, batch_size, search, *options, progress=False, desc="decoding"
) -> list:
    """``search(lens, prompt_ids, stop, is_stop, *options)`` over batches of the prompts (one
    :func:`tslens.engine.batching.batched` loop: progress, resume, OOM back-off), results in
    prompt order. A sampled batch depends on the generator's state, which a resumed run would
    not share: only deterministic searches are saved."""
    lens = as_lens(model)
    is_stop = stop_tokens(lens.tokenizer, stop).to(lens.device)
    ids = lens.token_ids(prompts)
    deterministic = not any(isinstance(o, tuple) and o[:1] == ("sample",) for o in options)

    def run(chunk: list[int]) -> list:
        return search(lens, [ids[i] for i in chunk], stop, is_stop, *options)

    batches = batched(
        lens, len(prompts), run, kind=f"decode-{search.__name__}" if deterministic else None,
        key=lambda chunk: [[ids[i] for i in chunk], stop, options], desc=desc, progress=progress,
        batch_size=batch_size or lens.batch_size(),
    )  # fmt: skip
    return [[tuple(a) if isinstance(a, list) else a for a in row]
            for _, found in batches for row in found]  # fmt: skip


def _beam(
    model, prompt_ids, stop, is_stop, width, max_new_tokens, finish_at_max
) -> list[list[tuple[str, float, list[int], float]]]:
    batch = as_lens(model).left_pad(prompt_ids)
    logprobs, cache = run_prefix(model, batch)
    finished, _ = search_beams(model, logprobs, cache, batch, is_stop, width, max_new_tokens,
                               finish_at_max)  # fmt: skip
    return [ranked_texts(model.tokenizer, f, width, stop) for f in finished]


Found = list[list[tuple[float, list[int], float]]]  # per prompt: (score, tokens, answer score)


def search_beams(
    model,
    logprobs: Float[Tensor, "prompt vocab"],
    cache,
    batch: PrefixBatch,
    is_stop: Bool[Tensor, " vocab"],
    width: int,
    max_new_tokens: int,
    finish_at_max: bool = False,
    also_at_max: int | None = None,
) -> tuple[Found, Found | None]:
    """The beam search itself, from prompts already run (``logprobs`` of their last position
    and their ``cache``, which stays as it was): per prompt, every finished beam as
    ``(log P(tokens), tokens, log P(tokens before the stop token))``.

    ``also_at_max=m`` also returns what the search would have finished with
    ``max_new_tokens=m, finish_at_max=True`` (for ``m <= max_new_tokens``): up to step ``m``
    both searches keep the same beams, so one search serves both (the caller decides later
    which it needs); otherwise the second element is None. Each step names itself on the
    progress bar (``"beam step 3/8, 40 prompts searching"``), so a long batch is not silent.

    A prompt's search ends when it has ``width`` finished beams and no alive beam can still
    beat the ``width``-th (each prompt on its own, so its answers do not depend on its batch).

    The beams of a prompt run side by side in the prompt's one row of the cache
    (:func:`tslens.engine.continuation.continue_beams`).
    """
    device = logprobs.device
    n = logprobs.shape[0]
    logits = logprobs.clone()  # scratch: each step's candidates are read from it in place
    stop_ids = is_stop.nonzero()[:, 0].to(device)
    cache = fork(cache)  # one row per prompt; its beams ride side by side in that row
    active = torch.arange(n, device=device)  # the prompts still searching, in cache-row order
    sees = torch.zeros(n, 1, 0, dtype=torch.bool, device=device)  # [prompt, beam, cont]
    scores = torch.zeros(n, 1, device=device)
    seqs = torch.zeros(n, 1, 0, dtype=torch.long, device=device)
    finished: Found = [[] for _ in range(n)]
    snapshot: list | None = None if also_at_max is None else [None] * n
    for step in range(max_new_tokens):
        n_act, beams = scores.shape
        status(f"beam step {step + 1}/{max_new_tokens}, {n_act} prompts searching")
        (end_scores, end_beam, end_tok), (keep_score, keep_beam, keep_tok) = _candidates(
            logits.view(n_act, beams, -1), scores, stop_ids, width
        )
        prompts = active.tolist()
        for b, p in enumerate(prompts):
            for score, beam, tok in zip(end_scores[b].tolist(), end_beam[b].tolist(),
                                        end_tok[b].tolist(), strict=True):  # fmt: skip
                if score > -torch.inf:
                    finished[p].append((score, seqs[b, beam].tolist() + [tok],
                                        scores[b, beam].item()))  # fmt: skip
        last = step == max_new_tokens - 1
        if (last and finish_at_max) or (snapshot is not None and step == also_at_max - 1):
            for b, p in enumerate(prompts):
                alive = [(score, seqs[b, beam].tolist() + [tok], score) for score, beam, tok in
                         zip(keep_score[b].tolist(), keep_beam[b].tolist(), keep_tok[b].tolist(),
                             strict=True) if score > -torch.inf]  # fmt: skip
                if snapshot is not None and step == also_at_max - 1:
                    snapshot[p] = finished[p] + alive
                if last and finish_at_max:
                    finished[p] = finished[p] + alive
        # Each prompt stops on its own (so its answers do not depend on the batch it is in).
        going = torch.tensor([not _done(finished[p], keep_score[b], width)
                              for b, p in enumerate(prompts)], device=device)  # fmt: skip
        if snapshot is not None:
            for b, p in enumerate(prompts):
                if not going[b] and snapshot[p] is None:
                    snapshot[p] = list(finished[p])
        if last or not going.any():
            break
        kept = going.nonzero()[:, 0]
        if len(kept) < n_act:
            cache.batch_select_indices(kept)
        parents = keep_beam[kept]  # [prompt, width]: the beam each kept candidate extends
        seqs = torch.cat([seqs[kept].gather(1, parents[..., None].expand(-1, -1, step)),
                          keep_tok[kept][..., None]], -1)  # fmt: skip
        sees = sees[kept].gather(1, parents[..., None].expand(-1, -1, sees.shape[-1]))
        scores, active = keep_score[kept], active[kept]
        logits = continue_beams(model, cache, batch, active, keep_tok[kept], sees, step)
        # the tokens just fed are columns of the cache that each one's own beam sees from now on
        new = torch.eye(width, dtype=torch.bool, device=device).expand(len(kept), -1, -1)
        sees = torch.cat([sees, new], dim=-1)
    if snapshot is not None:  # prompts still searching at the end had stopped at step m too
        snapshot = [list(finished[p]) if s is None else s for p, s in enumerate(snapshot)]
    return finished, snapshot


def _candidates(
    logits: Float[Tensor, "prompt beam vocab"],
    scores: Float[Tensor, "prompt beam"],
    stop_ids: Int[Tensor, " stop"],
    width: int,
) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
    """The ``width`` best candidates of one beam step that end the answer (a stop token) and
    the ``width`` best that continue it, each as ``(score, beam, token)``, all ``[prompt, <=
    width]``. ``logits`` (or log-probs) are normalised here and overwritten: the best of
    ``beam × vocab`` is found among each beam's own best ``width``, so no ``[prompt, beam,
    vocab]`` sum, mask or log-softmax is ever materialised (each costs about what the step's
    unembedding costs on a 262k vocabulary)."""
    n, beams, _ = logits.shape
    flat = logits.view(n * beams, -1)
    stops = flat[:, stop_ids]  # [row, stop]: read before they are masked out below
    flat.index_fill_(-1, stop_ids, -torch.inf)
    best, best_tok = flat.topk(width, dim=-1)  # [row, width]
    norm = torch.logaddexp(logsumexp_inplace(flat), torch.logsumexp(stops, dim=-1)).view(
        n, beams, 1
    )
    ends = scores[..., None] + stops.view(n, beams, -1) - norm  # [prompt, beam, stop]
    end_scores, end_at = ends.view(n, -1).topk(min(width, ends[0].numel()), dim=-1)
    end_beam, end_tok = end_at // len(stop_ids), stop_ids[end_at % len(stop_ids)]
    keeps = scores[..., None] + best.view(n, beams, -1) - norm  # [prompt, beam, width]
    keep_score, keep_at = keeps.view(n, -1).topk(width, dim=-1)
    keep_tok = best_tok.view(n, -1).gather(1, keep_at)
    return (end_scores, end_beam, end_tok), (keep_score, keep_at // width, keep_tok)


def _done(found, alive_scores: Tensor, width: int) -> bool:
    """A prompt's search is over when it has ``width`` finished answers and none of its alive
    beams can still beat the ``width``-th of them."""
    if len(found) < width:
        return False
    bar = sorted((f[0] for f in found), reverse=True)[width - 1]
    return alive_scores.max().item() <= bar


def ranked_texts(
    tokenizer, found, width: int, stop: str
) -> list[tuple[str, float, list[int], float]]:
    """``(text, score, tokens, answer score)`` of the best-scored occurrence of each distinct
    non-empty text of the finished beams ``found`` (see :func:`search_beams`), best first, at
    most ``width``."""
    ranked: list[tuple[str, float, list[int], float]] = []
    for score, ids, answer_score in sorted(found, key=lambda f: -f[0]):
        text = tokenizer.decode(ids).split(stop)[0]
        if text and all(text != seen for seen, *_ in ranked):
            ranked.append((text, score, ids, answer_score))
    return ranked[:width]
