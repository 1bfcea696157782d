"""Attribution patching of every head at every demonstration, checked against exact patching.

A *variant* is ``(layer, head, demonstration j)``: that head's ``z`` at the tokens of
demonstration j is mean-ablated (replaced by the head's mean ``z`` over every token of the
prompts). Its effect on task k is the change of log P(task k's answer) (all answer tokens),
per prompt; a mixture prompt of N demonstrations has ``n_layers * n_heads * N`` variants.

- ``exact``: every variant scored exactly, one row per variant continuing the prompt's KV cache
  from the demonstration's first token (:class:`tslens.engine.rows.Row` with ``ablate``), so a
  variant costs the prompt's suffix from that demonstration on.
- ``atp`` (Nanda 2023; Kramár et al. 2024): the first-order estimate
  ``(mean - z) . dlogP/dz`` summed over the demonstration's tokens, every variant from one
  forward and one backward per task.
- ``ig``: integrated gradients along the path that moves every head at every demonstration
  token together from its clean ``z`` toward its mean (``z <- z + a (mean - z)``, ``steps``
  midpoints ``a`` in (0, 1)); each variant's estimate is ``(mean - z_clean)`` times the mean
  gradient on the path. Averaging gradients away from the clean point is what makes it less
  sensitive to saturated softmaxes than AtP's single gradient (the path of EAP-IG, Hanna et al.
  2024, applied to head outputs); it costs ``steps`` forwards and backwards.

:func:`agreement` compares an estimate with the exact effects: Spearman correlation over heads
(each head's effects summed over demonstrations) and over all variants, top-10 overlap, and the
error of the linear approximation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from tslens.analyses.head.types import spearman
from tslens.analyses.prompt.demonstrations import build_demo_prompts
from tslens.engine.ablation import head_statistics
from tslens.engine.batching import batched
from tslens.engine.continuation import run_prefix
from tslens.engine.lens import as_lens
from tslens.engine.packing import forward_packed, pack_answers
from tslens.engine.rows import Row, score_rows
from tslens.engine.tokens import answer_token_ids
from tslens.hooks.names import hook_name
from tslens.prompts import PromptSpec
from tslens.tasks import Task

METHODS = ("atp", "ig")


@torch.inference_mode()
def exact_position_effects(
    model,
    texts: Sequence[str],
    answers: Sequence[Sequence[str]],
    spans: Sequence[Sequence[Sequence[int]]],
    means: Float[Tensor, "layer head d_head"],
    batch_size: int | None = None,
    progress: bool = False,
) -> Float[Tensor, "prompt k layer head demo"]:
    """The exact change of log P(answer k) for every variant of every prompt (float64)."""
    lens = as_lens(model)
    prompt_ids = lens.token_ids(texts)
    answer_ids = answer_token_ids(lens, texts, answers, prompt_ids)
    n_layers, n_heads, n_demos, k = lens.n_layers, lens.n_heads, len(spans[0]), len(answers[0])
    variants = [(lay, h, j) for lay in range(n_layers) for h in range(n_heads)
                for j in range(n_demos)]  # fmt: skip

    def run(chunk: list[int]) -> dict[str, Tensor]:
        prefix = lens.left_pad([prompt_ids[p] for p in chunk])
        _, cache = run_prefix(lens, prefix)
        rows = []
        for b, p in enumerate(chunk):
            ids = prompt_ids[p]
            rows.append(Row(b, len(ids) - 1, ids[-1:], answer_ids[p]))  # the clean reference
            for lay, h, j in variants:
                start = spans[p][j][0]
                cols = [t - start for t in spans[p][j]]
                rows.append(
                    Row(b, start, ids[start:], answer_ids[p], (lay, h, cols, means[lay, h]))
                )
        got = score_rows(lens, cache, prefix, rows, k, lens.pad_id).view(len(chunk), -1, k)
        delta = got[:, 1:] - got[:, :1]  # [prompt, variant, k]
        return {"delta": delta.view(len(chunk), n_layers, n_heads, n_demos, k)}

    batches = batched(
        lens, len(texts), run, kind="atp-exact", desc="exact patching", unit="variant",
        per_item=len(variants), progress=progress,
        key=lambda chunk: [[prompt_ids[p] for p in chunk], [answer_ids[p] for p in chunk],
                           [spans[p] for p in chunk], means],
        batch_size=batch_size or 1,
    )  # fmt: skip
    out = torch.cat([got["delta"] for _, got in batches])
    return out.permute(0, 4, 1, 2, 3).contiguous()


def _logprobs(logits: Tensor, reads: Tensor, n_rows: int, k: int) -> Float[Tensor, "row k"]:
    """Differentiable :func:`tslens.engine.packing.read_packed`: each answer's summed log P."""
    row, pos, tok, slot = reads.to(logits.device).unbind(-1)
    token_lps = logits[row, pos].float().log_softmax(-1).gather(-1, tok[:, None])[:, 0]
    return torch.zeros(n_rows, k, device=logits.device).index_put((row, slot), token_lps,
                                                                  accumulate=True)  # fmt: skip


