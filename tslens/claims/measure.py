"""The measurements claims read: each kind runs existing analyses once and returns plain
statistics (numbers a claim's statistic can name) and a small ``detail`` record the report
draws. A measurement the model cannot do (a task its tokenizer cannot write, a context too
short) returns ``{"unavailable": reason}``, which makes its claims "not testable here".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from scipy.stats import spearmanr
from torch import Tensor

from tslens.analyses.head.fv_vs_induction import fv_minus_induction, fv_vs_induction
from tslens.analyses.head.heads import attribute_heads
from tslens.analyses.head.types import type_heads
from tslens.analyses.layer.geometry import vector_geometry
from tslens.analyses.layer.sweeps import lambda_points, patch_sweep
from tslens.analyses.layer.task_vectors import task_vectors
from tslens.analyses.prompt.collapse import generation_collapse
from tslens.analyses.prompt.curves import mixture_curve, task_accuracy
from tslens.analyses.prompt.demonstrations import demonstration_effects
from tslens.analyses.prompt.mixture import complete_by
from tslens.analyses.prompt.solved import longest_answer_tokens
from tslens.claims.registry import Measurement
from tslens.engine.batching import status
from tslens.engine.scoring import answer_logprobs
from tslens.engine.search import beam_search
from tslens.presets import get_preset
from tslens.prompts import MixturePrompt, PromptSpec
from tslens.tasks import resolve_tasks

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Setting:
    """What a measurement needs besides its own options: the model, its task pair and
    template (``$pair``, ``$template``), the registry defaults, sizes and seed."""

    lens: Any
    defaults: dict[str, Any]
    template: str | None
    n_examples: int
    quick: bool
    seed: int = 0
    batch_size: int | None = None
    progress: bool = False

    def tasks(self, m: Measurement) -> list[str]:
        value = m.options.get("tasks", [])
        if isinstance(value, str) and value.startswith("$"):
            value = self.defaults[value[1:]]
        return list(value)

    def spec(self, m: Measurement) -> PromptSpec:
        return PromptSpec(m.size("prompts", self.quick) or 8, self.n_examples, self.seed,
                          self.template)  # fmt: skip


def mixture(s: Setting, m: Measurement) -> dict[str, Any]:
    """Equal-weight mixture prompts (a preset's, or ``$pair``'s): each task's exact P, the
    model's most likely complete answers by beam search (scored exactly), and single-task
    accuracy. Serves Fig. 2, Finding 1 and the rebuttal's (b) and (c)."""
    if "preset" in m.options:
        preset = get_preset(m.options["preset"])
        names, spec = list(preset.tasks), preset.spec(m.size("prompts", s.quick) or 8)
        prompts = preset.prompts(spec)
    else:
        names, spec = s.tasks(m), s.spec(m)
        prompts = spec.mixture(resolve_tasks(names))
    status(f"{m.name}: single-task accuracy")
    accuracy = task_accuracy(s.lens, names, spec.n_prompts, spec.n_examples, spec.seed,
                             spec.template, s.batch_size)  # fmt: skip
    texts, answers = [p.text for p in prompts], [list(p.answers) for p in prompts]
    probs = answer_logprobs(s.lens, texts, answers, s.batch_size, labels=names,
                            progress=s.progress).exp()  # fmt: skip
    found = _candidates(s, texts, answers)
    return {**_mixture_statistics(prompts, probs, found, names),
            "accuracy": accuracy, "min_accuracy": min(accuracy.values())}  # fmt: skip


def _candidates(s: Setting, texts: list[str], answers: list[list[str]]) -> list[dict[str, float]]:
    """Per prompt: every complete answer the beam found that is no task's answer, with its
    exact probability."""
    k = len(answers[0])
    mode = complete_by(s.lens, texts, answers, s.batch_size)
    longest = longest_answer_tokens(s.lens, answers)
    beams = beam_search(s.lens, texts, width=max(8, 2 * k),
                        max_new_tokens=longest if mode == "length" else max(8, longest + 2),
                        batch_size=s.batch_size, finish_at_max=mode == "length",
                        progress=s.progress)  # fmt: skip
    pairs = zip(beams, answers, strict=True)
    extra = [[c.text for c in row if c.text not in ans] for row, ans in pairs]
    if not any(extra):
        return [{} for _ in texts]
    p = answer_logprobs(s.lens, texts, extra, s.batch_size, boundary="drop").exp()
    return [{c: float(p[i, j]) for j, c in enumerate(row) if p[i, j] > 0}
            for i, row in enumerate(extra)]  # fmt: skip


