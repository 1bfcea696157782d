"""Yin & Steinhardt's ablation on our tasks: does in-context learning, and superposition, run
through function-vector heads or through induction heads?

For n in ``ns`` (1, 2, 4, 8), the top-n heads by FV score and the top-n by induction score
are mean-ablated (every position, each head's mean ``z`` over every token of the evaluation
prompts), and so are n random heads from neither top-``max(ns)`` list (the control). Heads in
both top-``max(ns)`` lists are excluded from both rankings, as Yin & Steinhardt exclude the
overlap (repeatedly, until the two top lists share no head), so the two ablations never remove
the same head. Each condition measures:

- ICL accuracy per task: the share of single-task prompts from which greedy decoding produces
  the task's answer (as :func:`tslens.analyses.prompt.curves.task_accuracy`), and mean P;
- superposition on K-task mixture prompts: P of each task's answer, ``other``, and the share of
  prompts whose every answer has P >= 0.1 (``all_answers_share``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from tslens.analyses.head.types import HeadTypes
from tslens.engine.ablation import Head, head_statistics
from tslens.engine.lens import as_lens
from tslens.engine.scoring import answer_logprobs, answer_logprobs_and_greedy
from tslens.hooks.ablate import ablating
from tslens.prompts import PromptSpec
from tslens.tasks import Task

NS = (1, 2, 4, 8)


def ranked_heads(
    scores: Float[Tensor, "layer head"], exclude: set[Head] | frozenset = frozenset()
) -> list[Head]:
    """Every head, best score first, without ``exclude``."""
    n_heads = scores.shape[1]
    order = [divmod(int(i), n_heads) for i in scores.flatten().argsort(descending=True)]
    return [h for h in order if h not in exclude]


def head_sets(
    fv: Float[Tensor, "layer head"],
    induction: Float[Tensor, "layer head"],
    ns: Sequence[int] = NS,
    seed: int = 0,
) -> dict[str, Any]:
    """The heads each condition ablates: ``{"overlap", "fv": {n: heads}, "induction": ...,
    "random": ...}``; the lists and n are capped at a third of the heads (outside the
    overlap), so that the three sets of one n are disjoint. The random heads come from neither
    top list."""
    n_total = fv.numel()
    top = min(max(ns), n_total // 3)  # a small model: the top lists must leave heads over
    overlap: set[Head] = set()
    while True:  # excluding the overlap moves new heads into both lists; exclude them too
        both = set(ranked_heads(fv, overlap)[:top]) & set(ranked_heads(induction, overlap)[:top])
        if not both:
            break
        overlap |= both
    by_fv, by_induction = ranked_heads(fv, overlap), ranked_heads(induction, overlap)
    sizes = sorted({min(n, top, (n_total - len(overlap)) // 3) for n in ns} - {0})
    # the control draws from the heads in neither top list
    rest = [h for h in by_fv if h not in set(by_fv[:top]) | set(by_induction[:top])]
    rng = np.random.default_rng([seed, 25])
    sets: dict[str, Any] = {"overlap": sorted(overlap), "fv": {}, "induction": {}, "random": {}}
    for n in sizes:
        sets["fv"][n] = by_fv[:n]
        sets["induction"][n] = by_induction[:n]
        picks = rng.choice(len(rest), size=min(n, len(rest)), replace=False)
        sets["random"][n] = [rest[int(i)] for i in sorted(picks)]
    return sets


def measure_condition(
    model,
    single: Sequence[tuple[Sequence[str], Sequence[Sequence[str]]]],
    mixture: tuple[Sequence[str], Sequence[Sequence[str]]],
    values: dict[Head, Float[Tensor, " d_head"]],
    batch_size: int | None = None,
) -> dict[str, Any]:
    """ICL accuracy and superposition with ``values`` ablating their heads everywhere (no
    ablation for an empty dict): ``accuracy`` / ``p_single`` per task, ``p`` per task,
    ``other`` and ``all_answers_share`` on the mixture prompts."""
    lens = as_lens(model)
    with ablating(lens, values) if values else nullcontext():
        accuracy, p_single, hits = [], [], []
        for texts, answers in single:
            logprobs, greedy = answer_logprobs_and_greedy(lens, texts, answers, batch_size)
            accuracy.append(greedy.double().mean())
            p_single.append(logprobs.exp().mean())
            hits.append(greedy[:, 0].tolist())
        probs = answer_logprobs(lens, *mixture, batch_size=batch_size).exp()  # [prompt, k]
    return {
        "accuracy": [float(a) for a in accuracy],
        "p_single": [float(p) for p in p_single],
        "p": probs.mean(0).tolist(),
        "other": float(1 - probs.sum(-1).mean()),
        "all_answers_share": float((probs.min(-1).values >= 0.1).double().mean()),
        "hits": hits,  # [task][prompt]: greedy decoding gives the answer (what accuracy means)
    }


def fv_vs_induction(
    model,
    tasks: Sequence[Task],
    types: HeadTypes,
    spec: PromptSpec,
    ns: Sequence[int] = NS,
    batch_size: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The ablation of the module docstring with heads ranked by ``types`` (FV score =
    ``types.fv``, induction score = ``types.induction``), on single-task and mixture prompts
    drawn by ``spec``. Returns the head sets, the baseline and ``conditions[set][n]``, each
    with the drop of mean accuracy and of ``all_answers_share`` from the baseline."""
    lens = as_lens(model)
    sets = head_sets(types.fv, types.induction, ns, spec.seed)
    single = []
    for task in tasks:
        prompts = spec.but(weights=[1.0]).mixture([task])
        single.append(([p.text for p in prompts], [p.answers for p in prompts]))
    prompts = spec.but(weights=None).mixture(tasks)
    mixture = ([p.text for p in prompts], [p.answers for p in prompts])
    every_text = [t for texts, _ in single for t in texts] + mixture[0]
    means = head_statistics(lens, every_text, batch_size).mean_all
    n_runs = 1 + sum(len(by_n) for name, by_n in sets.items() if name != "overlap")
    bar = tqdm(total=n_runs, desc="FV vs induction ablation", unit="condition",
               disable=not progress, leave=False)  # fmt: skip

    def run(heads: list[Head]) -> dict[str, Any]:
        out = measure_condition(lens, single, mixture, {h: means[h] for h in heads}, batch_size)
        bar.update()
        return out

    baseline = run([])
    conditions: dict[str, dict[str, Any]] = {}
    for name in ("fv", "induction", "random"):
        conditions[name] = {}
        for n, heads in sets[name].items():
            got = run(heads)
            got["heads"] = [list(h) for h in heads]
            got["accuracy_drop"] = float(np.mean(baseline["accuracy"]) - np.mean(got["accuracy"]))
            got["share_drop"] = baseline["all_answers_share"] - got["all_answers_share"]
            conditions[name][str(n)] = got
    bar.close()
    return {
        "tasks": [t.name for t in tasks],
        "ablation": "mean over every token of the evaluation prompts, at every position",
        "overlap": [list(h) for h in sets["overlap"]],
        "baseline": baseline,
        "conditions": conditions,
        "settings": spec.settings(),
    }


def fv_minus_induction(result: dict[str, Any], n: int | None = None) -> float:
    """The accuracy drop from ablating the top-n FV heads minus that from the top-n induction
    heads (the largest n measured by default): positive when FV heads matter more."""
    sizes = sorted(int(s) for s in result["conditions"]["fv"])
    key = str(n or sizes[-1])
    fv = result["conditions"]["fv"][key]["accuracy_drop"]
    return fv - result["conditions"]["induction"][key]["accuracy_drop"]
