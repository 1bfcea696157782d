"""Mixture curves and single-task accuracy: the evaluation of a superposition model
(Xiong et al. 2024, Sec. 4, Fig. 5).

A *mixture curve* sweeps the share ``d`` of demonstrations that come from task 0 in a two-task
prompt (the rest from task 1) and records the mean probability of each task's answer and of
everything else. A model that superposes the two tasks puts probability on both answers at
intermediate ``d``; a calibrated one tracks ``P(task 0) ~= d``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from tslens.analyses.prompt.mixture import measure_mixture
from tslens.engine.scoring import answer_is_greedy
from tslens.io import record
from tslens.prompts import build_mixture_prompts
from tslens.tasks import Task, resolve_tasks

SHARES: tuple[float, ...] = tuple(i / 10 for i in range(11))


@dataclass
class MixtureCurve:
    """Mean answer probabilities of a task pair as the share of task-0 demonstrations varies."""

    model: str
    tasks: list[str]
    shares: list[float]
    probs: Float[Tensor, "share 2"]
    other: Float[Tensor, " share"]
    sem: Float[Tensor, "share 2"]
    n_prompts: int
    n_examples: int
    # Within-prompt superposition vs a per-prompt choice (means alone cannot tell them apart):
    # share of prompts giving both answers >= 0.1, and P(task 0) when the last demonstration
    # is task 0 minus when it is task 1 (1.0: the model just follows the last demonstration).
    both_share: Float[Tensor, " share"] | None = None
    last_demo_gap: Float[Tensor, " share"] | None = None

    def index_of(self, share: float) -> int:
        """Index of the measured share closest to ``share``."""
        return min(range(len(self.shares)), key=lambda j: abs(self.shares[j] - share))

    def at(self, share: float) -> tuple[float, float, float]:
        """``(P(task 0), P(task 1), other)`` at the share closest to ``share``."""
        i = self.index_of(share)
        return (*self.probs[i].tolist(), self.other[i].item())

    def to_json(self) -> dict[str, Any]:
        """The fields, ``probs`` and ``sem`` split by task (``p_task0``, ``sem_task1``, ...)."""
        by_task = {f"{name}_task{k}": values[:, k] for name, values in
                   (("p", self.probs), ("sem", self.sem)) for k in (0, 1)}  # fmt: skip
        return record(self, skip=("probs", "sem"), **by_task)


def mixture_curve(
    model,
    tasks: str | Sequence[str] | Sequence[Task],
    shares: Sequence[float] = SHARES,
    n_prompts: int = 500,
    n_examples: int = 20,
    seed: int = 0,
    template: str | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> MixtureCurve:
    """Measure P(task-0 answer), P(task-1 answer) and ``other`` at each share ``d`` of task 0.

    Args:
        model: a ``TransformerBridge``.
        tasks: exactly two tasks of one family (names, a comma list or :class:`Task` objects).
        shares: the shares ``d`` of demonstrations from task 0 (exact counts per prompt).
        n_prompts: prompts per share; n_examples: demonstrations per prompt.
        seed, template, batch_size: as in :func:`tslens.analyses.prompt.mixture.measure_mixture`.

    Returns:
        A :class:`MixtureCurve` (means over prompts and their standard errors).
    """
    pair = resolve_tasks(tasks)
    if len(pair) != 2:
        raise ValueError(f"a mixture curve needs exactly two tasks, got {len(pair)}")
    means, other, sems, both, gaps = [], [], [], [], []
    for d in shares:
        result = measure_mixture(
            model,
            pair,
            [d, 1.0 - d],
            n_prompts,
            n_examples,
            seed,
            template,
            batch_size=batch_size,
            solved=False,
            progress=progress,
        )
        means.append(result.probs.mean(0))
        sems.append(result.probs.std(0) / n_prompts**0.5)
        other.append(result.other.mean())
        both.append(torch.tensor(result.all_answers_share(0.1), dtype=torch.float64))
        gaps.append(result.last_demo_gap(task=0))
    return MixtureCurve(
        model=getattr(model, "tslens_name", type(model).__name__),
        tasks=[t.name for t in pair],
        shares=list(shares),
        probs=torch.stack(means),
        other=torch.stack(other),
        sem=torch.stack(sems),
        n_prompts=n_prompts,
        n_examples=n_examples,
        both_share=torch.stack(both),
        last_demo_gap=torch.tensor(gaps, dtype=torch.float64),
    )


def task_accuracy(
    model,
    tasks: str | Sequence[str] | Sequence[Task],
    n_prompts: int = 500,
    n_examples: int = 20,
    seed: int = 0,
    template: str | None = None,
    batch_size: int | None = None,
) -> dict[str, float]:
    """Single-task accuracy: the share of one-task prompts from which greedy decoding produces
    the task's answer, token for token (:func:`tslens.engine.scoring.answer_is_greedy`; no stop
    token is needed, so models never trained to end their answers are judged fairly). Returns
    ``{task name: accuracy}``."""
    hits = task_hits(model, tasks, n_prompts, n_examples, seed, template, batch_size)
    return {name: h.double().mean().item() for name, h in hits.items()}


def task_hits(
    model,
    tasks: str | Sequence[str] | Sequence[Task],
    n_prompts: int = 500,
    n_examples: int = 20,
    seed: int = 0,
    template: str | None = None,
    batch_size: int | None = None,
) -> dict[str, Bool[Tensor, " prompt"]]:
    """Per task, per single-task prompt: whether greedy decoding produces the task's answer
    (what :func:`task_accuracy` averages)."""
    hits = {}
    for task in resolve_tasks(tasks, same_family=False):
        prompts = build_mixture_prompts([task], [1.0], n_prompts, n_examples, seed, template)
        hits[task.name] = answer_is_greedy(
            model, [p.text for p in prompts], [p.answers for p in prompts], batch_size
        )[:, 0]
    return hits