def _mixture_statistics(
    prompts: Sequence[MixturePrompt],
    probs: Float[Tensor, "prompt k"],
    found: list[dict[str, float]],
    names: list[str],
) -> dict[str, Any]:
    """Per-prompt ranks of the task answers among all complete answers found, the best
    non-task answer, and how much of "other" is a task answer written another way."""
    k = len(names)
    top1, topk, nontask, ratio, variants = [], [], [], [], []
    for i, p in enumerate(prompts):
        others = sorted(found[i].values(), reverse=True)
        ranks = [sum(o > probs[i, j] for o in others) + int((probs[i] > probs[i, j]).sum())
                 for j in range(k)]  # fmt: skip
        top1.append([r < 1 for r in ranks])
        topk.append([r < k for r in ranks])
        best = others[0] if others else 0.0
        nontask.append(best)
        ratio.append(best / max(float(probs[i].mean()), 1e-12))
        written = {a.strip().casefold() for a in p.answers}
        same = [v for c, v in found[i].items() if c.strip().casefold() in written]
        other = max(1 - float(probs[i].sum()), 1e-12)
        variants.append(sum(same) / other)
    top1_t, topk_t = (
        torch.tensor(top1, dtype=torch.float64),
        torch.tensor(topk, dtype=torch.float64),
    )
    last = torch.tensor([p.demo_tasks[-1] for p in prompts])
    gaps = [float(probs[last == j, j].mean() - probs[last != j, j].mean())
            for j in range(k) if (last == j).any() and (last != j).any()]  # fmt: skip
    best_nontask = max(range(len(prompts)), key=lambda i: nontask[i])
    return {
        "tasks": names,
        "mean_p": probs.mean(0).tolist(),
        "other": float(1 - probs.sum(-1).mean()),
        "all_answers_share": float((probs >= 0.1).all(-1).double().mean()),
        "solved_fraction": float(topk_t.mean()),
        "top1_accuracy": top1_t.mean(0).tolist(),
        "topk_accuracy": topk_t.mean(0).tolist(),
        "topk_minus_top1": float((topk_t - top1_t).mean()),
        "top_nontask_p": float(np.mean(nontask)),
        "top_nontask_over_task": float(np.median(ratio)),
        "other_as_variants": float(np.mean(variants)),
        "last_demo_gap": float(np.mean(gaps)) if gaps else math.nan,
        "example_top_nontask": max(found[best_nontask], key=found[best_nontask].get, default=None),
        # rebuttal (b), prompt by prompt: the most likely complete answer that is no task's
        "top_nontask_by_prompt": [
            [max(f, key=f.get), max(f.values())] if f else [None, 0.0] for f in found
        ],
    }


def curve(s: Setting, m: Measurement) -> dict[str, Any]:
    """P of a task pair's answers as the share of task 0 goes 0 -> 1 (Finding 2, rebuttal a)."""
    spec = s.spec(m)
    got = mixture_curve(s.lens, s.tasks(m), SHARES, spec.n_prompts, spec.n_examples, spec.seed,
                        spec.template, s.batch_size, progress=s.progress)  # fmt: skip
    p0 = got.probs[:, 0].tolist()
    absent = (got.probs[0, 0] + got.probs[-1, 1]) / 2  # task 0 at share 0, task 1 at share 1
    present = got.probs[SHARES.index(0.5)].mean()
    return {
        "shares": list(SHARES), "p_task0": p0, "p_task1": got.probs[:, 1].tolist(),
        "max_deviation": max(abs(p0[i] - d) for i, d in enumerate(SHARES) if 0 < d < 1),
        "monotone": float(all(b >= a for a, b in zip(p0, p0[1:], strict=False))),
        "absent_p": float(absent), "present_p": float(present),
        "absent_over_present": float(absent / present) if present > 0 else math.nan,
    }  # fmt: skip


def vectors(s: Setting, m: Measurement) -> dict[str, Any]:
    """Pure task vectors patched into zero-shot queries at every layer, with the convex
    lambda sweep and real in-context mixtures (Finding 4, Hendel et al., Li et al.)."""
    spec, names = s.spec(m), s.tasks(m)
    tv = task_vectors(s.lens, names, spec.n_prompts, spec.n_examples, spec.seed, spec.template,
                      batch_size=s.batch_size, progress=s.progress)  # fmt: skip
    sweep = patch_sweep(s.lens, tv, names, lambda_points(LAMBDAS), n_prompts=spec.n_prompts,
                        seed=spec.seed + 1, template=spec.template,
                        icl_examples=spec.n_examples, batch_size=s.batch_size,
                        progress=s.progress)  # fmt: skip
    corners = [LAMBDAS.index(1.0), LAMBDAS.index(0.0)]  # all weight on task 0, on task 1
    best = sweep.best_layer()
    rows = [sweep.layers.index(best[n]) for n in names]
    patched = [float(sweep.probs[rows[k], corners[k], k]) for k in range(2)]
    icl = [float(sweep.icl[corners[k], k]) for k in range(2)]
    p0 = sweep.probs[rows[0], :, 0].tolist()  # task 0's answer along lambda at its best layer
    return {
        "tasks": names, "best_layer": best, "patched_p": patched, "icl_p": float(np.mean(icl)),
        "recovered": float(np.mean([p / i for p, i in zip(patched, icl, strict=True) if i > 0]
                                   or [math.nan])),
        "lambdas": list(LAMBDAS), "p_task0_along_lambda": p0,
        "lambda_monotone": float(all(b >= a for a, b in zip(p0, p0[1:], strict=False))),
    }  # fmt: skip


