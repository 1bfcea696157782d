"""The plain reference implementations every fast path of tslens is tested against.

Private (not part of the public API, not in ``docs/api.md``): the test suite, ``tslens doctor``
and ``benchmarks/`` import them. Each is the obvious slow computation of what its fast
counterpart computes: one full forward per prompt, answer and variant, no batching, no cache,
no packing; the fast path must agree with it to float32 precision.

- :func:`answer_logprobs_naive` / :func:`plain_answer_logprob`: of
  :func:`tslens.engine.scoring.answer_logprobs`;
- :func:`patched_answer_logprobs_naive`: of :func:`tslens.engine.patching.patched_answer_logprobs`;
  :func:`patched_answer_logprobs_loop` is the per-variant loop existing tools run (exact too, the
  speed baseline);
- :func:`demonstration_effects_naive`: of
  :func:`tslens.analyses.prompt.demonstrations.demonstration_effects`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tslens.analyses.prompt.demonstrations import DemoEffects, delete_tokens, deletion_sets
from tslens.engine.lens import as_lens
from tslens.engine.packing import forward_packed, pack_answers, read_packed
from tslens.engine.patching import patch_token_ids
from tslens.engine.tokens import answer_token_ids
from tslens.hooks.patch import patching


@torch.inference_mode()
def demonstration_effects_naive(model, effects: DemoEffects) -> Float[Tensor, "prompt variant k"]:
    """Reference: every deleted prompt rebuilt from its token ids and scored with one plain
    forward per answer (:func:`tslens.engine.scoring.plain_answer_logprob`), no packing, no sharing.
    Returns ``[prompt, 1 + demos + tasks, k]`` probabilities in the layout of
    :func:`demonstration_effects` (intact, per demo, per task).
    """
    prompt_ids = as_lens(model).token_ids([p.text for p in effects.prompts])
    k = len(effects.tasks)
    rows = []
    for prompt, p_ids, spans in zip(effects.prompts, prompt_ids, effects.spans, strict=True):
        answer_ids = answer_token_ids(as_lens(model), [prompt.text], [prompt.answers], [p_ids])[0]
        variants = [[], *deletion_sets(prompt, spans, k)]
        logprobs = [
            [plain_answer_logprob(model, delete_tokens(p_ids, deleted), a) for a in answer_ids]
            for deleted in variants
        ]
        rows.append(torch.tensor(logprobs, dtype=torch.float64).exp())
    return torch.stack(rows)


@torch.inference_mode()
def patched_answer_logprobs_loop(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    layers: Int[Tensor, " variant"],
    vectors: Float[Tensor, "variant d"] | Float[Tensor, "prompt variant d"],
    mode: str = "replace",
    kind: str = "resid_post",
    batch_size: int | None = None,
    heads: Int[Tensor, " variant"] | None = None,
    per_prompt: bool = False,
) -> Float[Tensor, "prompt variant k"]:
    """What existing tools do (TransformerLens ``patching``, the function-vector code): one
    hooked forward of all prompts per variant, no shared prefix. Each forward packs the
    answers behind their prompts as the scorer does, so it is exact too; the baseline that
    :func:`patched_answer_logprobs` is measured against. Arguments as there."""
    lens = as_lens(model)
    prompt_ids, answer_ids = patch_token_ids(lens, prompts, answers)
    layers = torch.as_tensor(layers)
    if not per_prompt:
        vectors = vectors.expand(len(prompts), *vectors.shape)
    out = torch.empty(len(prompts), len(layers), len(answers[0]), dtype=torch.float64)
    batch_size = batch_size or as_lens(model).batch_size()
    pad = lens.pad_id
    for start in range(0, len(prompts), batch_size):
        rows = list(range(start, min(start + batch_size, len(prompts))))
        packed = pack_answers([prompt_ids[i] for i in rows], [answer_ids[i] for i in rows], pad)
        final = max(len(prompt_ids[i]) for i in rows) - 1  # every prompt ends at this column
        for v in range(len(layers)):
            head = None if heads is None else torch.as_tensor(heads)[v].expand(len(rows))
            with patching(
                model, layers[v].expand(len(rows)), vectors[rows, v], final, mode, kind, head
            ):
                logits = forward_packed(model, packed)
            out[rows, v] = read_packed(logits, packed.reads, len(rows), out.shape[2], False)[
                0
            ].cpu()
    return out


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
    lens = as_lens(model)
    prompt_ids, answer_ids = patch_token_ids(lens, prompts, answers)
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


@torch.inference_mode()
def answer_logprobs_naive(
    model, prompts: Sequence[str], answers: Sequence[Sequence[str]], boundary: str = "raise"
) -> Float[Tensor, "prompt k"]:
    """Reference implementation: one plain forward of prompt+answer per answer, no batching,
    no cache. Same arguments and output layout as :func:`answer_logprobs`."""
    lens = as_lens(model)
    prompt_ids = lens.token_ids(prompts)
    answer_ids = answer_token_ids(lens, prompts, answers, prompt_ids, boundary=boundary)
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
