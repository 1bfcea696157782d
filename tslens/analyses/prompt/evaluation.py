"""Evaluation of a superposition model: single-task accuracy on every task it was trained on,
and mixture curves of task pairs (:mod:`tslens.analyses.prompt.curves`), summarised by the figures
that say whether the model superposes:

- ``max_dev``: max over 0 < d < 1 of |P(task 0) - d| (calibration; 0 is perfect);
- ``at_half``: P(task 0), P(task 1) and ``other`` at d = 0.5 (both answers high = superposition);
- ``monotone``: P(task 0) never decreases as d grows;
- ``both_share_at_half``: share of d = 0.5 prompts that give both answers >= 0.1 (superposition
  within a prompt, not only on average);
- ``last_demo_gap_at_half``: P(task 0 | last demonstration is task 0) - P(task 0 | it is task 1)
  at d = 0.5; near 1 means the average hides a per-prompt choice made by the last demonstration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tslens.analyses.prompt.curves import SHARES, MixtureCurve, mixture_curve, task_accuracy
from tslens.io import record


@dataclass
class Evaluation:
    """Accuracy per task and one mixture curve per task pair, for one model."""

    model: str
    accuracy: dict[str, float]
    curves: list[MixtureCurve]
    settings: dict[str, Any]

    def curve_summary(self, curve: MixtureCurve) -> dict[str, Any]:
        inner = [i for i, d in enumerate(curve.shares) if 0 < d < 1]
        p0 = curve.probs[:, 0].tolist()
        p0_half, p1_half, other_half = curve.at(0.5)
        return {
            "max_dev": max(abs(p0[i] - curve.shares[i]) for i in inner) if inner else None,
            "at_half": {"p_task0": p0_half, "p_task1": p1_half, "other": other_half},
            "monotone": all(b >= a for a, b in zip(p0, p0[1:], strict=False)),
            "both_share_at_half": _at(curve, curve.both_share),
            "last_demo_gap_at_half": _at(curve, curve.last_demo_gap),
        }

    def to_json(self) -> dict[str, Any]:
        return record(
            self, skip=("curves", "settings"), **self.settings,
            min_accuracy=min(self.accuracy.values()) if self.accuracy else None,
            curves=[{**c.to_json(), **self.curve_summary(c)} for c in self.curves],
        )  # fmt: skip


def _at(curve: MixtureCurve, values) -> float | None:
    return None if values is None else values[curve.index_of(0.5)].item()


def evaluate_model(
    model,
    tasks: Sequence[str],
    pairs: Sequence[Sequence[str]],
    n_prompts: int = 500,
    n_examples: int = 20,
    seed: int = 0,
    template: str | None = None,
    shares: Sequence[float] = SHARES,
    batch_size: int | None = None,
) -> Evaluation:
    """Accuracy on each of ``tasks`` and a mixture curve for each pair in ``pairs``, all with
    ``n_prompts`` prompts (per task, per share) of ``n_examples`` demonstrations."""
    common = dict(n_prompts=n_prompts, n_examples=n_examples, seed=seed, template=template)
    return Evaluation(
        model=getattr(model, "tslens_name", type(model).__name__),
        accuracy=task_accuracy(model, tasks, batch_size=batch_size, **common) if tasks else {},
        curves=[
            mixture_curve(model, pair, shares, batch_size=batch_size, **common) for pair in pairs
        ],
        settings={**common, "template": template or "default"},
    )