def gradient_estimates(
    model,
    texts: Sequence[str],
    answers: Sequence[Sequence[str]],
    spans: Sequence[Sequence[Sequence[int]]],
    means: Float[Tensor, "layer head d_head"],
    method: str = "atp",
    steps: int = 8,
    batch_size: int | None = None,
    progress: bool = False,
) -> Float[Tensor, "prompt k layer head demo"]:
    """The ``atp`` or ``ig`` estimate (module docstring) of every variant of every prompt."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; use atp or ig")
    lens = as_lens(model)
    prompt_ids = lens.token_ids(texts)
    answer_ids = answer_token_ids(lens, texts, answers, prompt_ids)
    n_layers, n_demos, k = lens.n_layers, len(spans[0]), len(answers[0])
    alphas = [0.0] if method == "atp" else [(s + 0.5) / steps for s in range(steps)]
    with torch.inference_mode(False):
        means = means.to(lens.device).clone()  # a normal tensor (autograd may save it)

    def run(chunk: list[int]) -> dict[str, Tensor]:
        packed = pack_answers([prompt_ids[p] for p in chunk], [answer_ids[p] for p in chunk],
                              lens.pad_id)  # fmt: skip
        width = max(len(prompt_ids[p]) for p in chunk)
        in_demo = torch.zeros(len(chunk), packed.ids.shape[1], n_demos, device=lens.device)
        for b, p in enumerate(chunk):
            shift = width - len(prompt_ids[p])
            for j, span in enumerate(spans[p]):
                in_demo[b, [t + shift for t in span], j] = 1.0
        any_demo = in_demo.sum(-1)[..., None, None]  # [row, col, 1, 1]
        clean: list[Tensor] = [torch.zeros(0)] * n_layers
        grads = [[torch.zeros(0)] * n_layers for _ in range(k)]

        def forward(alpha: float, keep_graph: bool) -> tuple[Tensor | None, list[Tensor]]:
            seen: list[Tensor] = [torch.zeros(0)] * n_layers

            def at(layer: int):
                def hook(act: Tensor, hook) -> Tensor:
                    if alpha == 0.0:
                        clean[layer] = act.detach().float()
                    else:
                        act = act + alpha * any_demo.to(act.dtype) * (means[layer] - act)
                    seen[layer] = act
                    return act

                return hook

            hooks = [(hook_name("z", layer), at(layer)) for layer in range(n_layers)]
            with (
                torch.inference_mode(False),
                torch.set_grad_enabled(keep_graph),
                lens.hooks(fwd_hooks=hooks),
            ):
                logits = forward_packed(lens, packed)
                lps = _logprobs(logits, packed.reads, len(chunk), k) if keep_graph else None
            return lps, seen

        if method == "ig":
            forward(0.0, keep_graph=False)  # the clean z
        for alpha in alphas:
            lps, seen = forward(alpha, keep_graph=True)
            for task in range(k):
                with torch.inference_mode(False):
                    got = torch.autograd.grad(lps[:, task].sum(), seen,
                                              retain_graph=task < k - 1)  # fmt: skip
                for layer, g in enumerate(got):
                    g = g.float() / len(alphas)
                    grads[task][layer] = g if alpha == alphas[0] else grads[task][layer] + g
        out = torch.stack([
            torch.stack([
                einsum((means[layer] - clean[layer]) * grads[task][layer], in_demo,
                       "row col head d, row col demo -> row head demo")
                for layer in range(n_layers)
            ], dim=1)
            for task in range(k)
        ], dim=1)  # fmt: skip
        return {"estimate": out.double().cpu()}

    batches = batched(
        lens, len(texts), run, kind=f"atp-{method}", desc=method, progress=progress,
        key=lambda chunk: [[prompt_ids[p] for p in chunk], [answer_ids[p] for p in chunk],
                           [spans[p] for p in chunk], means, steps],
        batch_size=batch_size or lens.batch_size(max(map(len, prompt_ids))),
    )  # fmt: skip
    return torch.cat([got["estimate"] for _, got in batches])


def top_overlap(a: Tensor, b: Tensor, n: int = 10) -> float:
    """Share of the ``n`` largest-magnitude entries of ``a`` that are among ``b``'s."""
    n = min(n, a.numel())
    top_a = set(a.flatten().abs().topk(n).indices.tolist())
    return len(top_a & set(b.flatten().abs().topk(n).indices.tolist())) / n


