"""Patch sweeps over layers and convex weights (Xiong et al. 2024, Sec. 6, Fig. 6-7).

Every variant patches a combination ``sum_k w_k v_k`` of the task vectors of one layer into the
final token of zero-shot query prompts and scores every task's answer exactly
(:func:`tslens.engine.patching.patched_answer_logprobs`, all variants batched over one prefix
per prompt). The pure-vector layer sweep is the special case of the simplex's corners.

For K = 2 the points are ``(lambda, 1 - lambda)``; for K >= 3 any points on the simplex, e.g.
:func:`simplex_path` from the centre to an edge's midpoint as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from tslens.analyses.layer.task_vectors import TaskVectors
from tslens.analyses.prompt.mixture import measure_mixture
from tslens.engine.patching import patched_answer_logprobs
from tslens.errors import TslensError
from tslens.hooks.names import check_layers
from tslens.hooks.patch import convex_combination
from tslens.io import record
from tslens.prompts import build_query_prompts
from tslens.tasks import resolve_tasks


def lambda_points(lambdas: Sequence[float]) -> Float[Tensor, "point 2"]:
    """``(lambda, 1 - lambda)`` for each lambda in [0, 1]."""
    lam = torch.tensor(list(lambdas), dtype=torch.float64)
    if ((lam < 0) | (lam > 1)).any():
        raise TslensError(f"lambda must lie in [0, 1], got {lam.tolist()}")
    return torch.stack([lam, 1 - lam], dim=-1)


def simplex_path(
    start: Sequence[float], end: Sequence[float], steps: int | Sequence[float] = 11
) -> Float[Tensor, "point k"]:
    """Points from ``start`` to ``end`` on the simplex, e.g. the paper's (1/3, 1/3, 1/3) ->
    (0, 1/2, 1/2): ``steps`` evenly spaced points, or one point per position t in [0, 1]."""
    a, b = torch.tensor(start, dtype=torch.float64), torch.tensor(end, dtype=torch.float64)
    if isinstance(steps, int):
        t = torch.linspace(0, 1, steps, dtype=torch.float64)
    else:
        t = torch.tensor(list(steps), dtype=torch.float64)
    return (1 - t[:, None]) * a + t[:, None] * b


@dataclass
class SweepResult:
    """Mean answer probabilities when a weighted task vector is patched at a layer."""

    tasks: list[str]
    layers: list[int]
    points: Float[Tensor, "point k"]
    probs: Float[Tensor, "layer point k"]
    baseline: Float[Tensor, " k"]  # unpatched zero-shot prompts
    # share of queries where the answer gets at least half the probability (so it is surely
    # the model's most likely answer): accuracy without a search over all completions
    accuracy: Float[Tensor, "layer point k"] | None = None
    icl: Float[Tensor, "point k"] | None = None  # real in-context mixtures at the same weights
    settings: dict[str, Any] = field(default_factory=dict)
    # the means above, prompt by prompt (for intervals over prompts; not written to JSON)
    per_prompt: Float[Tensor, "prompt layer point k"] | None = None
    icl_per_prompt: Float[Tensor, "icl_prompt point k"] | None = None

    @property
    def other(self) -> Float[Tensor, "layer point"]:
        return 1 - self.probs.sum(-1)

    def best_layer(self) -> dict[str, int]:
        """Per task, the layer whose patch gives its answer the most probability at the point
        that weights it most (its pure vector, for corner points)."""
        best = {}
        for k, task in enumerate(self.tasks):
            point = int(self.points[:, k].argmax())
            best[task] = self.layers[int(self.probs[:, point, k].argmax())]
        return best

    def corners(self) -> SweepResult | None:
        """The pure-vector layer sweep inside this sweep (the points that put all weight on
        one task, in task order), or None if some corner was not measured. The same numbers
        as a separate sweep with the default points on the same queries, without its cost."""
        rows = []
        for k in range(len(self.tasks)):
            hits = (self.points - torch.eye(len(self.tasks))[k].to(self.points)).abs().sum(-1)
            if not (hits < 1e-9).any():
                return None
            rows.append(int(hits.argmin()))
        return SweepResult(
            tasks=self.tasks, layers=self.layers, points=self.points[rows],
            probs=self.probs[:, rows], baseline=self.baseline,
            accuracy=None if self.accuracy is None else self.accuracy[:, rows],
            settings=self.settings,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The fields (settings spread out, ``icl`` only when measured), ``other``,
        ``best_layer`` and, for two tasks, ``lambdas`` (the weight of task 0)."""
        extra = {"other": self.other, "best_layer": self.best_layer(), **self.settings}
        if self.points.shape[1] == 2:
            extra["lambdas"] = self.points[:, 0]
        if self.icl is not None:
            extra["icl"] = self.icl
        return record(self, skip=("settings", "icl", "per_prompt", "icl_per_prompt"), **extra)


