"""Do K tasks in superposition need K heads? Ablate (a) the single most important head,
(b) the top head of each task (K heads) and (c) K random heads (several draws, the control),
and read every task's answer probability and ``other`` after each, on K-task mixture prompts.

Head importance ("auto") is each head's ablation effect at the final position: the drop of
each task's answer probability when that head alone is ablated (same kind of ablation), all
heads measured as rows of one batch over the shared prefix (:func:`per_head_effects`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from tslens.analyses.head.heads import per_head_effects
from tslens.engine.ablation import (
    Head,
    HeadStatistics,
    ablated_answer_logprobs,
    check_ablation,
    head_statistics,
    resample_sources,
)
from tslens.engine.scoring import answer_logprobs
from tslens.prompts import build_mixture_prompts
from tslens.tasks import Task


def head_importance(
    model,
    texts,
    answers,
    kind: str,
    stats: HeadStatistics,
    seed: int = 0,
    batch_size=None,
    progress: bool = False,
) -> Float[Tensor, "k layer head"]:
    """Mean drop of each answer's probability when one head is ablated at the final
    position, for every head (positive = the head helps that answer)."""
    shape = (model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head)
    if kind == "zero":
        values = torch.zeros(shape)
    elif kind == "mean":
        values = stats.mean_final
    else:  # each prompt gets its resample source's activations
        values = stats.final[resample_sources(len(texts), seed)]
    delta, _ = per_head_effects(model, texts, answers, values, batch_size, progress)
    return -delta


def _outcome(model, texts, answers, heads, kind, scope, stats, seed, batch_size) -> dict:
    if heads:
        logprobs = ablated_answer_logprobs(
            model, texts, answers, heads, kind, scope, stats, seed, batch_size
        )
    else:
        logprobs = answer_logprobs(model, texts, answers, batch_size=batch_size)
    probs = logprobs.exp()
    return {
        "heads": [list(h) for h in heads],
        "probs": probs.mean(0).tolist(),
        "other": float(1 - probs.sum(-1).mean()),
    }


def top_heads_per_task(importance: Float[Tensor, "k layer head"]) -> list[Head]:
    """For each task in order, its most important head not already taken by an earlier
    task, so the K-head set has K distinct heads."""
    n_heads = importance.shape[2]
    chosen: list[Head] = []
    for scores in importance:
        for index in scores.flatten().argsort(descending=True).tolist():
            head = divmod(index, n_heads)
            if head not in chosen:
                chosen.append(head)
                break
    return chosen


@dataclass
class AblationStudy:
    tasks: list[str]
    result: dict

    def to_json(self) -> dict:
        return {"tasks": self.tasks, **self.result}


def ablation_study(
    model,
    tasks: Sequence[Task],
    kind: str = "mean",
    scope: str = "final",
    heads: Sequence[Head] | None = None,
    n_prompts: int = 50,
    n_examples: int = 20,
    seed: int = 0,
    template: str | None = None,
    n_random: int = 5,
    batch_size: int | None = None,
    progress: bool = False,
) -> AblationStudy:
    """The one-head vs K-head ablation on uniform K-task mixture prompts.

    With ``heads=None`` ("auto") the heads are ranked by :func:`head_importance`: one_head is
    the head whose ablation lowers the tasks' summed probability most, k_heads the top head
    of each task (:func:`top_heads_per_task`). Given ``heads``, k_heads is that set and
    one_head its first head. ``random`` holds ``n_random`` draws of as many distinct random
    heads as k_heads (seeded), and their mean. ``progress`` shows a bar over the stages (and
    one over the prompts while every head is ranked).
    """
    check_ablation(kind, scope)
    prompts = build_mixture_prompts(tasks, None, n_prompts, n_examples, seed, template)
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    if kind == "resample":
        resample_sources(len(texts))  # fails early, with its message, on one prompt
    stages = tqdm(total=5 + n_random - (heads is not None), desc=f"ablation K={len(tasks)}",
                  unit="stage", disable=not progress, leave=False)  # fmt: skip
    stats = head_statistics(model, texts, batch_size) if kind != "zero" else None
    stages.update()
    result: dict = {"kind": kind, "scope": scope, "n_prompts": n_prompts,
                    "n_examples": n_examples, "seed": seed}  # fmt: skip
    if heads is None:
        importance = head_importance(model, texts, answers, kind, stats, seed, batch_size,
                                     progress)  # fmt: skip
        stages.update()
        total = importance.sum(0).flatten()
        one = [divmod(int(total.argmax()), model.cfg.n_heads)]
        k_set = top_heads_per_task(importance)
        n_heads = model.cfg.n_heads
        tops = [divmod(int(i), n_heads) for i in importance.flatten(1).argmax(-1)]
        result["importance"] = importance.tolist()
        result["top_head_of_task"] = [list(h) for h in tops]
        result["shared_top_head"] = len(set(tops)) < len(tops)  # one head tops several tasks
        result["heads_from"] = "auto: final-position single-head ablation effect"
    else:
        heads = [tuple(h) for h in heads]
        one, k_set = heads[:1], heads
        result["heads_from"] = "given"

    def run(hs: Sequence[Head]) -> dict:
        outcome = _outcome(model, texts, answers, hs, kind, scope, stats, seed, batch_size)
        stages.update()
        return outcome

    result["baseline"] = run([])
    result["one_head"] = run(one)
    result["k_heads"] = run(k_set)
    rng = np.random.default_rng([seed, 11])
    n_total = model.cfg.n_layers * model.cfg.n_heads
    draws = []
    for _ in range(n_random):
        picks = rng.choice(n_total, size=min(len(k_set), n_total), replace=False)
        draws.append(run([divmod(int(i), model.cfg.n_heads) for i in picks]))
    result["random"] = {
        "draws": draws,
        "probs": np.mean([d["probs"] for d in draws], axis=0).tolist(),
        "other": float(np.mean([d["other"] for d in draws])),
    }
    stages.close()
    return AblationStudy([t.name for t in tasks], result)


def ablation_sweep(model, tasks: Sequence[Task], max_k: int = 4, **kwargs) -> list[AblationStudy]:
    """:func:`ablation_study` for the first K tasks, K = 1 .. min(max_k, len(tasks))."""
    sizes = range(1, min(max_k, len(tasks)) + 1)
    return [ablation_study(model, tasks[:k], **kwargs) for k in sizes]
