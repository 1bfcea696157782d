"""Beam search over *complete* answers: continuations that end at a stop string (newline).

Used for the paper's "tasks solved" metric: the K-th most likely complete answer sets the bar
p_K, and task i counts as solved on a prompt when P(answer_i) >= p_K. Beams share each prompt's
prefix KV cache (computed once) and advance all prompts' beams in one batched step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from tslens.batching import default_batch_size
from tslens.engine.continuation import (
    PrefixBatch,
    continue_beams,
    continue_prefix,
    fork,
    left_pad,
    run_prefix,
)
from tslens.packing import logsumexp_inplace
from tslens.resume import cached
from tslens.scoring import pad_token_id, prompt_token_ids


@lru_cache(maxsize=8)
def _stop_tokens(tokenizer, stop: str) -> Bool[Tensor, " vocab"]:
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
    found = _in_chunks(
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


def _in_chunks(
    model, prompts, stop, batch_size, search, *options, progress=False, desc="decoding"
) -> list:
    """``search(model, prompt_ids, stop, is_stop, *options)`` over chunks of the prompts."""
    is_stop = _stop_tokens(model.tokenizer, stop).to(model.cfg.device)
    batch_size = batch_size or default_batch_size(model)
    results: list = []
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress, leave=False)
    with bar:
        for start in range(0, len(prompts), batch_size):
            chunk = prompt_token_ids(model, prompts[start : start + batch_size])

            def run(chunk=chunk) -> list:
                return search(model, chunk, stop, is_stop, *options)

            # A sampled chunk depends on the generator's state, which a resumed run would not
            # share: only deterministic searches are saved.
            deterministic = not any(isinstance(o, tuple) and o[:1] == ("sample",) for o in options)
            if deterministic:
                found = cached(f"decode-{search.__name__}", model, [chunk, stop, options], run)
                results += [[tuple(a) if isinstance(a, list) else a for a in row] for row in found]
            else:
                results += run()
            bar.update(len(chunk))
    return results


def _beam(
    model, prompt_ids, stop, is_stop, width, max_new_tokens, finish_at_max
) -> list[list[tuple[str, float, list[int], float]]]:
    batch = left_pad(prompt_ids, pad_token_id(model), model.cfg.device)
    logprobs, cache = run_prefix(model, batch)
    finished, _ = search_beams(model, logprobs, cache, batch, is_stop, width, max_new_tokens,
                               finish_at_max)  # fmt: skip
    return [_ranked(model.tokenizer, f, width, stop) for f in finished]


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
    status: Callable[[str], None] | None = None,
) -> tuple[Found, Found | None]:
    """The beam search itself, from prompts already run (``logprobs`` of their last position
    and their ``cache``, which stays as it was): per prompt, every finished beam as
    ``(log P(tokens), tokens, log P(tokens before the stop token))``.

    ``also_at_max=m`` also returns what the search would have finished with
    ``max_new_tokens=m, finish_at_max=True`` (for ``m <= max_new_tokens``): up to step ``m``
    both searches keep the same beams, so one search serves both (the caller decides later
    which it needs); otherwise the second element is None. ``status``, if given, is told
    each step as it starts (``"beam step 3/8, 40 prompts searching"``: a progress bar's
    postfix, so that a long batch is not silent).

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
        if status is not None:
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


def _ranked(tokenizer, found, width: int, stop: str) -> list[tuple[str, float, list[int], float]]:
    """``(text, score, tokens, answer score)`` of the best-scored occurrence of each distinct
    non-empty text of the finished beams ``found`` (see :func:`search_beams`), best first, at
    most ``width``."""
    ranked: list[tuple[str, float, list[int], float]] = []
    for score, ids, answer_score in sorted(found, key=lambda f: -f[0]):
        text = tokenizer.decode(ids).split(stop)[0]
        if text and all(text != seen for seen, *_ in ranked):
            ranked.append((text, score, ids, answer_score))
    return ranked[:width]


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
        non-empty answers, most likely first.
    """
    found = _in_chunks(
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
    generator = torch.Generator(model.cfg.device).manual_seed(seed)
    mode = ("sample", temperature, generator) if temperature > 0 else "greedy"
    return _in_chunks(
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
    device = model.cfg.device
    batch = left_pad(prompt_ids, pad_token_id(model), device)
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