def patch_sweep(
    model,
    vectors: TaskVectors,
    tasks: Sequence[str] | None = None,
    points: Float[Tensor, "point k"] | None = None,
    layers: Sequence[int] | None = None,
    n_prompts: int = 50,
    seed: int = 1,
    mode: str = "replace",
    template: str | None = None,
    icl_examples: int | None = None,
    onward: bool = False,
    batch_size: int | None = None,
    progress: bool = False,
) -> SweepResult:
    """Patch ``points @ vectors[layer]`` at every layer into zero-shot query prompts.

    Args:
        vectors: task vectors (:func:`tslens.analyses.layer.task_vectors.task_vectors`).
        tasks: which of the vectors' tasks to combine (default: all), K >= 1.
        points: ``[point, K]`` weights on the simplex (default: the corners, i.e. each pure
            vector: the layer sweep).
        layers: default all.
        n_prompts, seed, template: the query prompts (:func:`build_query_prompts`); use a
            seed other than the vectors' so that queries are new.
        mode: ``replace`` (Hendel et al.) or ``add`` (Todd et al.).
        icl_examples: if set, also measure real in-context mixtures with this many
            demonstrations at each point's weights (the paper's comparison).
        onward: multi-layer patching: the variant of layer l patches l and every later layer,
            each with its own layer's combination (for models whose single-layer vectors are
            weak).
    """
    names = list(tasks or vectors.tasks)
    task_list = resolve_tasks(names)
    points = torch.eye(len(names), dtype=torch.float64) if points is None else points
    layers = check_layers(model, layers)
    chosen = vectors.select(names)
    combos = torch.stack(
        [convex_combination(chosen[:, layer], points) for layer in range(chosen.shape[1])]
    ).float()  # [model layer, point, d]
    n_layers, n_points, n_all = len(layers), len(points), chosen.shape[1]
    # Variant (layer l, point p) patches layers l..(onward ? last : l); row 0 is unpatched.
    slots = torch.full((1 + n_layers * n_points, n_all if onward else 1), -1)
    flat = torch.zeros(*slots.shape, combos.shape[-1])
    for i, layer in enumerate(layers):
        span = range(layer, n_all) if onward else [layer]
        for p in range(n_points):
            row = 1 + i * n_points + p
            slots[row, : len(span)] = torch.tensor(list(span))
            flat[row, : len(span)] = combos[list(span), p]
    prompts = build_query_prompts(task_list, n_prompts, seed, template)
    logps = patched_answer_logprobs(
        model,
        [p.text for p in prompts],
        [p.answers for p in prompts],
        slots,
        flat,
        mode=mode,
        kind=vectors.kind,
        batch_size=batch_size,
        progress=progress,
    )
    probs = logps.exp().mean(0)  # [variant, k]
    accuracy = (logps.exp() >= 0.5).double().mean(0)[1:].view(n_layers, n_points, -1)
    icl = icl_per_prompt = None
    if icl_examples:
        icl_per_prompt = torch.stack(
            [
                measure_mixture(
                    model, task_list, w.tolist(), n_prompts, icl_examples, seed, template,
                    batch_size=batch_size, solved=False,
                ).probs
                for w in tqdm(points, desc="in-context mixtures", unit="weighting",
                              disable=not progress, leave=False)  # fmt: skip
            ],
            dim=1,
        )  # fmt: skip
        icl = icl_per_prompt.mean(0)
    return SweepResult(
        tasks=names,
        layers=layers,
        points=points,
        probs=probs[1:].view(n_layers, n_points, -1),
        baseline=probs[0],
        accuracy=accuracy,
        icl=icl,
        per_prompt=logps.exp()[:, 1:].reshape(len(prompts), n_layers, n_points, -1),
        icl_per_prompt=icl_per_prompt,
        settings={
            "n_prompts": n_prompts,
            "seed": seed,
            "mode": mode,
            "kind": vectors.kind,
            "onward": onward,
        },
    )