def geometry(s: Setting, m: Measurement) -> dict[str, Any]:
    """Pure and mixture centroids of three tasks: span residuals against random directions
    and distance vs probability (Finding 3, rebuttal d; correlational)."""
    spec = s.spec(m)
    got = vector_geometry(s.lens, s.tasks(m), spec.n_prompts, spec.n_examples, spec.seed,
                          spec.template, methods=("pca",), batch_size=s.batch_size,
                          progress=s.progress)  # fmt: skip
    ratio = (got.span_residual.mean(-1) / got.random_residual).double()
    rho = []
    for i in range(len(got.layers)):
        distance = got.centroid_distance[i].flatten().numpy()
        rho.append(spearmanr(distance, got.mixture_probs.flatten().numpy()).statistic)
    return {"layers": got.layers, "span_residual_ratio": float(ratio.mean()),
            "ratio_by_layer": ratio.tolist(), "distance_probability_rho": float(np.nanmean(rho)),
            "rho_by_layer": [None if math.isnan(r) else float(r) for r in rho]}  # fmt: skip


def collapse(s: Setting, m: Measurement) -> dict[str, Any]:
    """Greedy and sampled decoding of mixture prompts (Finding 5)."""
    spec = s.spec(m)
    got = generation_collapse(s.lens, s.tasks(m), None, spec.n_prompts, spec.n_examples,
                              spec.seed, spec.template, m.size("samples", s.quick) or 4,
                              batch_size=s.batch_size).summary()  # fmt: skip
    keep = ("continue_after_first", "conditional_after_first", "tasks_per_prompt_greedy",
            "tasks_per_prompt_sampled")  # fmt: skip
    return {key: got.get(key) for key in keep}


def function_vectors(s: Setting, m: Measurement) -> dict[str, Any]:
    """Function vectors of the top-AIE heads added to zero-shot queries (Todd et al.)."""
    spec, names = s.spec(m), s.tasks(m)
    got = attribute_heads(s.lens, resolve_tasks(names), ["aie"], spec.n_prompts,
                          spec.n_examples, spec.seed, spec.template,
                          batch_size=s.batch_size,
                          progress=s.progress).extras["function_vectors"]  # fmt: skip
    gains = [got[n]["best_prob"] - got[n]["zero_shot"][k] for k, n in enumerate(names)]
    return {"tasks": names, "gain": float(np.mean(gains)), "gain_by_task": gains,
            "best_layer": {n: got[n]["best_layer"] for n in names},
            "heads": {n: got[n]["heads"] for n in names}}  # fmt: skip


def demos(s: Setting, m: Measurement) -> dict[str, Any]:
    """Every demonstration deleted in turn and each task's all at once (Wang et al.)."""
    spec = s.spec(m)
    tasks = resolve_tasks(s.tasks(m))
    got = demonstration_effects(s.lens, tasks, spec.n_prompts, spec.n_examples, spec.seed,
                                spec.template, s.batch_size, s.progress)  # fmt: skip
    additivity = [a for a in got.additivity() if a is not None]
    return {
        "additivity": float(np.mean(additivity)) if additivity else math.nan,
        "additivity_by_task": got.additivity(),
        "nearest_share": got.nearest_share(),
    }


def heads(s: Setting, m: Measurement) -> dict[str, Any]:
    """Head typing and the ablation of the top FV heads against the top induction heads
    (Yin & Steinhardt): the accuracy drops at the largest n, their difference, and both
    drops of the all-answers share."""
    spec, tasks = s.spec(m), resolve_tasks(s.tasks(m))
    types = type_heads(s.lens, tasks, spec, batch_size=s.batch_size, progress=s.progress)
    got = fv_vs_induction(s.lens, tasks, types, spec, batch_size=s.batch_size,
                          progress=s.progress)  # fmt: skip
    if not got["conditions"]["fv"]:
        return {"unavailable": f"{types.fv.numel()} heads are too few for disjoint head sets"}
    n = max(got["conditions"]["fv"], key=int)
    drop = {name: got["conditions"][name][n] for name in ("fv", "induction", "random")}
    return {
        "n": int(n),
        "baseline_accuracy": float(np.mean(got["baseline"]["accuracy"])),
        "fv_drop": drop["fv"]["accuracy_drop"],
        "induction_drop": drop["induction"]["accuracy_drop"],
        "random_drop": drop["random"]["accuracy_drop"],
        "fv_minus_induction": fv_minus_induction(got),
        "fv_share_drop": drop["fv"]["share_drop"],
        "induction_share_drop": drop["induction"]["share_drop"],
        "fv_induction_spearman": types.fv_induction_spearman(),
        "top_fv": [list(h) for h in drop["fv"]["heads"]],
        "top_induction": [list(h) for h in drop["induction"]["heads"]],
    }


KINDS: dict[str, Callable[[Setting, Measurement], dict[str, Any]]] = {
    "mixture": mixture, "curve": curve, "vectors": vectors, "geometry": geometry,
    "collapse": collapse, "function_vectors": function_vectors, "demos": demos,
    "heads": heads,
}  # fmt: skip
