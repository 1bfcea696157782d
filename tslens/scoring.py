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

from tslens.architecture import attention_masks, new_cache
from tslens.batching import default_batch_size, shrink_on_oom
from tslens.errors import TslensError
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
        past_key_values=new_cache(model),
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


def pad_token_id(model) -> int:
    """The id used to pad batches: the tokenizer's pad token, else EOS, else 0."""
    tok = model.tokenizer
    return next(i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None)


def _check_context(model, prompt_ids: Sequence[list[int]], answer_ids) -> None:
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


@dataclass
class PackedBatch:
    """Prompts with all their answers packed behind them in one row each.

    Row ``b`` holds the left-padded prompt (width ``prompt_width``), then, for every answer,
    the answer's tokens but the last (the inputs that predict tokens 2..n). The additive 4D
    ``mask`` lets each answer segment see its prompt and its own earlier tokens only, and its
    ``positions`` restart right after the prompt, so every answer is scored exactly as if it
    were the only continuation. ``reads`` index the kept logits: for every token of every
    answer, ``(row, kept_position, token, slot)``.
    """

    ids: Int[Tensor, "batch pos"]
    mask: Float[Tensor, "batch 1 pos pos"]
    positions: Int[Tensor, "batch pos"]
    n_keep: int
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


def forward_packed(model, packed: PackedBatch) -> Float[Tensor, "batch kept vocab"]:
    """One forward of a :class:`PackedBatch`, keeping the logits that :func:`read_packed`
    reads (active hooks apply)."""
    device = model.cfg.device
    positions = packed.positions.to(device)
    return model(
        packed.ids.to(device),
        attention_mask=attention_masks(model, packed.mask.to(device), positions, positions),
        position_ids=positions,
        logits_to_keep=packed.n_keep,
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


@torch.inference_mode()
def _score_packed(
    model, prompts, answers, batch_size=None, labels=None, progress=False, boundary="raise"
) -> tuple[Float[Tensor, "prompt k"], Bool[Tensor, "prompt k"]]:
    prompt_ids = prompt_token_ids(model, prompts)
    answer_ids = answer_token_ids(model, prompts, answers, prompt_ids, labels, boundary)
    _check_context(model, prompt_ids, answer_ids)
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
    _check_context(model, prompt_ids, answer_ids)
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
            ids = torch.tensor([p_ids + a_ids], device=model.cfg.device)
            logits = model(ids)[0, len(p_ids) - 1 : -1].float()
            lp = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(a_ids)[:, None])
            out[i, k] = lp.double().sum()
    return out
