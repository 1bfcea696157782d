"""Exact answer probabilities under final-position patches, for many patch variants at once.

A variant is ``(layer, vector)``: the residual (or another hook kind) of the prompt's final
token at ``layer`` is replaced by (or added to) the vector. Such a patch changes nothing before
the final token, so the keys/values of the prompt's prefix are the same for every variant.
:func:`patched_answer_logprobs` therefore runs each prefix once, repeats its KV cache for all
variants, and continues with one batched forward of ``[final token, packed answers]`` per
variant row (answers packed as in :func:`tslens.scoring.pack_answers`).
:func:`patched_answer_logprobs_naive` is the plain reference: one full forward with a hook per
prompt, variant and answer; the two agree to float32 precision (tested).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from tslens.hooks.patch import patching
from tslens.scoring import (
    answer_token_ids,
    default_batch_size,
    forward_prefix,
    left_pad,
    pack_answers,
    pad_token_id,
    prompt_token_ids,
    read_packed,
)


def _prepare(model, prompts, answers):
    prompt_ids = prompt_token_ids(model, prompts)
    if min(len(p) for p in prompt_ids) < 2:
        raise ValueError("a patched prompt needs at least two tokens (BOS counts)")
    return prompt_ids, answer_token_ids(model, prompts, answers, prompt_ids)


@torch.inference_mode()
def patched_answer_logprobs(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    layers: Int[Tensor, " variant"] | Int[Tensor, "variant m"],
    vectors: Float[Tensor, "variant d"] | Float[Tensor, "variant m d"],
    mode: str = "replace",
    kind: str = "resid_post",
    batch_size: int | None = None,
    progress: bool = False,
) -> Float[Tensor, "prompt variant k"]:
    """log P(answer | prompt, patch) for every prompt, variant and answer (float64, CPU).

    Args:
        prompts: texts ending right before their answers; the patch hits their final token.
        answers: per prompt, the same number K of candidate answers.
        layers, vectors: the variants; layer -1 means no patch (a clean reference row); a
            2-D ``layers[variant, j]`` with ``vectors[variant, j]`` patches several layers.
        mode, kind: as in :func:`tslens.hooks.patch.patching`.
        batch_size: variant rows per continuation forward (default: 16x the scoring default).
    """
    prompt_ids, answer_ids = _prepare(model, prompts, answers)
    layers = torch.as_tensor(layers)
    n_var, k = len(layers), len(answers[0])
    rows_per_forward = batch_size or 16 * default_batch_size(model)
    out = torch.empty(len(prompts), n_var, k, dtype=torch.float64)
    device, pad = model.cfg.device, pad_token_id(model)
    prompts_per_chunk = max(1, rows_per_forward // n_var)
    starts = range(0, len(prompts), prompts_per_chunk)
    for start in tqdm(starts, desc="patching", disable=not progress, leave=False):
        chunk = list(range(start, min(start + prompts_per_chunk, len(prompts))))
        prefix = left_pad([prompt_ids[i][:-1] for i in chunk], pad, device)
        _, cache = forward_prefix(model, prefix)
        variants_per_forward = max(1, rows_per_forward // len(chunk))
        for v0 in range(0, n_var, variants_per_forward):
            variants = torch.arange(v0, min(v0 + variants_per_forward, n_var))
            out[chunk, v0 : v0 + len(variants)] = _continue(
                model, cache, prefix, [prompt_ids[i][-1] for i in chunk],
                [answer_ids[i] for i in chunk], layers[variants], vectors[variants], mode, kind,
            )  # fmt: skip
    return out


def _continue(model, cache, prefix, last_tokens, answer_ids, layers, vectors, mode, kind):
    """Continue every prompt of the chunk with every given variant: rows are prompt-major."""
    n_p, n_v = len(last_tokens), len(layers)
    device = model.cfg.device
    rows = torch.arange(n_p, device=device).repeat_interleave(n_v)
    row_cache = _repeat_cache(cache, rows)  # a continuation appends to the cache it is given
    # The continuation is a one-token "prompt" (the final token) with the answers behind it.
    packed = pack_answers(
        [[last_tokens[p]] for p in range(n_p) for _ in range(n_v)],
        [answer_ids[p] for p in range(n_p) for _ in range(n_v)],
        pad_token_id(model),
    )
    width = prefix.ids.shape[1]
    see_prefix = torch.zeros(len(rows), 1, packed.ids.shape[1], width)
    see_prefix.masked_fill_(prefix.mask[rows].cpu()[:, None, None, :] == 0, torch.finfo().min)
    mask = torch.cat([see_prefix, packed.mask], dim=-1).to(device)
    positions = (packed.positions + prefix.lengths[rows].cpu()[:, None]).to(device)
    row_layers = layers.repeat(n_p, *[1] * (layers.ndim - 1))
    row_vectors = vectors.repeat(n_p, *[1] * (vectors.ndim - 1))
    with patching(model, row_layers, row_vectors, 0, mode, kind):
        logits = model(
            packed.ids.to(device),
            attention_mask=mask,
            position_ids=positions,
            past_key_values=row_cache,
        )
    sums, _, _ = read_packed(logits, packed.reads, len(rows), len(answer_ids[0]))
    return sums.view(n_p, n_v, -1).cpu()


def _repeat_cache(cache, rows):
    """A copy of ``cache`` with its batch rows taken in the order ``rows`` (repeats allowed)."""
    repeated = copy.deepcopy(cache)
    repeated.batch_select_indices(rows)
    return repeated


@torch.inference_mode()
def patched_answer_logprobs_naive(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    layers: Int[Tensor, " variant"] | Int[Tensor, "variant m"],
    vectors: Float[Tensor, "variant d"] | Float[Tensor, "variant m d"],
    mode: str = "replace",
    kind: str = "resid_post",
) -> Float[Tensor, "prompt variant k"]:
    """Reference for :func:`patched_answer_logprobs`: one plain forward of prompt+answer with
    one patch hook per prompt, variant and answer; no batching, no cache."""
    prompt_ids, answer_ids = _prepare(model, prompts, answers)
    layers = torch.as_tensor(layers)
    out = torch.empty(len(prompts), len(layers), len(answers[0]), dtype=torch.float64)
    for i, (p_ids, ans) in enumerate(zip(prompt_ids, answer_ids, strict=True)):
        last = len(p_ids) - 1
        for v in range(len(layers)):
            for k, a_ids in enumerate(ans):
                ids = torch.tensor([p_ids + a_ids], device=model.cfg.device)
                with patching(model, layers[v : v + 1], vectors[v : v + 1], last, mode, kind):
                    logits = model(ids)[0, last:-1].float()
                lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(a_ids)[:, None])
                out[i, v, k] = lp.double().sum()
    return out