def agreement(
    estimate: Float[Tensor, "k layer head demo"], exact: Float[Tensor, "k layer head demo"]
) -> list[dict[str, float]]:
    """Per task: Spearman correlation and top-10 overlap (by magnitude) over heads (effects
    summed over demonstrations) and over all variants, and the approximation's error
    (mean |estimate - exact| over mean |exact|)."""
    out = []
    for est, ex in zip(estimate, exact, strict=True):
        heads_est, heads_ex = est.sum(-1), ex.sum(-1)
        out.append({
            "spearman_heads": spearman(heads_est.flatten(), heads_ex.flatten()),
            "spearman_variants": spearman(est.flatten(), ex.flatten()),
            "top10_heads": top_overlap(heads_est, heads_ex),
            "top10_variants": top_overlap(est, ex),
            "relative_error": float((est - ex).abs().mean() / ex.abs().mean().clamp(min=1e-30)),
        })  # fmt: skip
    return out


def summary(effects: Float[Tensor, "k layer head demo"], n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` variants of largest |effect|, as ``{task, layer, head, demo, effect}``."""
    flat = effects.flatten()
    top = flat.abs().topk(min(n, flat.numel())).indices
    _, n_layers, n_heads, n_demos = effects.shape
    rows = []
    for index in top.tolist():
        task, rest = divmod(index, n_layers * n_heads * n_demos)
        layer, rest = divmod(rest, n_heads * n_demos)
        head, demo = divmod(rest, n_demos)
        rows.append({"task": task, "layer": layer, "head": head, "demo": demo,
                     "effect": float(flat[index])})  # fmt: skip
    return rows


def attribute_positions(
    model,
    tasks: Sequence[Task],
    spec: PromptSpec,
    methods: Sequence[str] = METHODS,
    exact: bool = True,
    steps: int = 8,
    batch_size: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Every variant's effect on ``spec``'s mixture prompts of ``tasks`` by each gradient
    method, and exactly (``exact``), with each method's :func:`agreement` with the exact
    effects and every computation's seconds. Effects are means over prompts,
    ``[k][layer][head][demo]``."""
    lens = as_lens(model)
    prompts, _, spans = build_demo_prompts(lens, tasks, spec)
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    means = head_statistics(lens, texts, batch_size).mean_all
    result: dict[str, Any] = {
        "tasks": [t.name for t in tasks], "methods": list(methods), "steps": steps,
        "estimates": {}, "seconds": {}, "top": {},
    }  # fmt: skip
    for method in methods:
        start = time.perf_counter()
        estimate = gradient_estimates(lens, texts, answers, spans, means, method, steps,
                                      batch_size, progress).mean(0)  # fmt: skip
        result["seconds"][method] = time.perf_counter() - start
        result["estimates"][method] = estimate.tolist()
        result["top"][method] = summary(estimate)
    if exact:
        start = time.perf_counter()
        effects = exact_position_effects(lens, texts, answers, spans, means, batch_size,
                                         progress).mean(0)  # fmt: skip
        result["seconds"]["exact"] = time.perf_counter() - start
        result["exact"] = effects.tolist()
        result["top"]["exact"] = summary(effects)
        result["agreement"] = {
            m: agreement(torch.tensor(result["estimates"][m]), effects) for m in methods
        }
    result["n_variants"] = lens.n_layers * lens.n_heads * spec.n_examples
    result["settings"] = spec.settings()
    return result
