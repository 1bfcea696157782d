"""The task answers' probabilities and "tasks solved" from ONE computation of each prompt.

"Tasks solved" (Xiong et al. 2024): answer k is solved on a prompt when it is among the K most
likely *complete* answers (beam search to a newline, :mod:`tslens.engine.search`), i.e.
P(answer_k) >= p_K. Computed naively that is three passes over every prompt: score the
answers, beam-search from scratch, then score the beam's candidates with the prompt again.
Here each batch of prompts runs once, in the plain scorer's packed forward with the task
answers (with and without the newline) behind each prompt, keeping the prompts' KV cache
(:func:`tslens.engine.continuation.run_prefix_packed`); everything else continues that cache:

- one beam search starts from the prompts' last logits and cache; it serves both ways of
  completing an answer (to the newline, or at the answers' token length for models that
  never end an answer; see :func:`tslens.analyses.prompt.mixture.complete_by`), because up to the
  answers' length both searches keep the same beams (:func:`tslens.engine.search.search_beams`);
- a candidate's probability is the beam's own when the beam's tokens are how the tokenizer
  writes the candidate after the prompt and the answer ended on a stop token that is exactly
  the newline; every other candidate is scored exactly behind the cache
  (:func:`tslens.engine.rows.score_rows`).

Which completion applies is decided after all batches, from the mean P(newline | prompt +
answer) over every prompt, as before; the result is the same as the three-pass computation
(tested against :func:`tslens.analyses.prompt.mixture.tasks_solved`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from tslens.engine.batching import batched, status
from tslens.engine.continuation import run_prefix_packed, stack_caches
from tslens.engine.lens import as_lens
from tslens.engine.packing import pack_answers, read_packed
from tslens.engine.rows import Row, score_rows
from tslens.engine.search import ranked_texts, search_beams, stop_tokens
from tslens.engine.tokens import answer_token_ids, check_context

STOP = "\n"
TRUST_BEAM_SCORES = True  # False rescores every candidate behind the cache (tests both paths)


def longest_answer_tokens(model, answers: Sequence[Sequence[str]]) -> int:
    """Tokens in the longest of all answers (tokenized alone, no special tokens)."""
    flat = [a for ans in answers for a in ans]
    return max(len(ids) for ids in model.tokenizer(flat, add_special_tokens=False)["input_ids"])


def mean_stop_probability(plain: Tensor, ended: Tensor) -> float:
    """Mean P(stop | prompt + answer) from log P(answer) and log P(answer + stop)."""
    ratio = (ended - plain).exp()
    return ratio[torch.isfinite(ratio)].mean().item()


def solve_batch_size(model, tokens_per_row: int, width: int) -> int:
    """Prompts per batch of :func:`score_and_solve`: at least :func:`default_batch_size`, and
    up to 64 while a beam step's log-probs stay under 256 MiB. Every beam step reads the whole
    unembedding (671 MB for Gemma-3-270M's 262k vocabulary) whatever its rows, so on a large
    vocabulary the search costs what its number of steps costs, and bigger batches amortise
    it (measured on Gemma-3-270M, 2 cores: a step of 12 rows 0.31 s, of 48 rows 0.64 s)."""
    vocab = model.cfg.d_vocab
    by_memory = 2**28 // (4 * width * vocab)
    return int(max(as_lens(model).batch_size(tokens_per_row), min(64, by_memory)))


def score_and_solve(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    labels: Sequence[str] | None = None,
    width: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    complete_by: str | None = None,
    forward_batch: int | None = None,
) -> tuple[Float[Tensor, "prompt k"], str, Bool[Tensor, "prompt k"]]:
    """log P(answer_k | prompt), how complete answers were found (``"stop"`` or ``"length"``)
    and whether each answer is among the K most likely complete answers (``width`` beams,
    default 2K), from one forward of each prompt; ``complete_by`` forces the completion mode
    (default: decided from P(newline) as :func:`tslens.analyses.prompt.mixture.complete_by` does).
    A batch of ``batch_size`` prompts is searched together; its packed forwards take
    ``forward_batch`` prompts each (default: the plain scorer's :func:`default_batch_size`).
    Same numbers as the three-pass :func:`tslens.analyses.prompt.mixture.tasks_solved`."""
    lens = as_lens(model)
    k = len(answers[0])
    width = width or 2 * k
    longest = longest_answer_tokens(lens, answers)
    steps = max(8, longest + 2)
    prompt_ids = lens.token_ids(prompts)
    with_stop = [(*ans, *(a + STOP for a in ans)) for ans in answers]
    answer_ids = answer_token_ids(lens, prompts, with_stop, prompt_ids,
                                  None if labels is None else list(labels) * 2)  # fmt: skip
    check_context(lens, prompt_ids, answer_ids)
    order = sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i]))  # less padding
    both = torch.empty(len(prompts), 2 * k, dtype=torch.float64)
    candidates: list[dict[str, list]] = [{} for _ in prompts]

    def compute(chunk: list[int]) -> dict:
        return _solve_chunk(
            lens,
            [prompts[i] for i in chunk],
            [prompt_ids[i] for i in chunk],
            [answer_ids[i] for i in chunk],
            width,
            steps,
            longest,
            forward_batch,
        )

    batches = batched(
        lens, order, compute, kind="solve", desc="scoring + beam search", progress=progress,
        key=lambda chunk: [[prompt_ids[i] for i in chunk], [answer_ids[i] for i in chunk],
                           width, steps, longest],
        batch_size=batch_size or solve_batch_size(lens, max(len(p) for p in prompt_ids), width),
    )  # fmt: skip
    for chunk, got in batches:
        both[chunk] = torch.tensor(got["both"], dtype=torch.float64)
        for i, found in zip(chunk, got["candidates"], strict=True):
            candidates[i] = found
    logps, ended = both[:, :k], both[:, k:]
    ends_by = complete_by or ("stop" if mean_stop_probability(logps, ended) >= 0.5 else "length")
    extra = torch.full((len(prompts), width), float("-inf"), dtype=torch.float64)
    for i, ans in enumerate(answers):
        scores = [lp for text, lp in candidates[i][ends_by] if text not in ans]
        extra[i, : len(scores)] = torch.tensor(scores, dtype=torch.float64)
    kth = torch.cat([logps, extra], dim=1).topk(k, dim=1).values[:, -1:]
    return logps, ends_by, logps >= kth


def _extends(longer: list[int] | None, shorter: list[int] | None) -> bool:
    return longer is not None and shorter is not None and longer[: len(shorter)] == shorter


def _with_prefix_reads(reads: Int[Tensor, "read 4"], k: int) -> Int[Tensor, "more_reads 4"]:
    """The reads of ``k`` packed answers-with-newline (slots ``0..k-1``) as reads of ``2k``
    answers: each answer without its newline (its segment's reads but the last, slots
    ``0..k-1``) and with it (slots ``k..2k-1``). A segment's reads are consecutive."""
    group = reads[:, 0] * k + reads[:, 3]
    last = torch.ones(len(reads), dtype=torch.bool)
    last[:-1] = group[1:] != group[:-1]
    ended = reads.clone()
    ended[:, 3] += k
    return torch.cat([reads[~last], ended])


@torch.inference_mode()
def _solve_chunk(
    model, texts, prompt_ids, answer_ids, width: int, steps: int, longest: int,
    forward_batch: int | None = None,
):  # fmt: skip
    """One batch of prompts: their answers' log-probs (``both``, with and without the stop)
    and, per completion mode, each beam candidate's text and exact log-prob. Each stage names
    itself on the progress bar as it starts (:func:`tslens.engine.batching.status`: a batch
    takes a while). 75 lines, one stage after another: split, it would hand a dozen values
    from each stage to the next."""
    lens = as_lens(model)
    pad = lens.pad_id
    prefix = lens.left_pad(prompt_ids)
    columns = prefix.ids.shape[1]
    # The prompts and their answers in the plain scorer's forwards, keeping the prompts' cache.
    # Those run in the scorer's own (small) batches, all padded to one width so that their
    # caches stack into one for the beam search, which wants many prompts per step.
    size = forward_batch or lens.batch_size(columns)
    k = len(answer_ids[0]) // 2
    # Where every answer + newline is written as the answer's tokens, then more, the answer is
    # scored inside its newline segment (the same positions: one segment per answer, not two).
    shared = all(_extends(ans[k + j], ans[j]) for ans in answer_ids for j in range(k))
    segments = [ans[k:] for ans in answer_ids] if shared else answer_ids
    firsts, sums, caches = [], [], []
    n_forwards = -(-len(prompt_ids) // size)
    for start in range(0, len(prompt_ids), size):
        status(f"scoring forward {start // size + 1}/{n_forwards}")
        part = slice(start, start + size)
        packed = pack_answers(prompt_ids[part], segments[part], pad, width=columns)
        reads = _with_prefix_reads(packed.reads, k) if shared else packed.reads
        logits, part_cache = run_prefix_packed(model, packed, columns)
        firsts.append(torch.log_softmax(logits[:, 0].float(), dim=-1))  # read_packed overwrites
        got, _, scored = read_packed(logits, reads, len(packed.ids), 2 * k, greedy=False)
        sums.append(torch.where(scored, got, float("-inf")).cpu())
        caches.append(part_cache)
        del logits
    first, both = torch.cat(firsts), torch.cat(sums)
    cache = caches[0] if len(caches) == 1 else stack_caches(caches)
    del caches
    is_stop = stop_tokens(model.tokenizer, STOP).to(first.device)
    by_stop, by_length = search_beams(model, first, cache, prefix, is_stop, width, steps,
                                      also_at_max=longest)  # fmt: skip
    ranked = {mode: [ranked_texts(model.tokenizer, f, width, STOP) for f in found]
              for mode, found in (("stop", by_stop), ("length", by_length))}  # fmt: skip
    found = [sorted({c[0] for mode in ranked for c in ranked[mode][p]}) for p in range(len(texts))]
    canonical = answer_token_ids(as_lens(model), texts, found, prompt_ids, boundary="drop")
    stop_ids = model.tokenizer(STOP, add_special_tokens=False)["input_ids"]
    exact: list[dict[str, float]] = [{} for _ in texts]
    for p, row in enumerate(found):
        written = dict(zip(row, canonical[p], strict=True))
        for mode in ranked:
            for text, _, ids, answer_score in ranked[mode][p]:
                want = written[text]
                if want is None:  # merges with the prompt's end: not an answer (boundary="drop")
                    exact[p][text] = float("-inf")
                elif (
                    TRUST_BEAM_SCORES
                    and ids[: len(want)] == want
                    and (
                        ids[len(want) :] == stop_ids or (mode == "length" and len(ids) == len(want))
                    )
                ):  # the beam's tokens are the answer's own, its score is the answer's
                    exact[p].setdefault(text, answer_score)
    rescore = [(p, t, want) for p, row in enumerate(found)
               for t, want in zip(row, canonical[p], strict=True) if t not in exact[p]]  # fmt: skip
    if rescore:
        status(f"scoring {len(rescore)} candidates the beams wrote otherwise")
        rows = [
            Row(p, len(prompt_ids[p]) - 1, prompt_ids[p][-1:], [want]) for p, _, want in rescore
        ]
        scored = score_rows(model, cache, prefix, rows, 1, pad)[:, 0].tolist()
        for (p, text, _), value in zip(rescore, scored, strict=True):
            exact[p][text] = value
    return {
        "both": both.tolist(),
        "candidates": [
            {mode: [(c[0], exact[p][c[0]]) for c in ranked[mode][p]] for mode in ranked}
            for p in range(len(texts))
        ],  # fmt: skip
    }
