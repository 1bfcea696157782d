"""Exact answer probabilities: P(answer | prompt) by the chain rule over the answer's tokens.

The fast path computes each prompt's prefix once (one batched, left-padded forward that keeps
the KV cache and only the last position's logits), then scores *all* answers of all prompts in
one batched continuation over that cache. ``answer_logprobs_naive`` (private, in
``tslens/_reference.py``) is the plain reference (one full forward per prompt+answer); the two
agree to float32 precision (tested).

Tokenization: a prompt is tokenized as ``[BOS] + tokens(prompt)`` when the model's TransformerLens
config prepends BOS (``cfg.default_prepend_bos``), and an answer's tokens are
``tokens(prompt + answer)`` minus the prompt's tokens. If the prompt's tokens are not a prefix
of the prompt+answer tokens (the answer merges with the prompt's last token), scoring raises
:class:`TokenBoundaryError` instead of silently scoring other tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from tslens.engine.batching import batched
from tslens.engine.lens import as_lens
from tslens.engine.packing import forward_packed, pack_answers, read_packed
from tslens.engine.tokens import TokenBoundaryError as TokenBoundaryError
from tslens.engine.tokens import answer_token_ids, check_context


def prompt_token_ids(model, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text as tslens scores it: BOS (if the model uses one) + the text
    (:meth:`tslens.engine.lens.Lens.token_ids`)."""
    return as_lens(model).token_ids(texts)


def answer_logprobs(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    batch_size: int | None = None,
    labels: Sequence[str] | None = None,
    progress: bool = False,
    boundary: str = "raise",
) -> Float[Tensor, "prompt k"]:
    """log P(answer | prompt) for every answer of every prompt (float64, on the CPU).

    One forward pass per batch of prompts scores all their answers: the answers are packed
    behind their prompt with a block attention mask (:func:`pack_answers`), so the prompt is
    computed once and no KV cache is copied per answer. Prompts are batched by length.

    Args:
        model: a ``TransformerBridge`` (see :func:`tslens.sources.loader.load_model`).
        prompts: the texts to score, each ending right before its answers.
        answers: per prompt, its candidate answers (prompts may have different counts).
        batch_size: prompts per forward pass (default: :func:`default_batch_size`).
        labels: a name per answer position for error messages (e.g. task names).
        progress: show a progress bar over batches.
        boundary: ``"raise"`` on an answer that merges with its prompt's end, or ``"drop"``
            it (scored ``-inf``; used for beam-search candidates).

    Returns:
        ``[prompt, k]`` log-probabilities with ``k`` the most answers of any prompt; missing
        or dropped entries are ``-inf``.
    """
    return _score_packed(model, prompts, answers, batch_size, labels, progress, boundary)[0]


def answer_is_greedy(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    batch_size: int | None = None,
) -> Bool[Tensor, "prompt k"]:
    """Whether greedy decoding from each prompt produces each answer: every answer token is
    the most likely token at its position (exact match, no stop token needed). Same packed
    forward as :func:`answer_logprobs`."""
    return _score_packed(model, prompts, answers, batch_size)[1]


def answer_logprobs_and_greedy(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    batch_size: int | None = None,
) -> tuple[Float[Tensor, "prompt k"], Bool[Tensor, "prompt k"]]:
    """:func:`answer_logprobs` and :func:`answer_is_greedy` from the one packed forward they
    share, for a caller that needs both."""
    return _score_packed(model, prompts, answers, batch_size)


@torch.inference_mode()
def _score_packed(
    model, prompts, answers, batch_size=None, labels=None, progress=False, boundary="raise"
) -> tuple[Float[Tensor, "prompt k"], Bool[Tensor, "prompt k"]]:
    lens = as_lens(model)
    prompt_ids = lens.token_ids(prompts)
    answer_ids = answer_token_ids(lens, prompts, answers, prompt_ids, labels, boundary)
    check_context(lens, prompt_ids, answer_ids)
    k = max((len(a) for a in answers), default=0)
    out = torch.full((len(prompts), k), float("-inf"), dtype=torch.float64)
    greedy = torch.zeros(out.shape, dtype=torch.bool)
    order = sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i]))  # less padding

    def compute(chunk: list[int]) -> dict[str, Tensor]:
        if all(a is None for i in chunk for a in answer_ids[i]):  # nothing to score
            nothing = torch.zeros(len(chunk), k)
            return {"sums": nothing, "misses": nothing, "scored": nothing.bool()}
        packed = pack_answers([prompt_ids[i] for i in chunk], [answer_ids[i] for i in chunk],
                              lens.pad_id)  # fmt: skip
        logits = forward_packed(lens, packed)
        sums, misses, scored = read_packed(logits, packed.reads, len(chunk), k)
        return {"sums": sums, "misses": misses, "scored": scored}

    batches = batched(
        lens, order, compute, kind="score", desc="scoring", progress=progress,
        key=lambda chunk: [[prompt_ids[i] for i in chunk], [answer_ids[i] for i in chunk], k],
        batch_size=batch_size or lens.batch_size(max(len(p) for p in prompt_ids)),
    )  # fmt: skip
    for chunk, got in batches:
        rows, scored = torch.tensor(chunk), got["scored"].cpu()
        out[rows] = torch.where(scored, got["sums"].cpu(), out[rows])
        greedy[rows] = scored & (got["misses"].cpu() == 0)
    return out, greedy


@torch.inference_mode()
def answer_token_logprobs(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    batch_size: int | None = None,
) -> list[list[Float[Tensor, " _token"]]]:
    """Per-token log P(token_t | prompt, answer tokens before t) of every answer (the terms
    whose sum :func:`answer_logprobs` returns), from the same packed forward. Returns, per
    prompt and answer, a float64 CPU tensor with one entry per answer token."""
    lens = as_lens(model)
    prompt_ids = lens.token_ids(prompts)
    answer_ids = answer_token_ids(lens, prompts, answers, prompt_ids)
    check_context(lens, prompt_ids, answer_ids)
    out: list[list[Tensor]] = [[] for _ in prompts]

    def compute(chunk: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        packed = pack_answers([prompt_ids[i] for i in chunk], [answer_ids[i] for i in chunk],
                              lens.pad_id)  # fmt: skip
        logits = forward_packed(lens, packed)
        row, pos, tok, slot = packed.reads.to(logits.device).unbind(-1)
        lps = torch.log_softmax(logits[row, pos].float(), -1).gather(-1, tok[:, None])[:, 0]
        return lps.double().cpu(), row.cpu(), slot.cpu()

    for chunk, (lps, row, slot) in batched(
        lens, len(prompts), compute, batch_size=batch_size or lens.batch_size()
    ):
        for b, i in enumerate(chunk):  # reads are in token order within each (row, slot)
            out[i] = [lps[(row == b) & (slot == k)] for k in range(len(answer_ids[i]))]
    return out
