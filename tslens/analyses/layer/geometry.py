"""Geometry of task vectors per layer (Xiong et al. 2024, Fig. 4 and Sec. 6).

Per-prompt final-token vectors of pure prompts (one task), pairwise 50/50 mixtures and, for
K >= 3, the uniform mixture are projected to 2-D with scikit-learn (LDA fitted on the pure
prompts' task labels, as in the paper; PCA; t-SNE). Two numbers per layer say how the mixture
vectors relate to the pure ones:

- centroid distances: how far each mixture's mean vector is from each pure task's mean, shown
  beside the mixture's answer probabilities (closer to A should mean more P(A));
- span residual: ``||m - P m|| / ||m||`` with ``m`` the 50/50 mixture's mean vector and ``P`` the
  projection onto span{v_A, v_B}; the control is the same ratio for random Gaussian vectors of
  the same norm (about 1 in high dimension), so a small residual is not an artefact of scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from tslens.analyses.layer.task_vectors import prompt_vectors
from tslens.analyses.prompt.mixture import measure_mixture
from tslens.hooks.names import check_layers
from tslens.io import record
from tslens.prompts import PromptSpec
from tslens.tasks import Task, resolve_tasks

METHODS = ("lda", "pca", "tsne")


@dataclass
class Geometry:
    """Projections and distances of pure and mixture task vectors, per layer."""

    tasks: list[str]
    layers: list[int]
    labels: list[str]  # per point: a task name, "A+B" or "uniform"
    projections: dict[str, Float[np.ndarray, "layer point 2"]]
    centroid_distance: Float[Tensor, "layer mixture k"]
    mixture_probs: Float[Tensor, "mixture k"]
    mixtures: list[str]
    span_residual: Float[Tensor, "layer pair"]
    random_residual: Float[Tensor, " layer"]
    pairs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return record(self)


def span_residual(vector: Float[Tensor, " d"], basis: Float[Tensor, "b d"]) -> float:
    """``||v - P v|| / ||v||`` with ``P`` the orthogonal projection onto the rows' span."""
    coef = torch.linalg.lstsq(basis.T.double(), vector.double()[:, None]).solution
    rest = vector.double() - (basis.T.double() @ coef)[:, 0]
    return (rest.norm() / vector.double().norm()).item()


def project(
    points: Float[np.ndarray, "point d"],
    pure_labels: np.ndarray,
    is_pure: np.ndarray,
    method: str,
    seed: int = 0,
) -> Float[np.ndarray, "point 2"]:
    """2-D coordinates of ``points``; LDA is fitted on the pure points only (then applied to
    all), PCA on all points, t-SNE embeds all points. A 1-D LDA (two tasks) gets y = 0."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.manifold import TSNE

    if method == "lda":
        n = min(2, len(set(pure_labels[is_pure])) - 1)
        lda = LinearDiscriminantAnalysis(n_components=n).fit(points[is_pure], pure_labels[is_pure])
        out = lda.transform(points)
    elif method == "pca":
        out = PCA(n_components=2, random_state=seed).fit_transform(points)
    elif method == "tsne":
        perplexity = min(30.0, (len(points) - 1) / 3)
        out = TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(points)
    else:
        raise ValueError(f"unknown projection {method!r}; use one of {', '.join(METHODS)}")
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def vector_geometry(
    model,
    tasks: str | Sequence[str] | Sequence[Task],
    n_prompts: int = 50,
    n_examples: int = 20,
    seed: int = 0,
    template: str | None = None,
    layers: Sequence[int] | None = None,
    methods: Sequence[str] = METHODS,
    batch_size: int | None = None,
    progress: bool = False,
) -> Geometry:
    """Collect per-prompt final-token vectors of pure and mixture prompts of ``tasks`` at
    ``layers`` (default all) and compute projections, centroid distances and span residuals."""
    task_list = resolve_tasks(tasks)
    k = len(task_list)
    layers = check_layers(model, layers)
    sets: list[tuple[str, list[float]]] = [
        (t.name, [1.0 if j == i else 0.0 for j in range(k)]) for i, t in enumerate(task_list)
    ]
    for a, b in combinations(range(k), 2):
        sets.append((f"{task_list[a].name}+{task_list[b].name}",
                     [0.5 if j in (a, b) else 0.0 for j in range(k)]))  # fmt: skip
    if k >= 3:
        sets.append(("uniform", [1 / k] * k))
    spec = PromptSpec(n_prompts, n_examples, seed, template)
    vectors, labels = [], []
    for label, weights in sets:
        # pure sets: exactly the prompts task_vectors() averages (same seed), so a resumable
        # run (tslens patch) reuses their captured activations instead of a second pass
        pure = [task_list[weights.index(1.0)]] if 1.0 in weights else None
        vectors.append(
            prompt_vectors(
                model, pure or task_list, spec.but(weights=[1.0] if pure else weights),
                batch_size=batch_size, progress=progress,
            )[:, layers]
        )  # fmt: skip
        labels += [label] * n_prompts
    points = torch.cat(vectors)  # [point, layer, d]
    labels_np = np.array(labels)
    is_pure = np.isin(labels_np, [t.name for t in task_list])
    projections = {
        m: np.stack(
            [
                project(points[:, i].double().numpy(), labels_np, is_pure, m, seed)
                for i in range(len(layers))
            ]
        )  # fmt: skip
        for m in methods
    }
    centroids = torch.stack([v.mean(0) for v in vectors], dim=1)  # [layer, set, d]
    mixtures = [label for label, _ in sets[k:]]
    distance = torch.cdist(centroids[:, k:].double(), centroids[:, :k].double())
    mixture_probs = torch.stack(
        [
            measure_mixture(
                model, task_list, w, n_prompts, n_examples, seed, template,
                batch_size=batch_size, solved=False,
            ).probs.mean(0)
            for _, w in sets[k:]
        ]
    )  # fmt: skip
    pair_ids = list(combinations(range(k), 2))
    residual = torch.tensor(
        [
            [span_residual(centroids[i, k + p], centroids[i, list(pair)])
             for p, pair in enumerate(pair_ids)]
            for i in range(len(layers))
        ]
    )  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    random = []
    for i in range(len(layers)):
        basis = centroids[i, list(pair_ids[0])]
        draws = torch.randn(20, basis.shape[1], generator=generator, dtype=torch.float64)
        random.append(np.mean([span_residual(r, basis) for r in draws]))
    return Geometry(
        tasks=[t.name for t in task_list],
        layers=layers,
        labels=labels,
        projections=projections,
        centroid_distance=distance,
        mixture_probs=mixture_probs,
        mixtures=mixtures,
        span_residual=residual,
        random_residual=torch.tensor(random),
        pairs=[f"{task_list[a].name}+{task_list[b].name}" for a, b in pair_ids],
    )
