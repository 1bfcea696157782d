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

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from tslens.batching import default_batch_size, shrink_on_oom
from tslens.errors import TslensError
from tslens.packing import forward_packed, pack_answers, read_packed
from tslens.resume import cached


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
    boundary: str = "raise",
) -> list[list[list[int] | None]]:
    """Token ids of every answer in context: ``tokens(prompt+answer)[len(tokens(prompt)):]``.

    Args:
        labels: a name per answer slot (e.g. the task names) used in error messages.
        boundary: what to do with an answer that is empty or merges with the end of its
            prompt: ``"raise"`` :class:`TokenBoundaryError`, or ``"drop"`` it (``None`` ids).
    """
    flat = [p + a for p, ans in zip(prompts, answers, strict=True) for a in ans]
    full_ids = iter(prompt_token_ids(model, flat) if flat else [])
    out = []
    for prompt, ans, p_ids in zip(prompts, answers, prompt_ids, strict=True):
        row = []
        for k, answer in enumerate(ans):
            ids = next(full_ids)
            if ids[: len(p_ids)] != p_ids or len(ids) == len(p_ids):
                if boundary == "drop":
                    row.append(None)
                    continue
                who = f"task {labels[k]}" if labels else f"answer {k}"
                raise TokenBoundaryError(
                    f"{who}: answer {answer!r} merges with the prompt's end {prompt[-12:]!r} into "
                    "other tokens; use a template whose answer starts a new token (e.g. arrow, or "
                    "a separator before the answer)"
                )
            row.append(ids[len(p_ids) :])
        out.append(row)
    return out


def pad_token_id(model) -> int:
    """The id used to pad batches: the tokenizer's pad token, else EOS, else 0."""
    tok = model.tokenizer
    return next(i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None)


def check_context(model, prompt_ids: Sequence[list[int]], answer_ids) -> None:
    n_ctx = model.cfg.n_ctx
    longest = max(
        len(p) + max((len(a) for a in ans if a is not None), default=0)
        for p, ans in zip(prompt_ids, answer_ids, strict=True)
    )
    if n_ctx and longest > n_ctx:
        raise TslensError(
            f"a prompt plus answer is {longest} tokens, longer than the model's context of "
            f"{n_ctx}; use fewer --n-examples"
        )


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
        model: a ``TransformerBridge`` (see :func:`tslens.models.load_model`).
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


@torch.inference_mode()
def _score_packed(
    model, prompts, answers, batch_size=None, labels=None, progress=False, boundary="raise"
) -> tuple[Float[Tensor, "prompt k"], Bool[Tensor, "prompt k"]]:
    prompt_ids = prompt_token_ids(model, prompts)
    answer_ids = answer_token_ids(model, prompts, answers, prompt_ids, labels, boundary)
    check_context(model, prompt_ids, answer_ids)
    out = torch.full(
        (len(prompts), max((len(a) for a in answers), default=0)),
        float("-inf"),
        dtype=torch.float64,
    )
    greedy = torch.zeros(out.shape, dtype=torch.bool)
    longest = max(len(p) for p in prompt_ids)
    batch_size = batch_size or default_batch_size(model, longest)
    order = sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i]))  # less padding
    pad = pad_token_id(model)
    bar = tqdm(total=len(order), desc="scoring", unit="prompt", disable=not progress, leave=False)

    def score(chunk: list[int]) -> None:
        if any(a is not None for i in chunk for a in answer_ids[i]):
            p_ids, a_ids = [prompt_ids[i] for i in chunk], [answer_ids[i] for i in chunk]

            def compute() -> dict[str, Tensor]:
                packed = pack_answers(p_ids, a_ids, pad)
                logits = forward_packed(model, packed)
                sums, misses, scored = read_packed(logits, packed.reads, len(chunk), out.shape[1])
                return {"sums": sums, "misses": misses, "scored": scored}

            got = cached("score", model, [p_ids, a_ids, out.shape[1]], compute)
            rows, scored = torch.tensor(chunk), got["scored"].cpu()
            out[rows] = torch.where(scored, got["sums"].cpu(), out[rows])
            greedy[rows] = scored & (got["misses"].cpu() == 0)
        bar.update(len(chunk))

    shrink_on_oom(score, order, batch_size)
    bar.close()
    return out, greedy


@torch.inference_mode()
def answer_token_logprobs(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    batch_size: int | None = None,
) -> list[list[Float[Tensor, " token"]]]:
    """Per-token log P(token_t | prompt, answer tokens before t) of every answer (the terms
    whose sum :func:`answer_logprobs` returns), from the same packed forward. Returns, per
    prompt and answer, a float64 CPU tensor with one entry per answer token."""
    prompt_ids = prompt_token_ids(model, prompts)
    answer_ids = answer_token_ids(model, prompts, answers, prompt_ids)
    check_context(model, prompt_ids, answer_ids)
    out: list[list[Tensor]] = [[] for _ in prompts]
    batch_size = batch_size or default_batch_size(model)
    for start in range(0, len(prompts), batch_size):
        chunk = range(start, min(start + batch_size, len(prompts)))
        packed = pack_answers(
            [prompt_ids[i] for i in chunk], [answer_ids[i] for i in chunk], pad_token_id(model)
        )
        logits = forward_packed(model, packed)
        row, pos, tok, slot = packed.reads.to(logits.device).unbind(-1)
        lps = torch.log_softmax(logits[row, pos].float(), -1).gather(-1, tok[:, None])[:, 0]
        lps, row, slot = lps.double().cpu(), row.cpu(), slot.cpu()
        for b, i in enumerate(chunk):  # reads are in token order within each (row, slot)
            out[i] = [lps[(row == b) & (slot == k)] for k in range(len(answer_ids[i]))]
    return out


@torch.inference_mode()
def answer_logprobs_naive(
    model, prompts: Sequence[str], answers: Sequence[Sequence[str]], boundary: str = "raise"
) -> Float[Tensor, "prompt k"]:
    """Reference implementation: one plain forward of prompt+answer per answer, no batching,
    no cache. Same arguments and output layout as :func:`answer_logprobs`."""
    prompt_ids = prompt_token_ids(model, prompts)
    answer_ids = answer_token_ids(model, prompts, answers, prompt_ids, boundary=boundary)
    out = torch.full(
        (len(prompts), max((len(a) for a in answers), default=0)),
        float("-inf"),
        dtype=torch.float64,
    )
    for i, (p_ids, ans) in enumerate(zip(prompt_ids, answer_ids, strict=True)):
        for k, a_ids in enumerate(ans):
            if a_ids is None:
                continue
            out[i, k] = plain_answer_logprob(model, p_ids, a_ids)
    return out


@torch.inference_mode()
def plain_answer_logprob(model, prompt_ids: list[int], answer_ids: list[int]) -> float:
    """log P(answer | prompt) from one plain forward of the token ids ``prompt + answer``:
    the reference every fast scorer is tested against."""
    ids = torch.tensor([prompt_ids + answer_ids], device=model.cfg.device)
    logits = model(ids)[0, len(prompt_ids) - 1 : -1].float()
    reads = torch.tensor(answer_ids, device=logits.device)[:, None]
    return float(torch.log_softmax(logits, dim=-1).gather(-1, reads).double().sum())
