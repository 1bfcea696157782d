"""Layer-level measurements (Findings 3-4, Hendel et al., Li et al., Todd et al., the
rebuttal's (d)). Every "best layer" is chosen on one half of the prompts (even indices) and
scored on the other (odd indices); the choice is redone on every bootstrap resample.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import permutation_test, rankdata

from tslens.analyses.head.heads import attribute_heads
from tslens.analyses.layer.sweeps import lambda_points, patch_sweep
from tslens.analyses.layer.task_vectors import prompt_vectors, task_vectors
from tslens.analyses.prompt.mixture import measure_mixture
from tslens.claims.intervals import Data, Sample
from tslens.claims.registry import Measurement
from tslens.claims.setting import Setting
from tslens.tasks import resolve_tasks

LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)  # weight of task 0's vector


def halves(values: np.ndarray) -> dict[str, np.ndarray]:
    """``{"select": even prompts, "score": odd prompts}``."""
    return {"select": values[0::2], "score": values[1::2]}


def vectors(s: Setting, m: Measurement, seed: int) -> Sample:
    """Pure task vectors patched into zero-shot queries at every layer, with the convex
    lambda sweep and real in-context prompts at the same weights (Finding 4, Hendel et al.,
    Li et al.)."""
    spec, names = s.spec(m, seed), s.tasks(m)
    tv = task_vectors(s.lens, names, spec.n_prompts, spec.n_examples, spec.seed, spec.template,
                      batch_size=s.batch_size, progress=s.progress)  # fmt: skip
    sweep = patch_sweep(s.lens, tv, names, lambda_points(LAMBDAS), n_prompts=spec.n_prompts,
                        seed=spec.seed + 1, template=spec.template,
                        icl_examples=spec.n_examples, batch_size=s.batch_size,
                        progress=s.progress)  # fmt: skip
    patched = sweep.per_prompt.double().numpy()  # [query, layer, lambda, 2]
    split = halves(patched)
    data: Data = {"select": {"p": split["select"]}, "score": {"p": split["score"]},
                  "icl": {"p": sweep.icl_per_prompt.double().numpy()}}  # fmt: skip
    detail = {"tasks": names, "layers": sweep.layers, "lambdas": list(LAMBDAS)}
    reasons = {"recovered": "no task has in-context P above 0"}
    return Sample(data, _vector_statistics, reasons, detail, _vector_detail(sweep.layers))


CORNERS = (LAMBDAS.index(1.0), LAMBDAS.index(0.0))  # all weight on task 0, on task 1


def _best_layers(select: np.ndarray) -> list[int]:
    """Per task, the layer index whose pure vector gives its answer the most P."""
    mean = select.mean(0)
    return [int(mean[:, CORNERS[k], k].argmax()) for k in range(2)]


def _vector_statistics(d: Data) -> dict[str, float]:
    best = _best_layers(d["select"]["p"])
    score, icl = d["score"]["p"].mean(0), d["icl"]["p"].mean(0)
    patched = [score[best[k], CORNERS[k], k] for k in range(2)]
    icl_p = [icl[CORNERS[k], k] for k in range(2)]
    ratios = [p / i for p, i in zip(patched, icl_p, strict=True) if i > 0]
    effect = [score[best[k], CORNERS[k], k] - score[best[k], CORNERS[1 - k], k] for k in range(2)]
    p0 = score[best[0], :, 0]
    return {
        "icl_p": float(np.mean(icl_p)),
        "patched_p": float(np.mean(patched)),
        "recovered": float(np.mean(ratios)) if ratios else math.nan,
        "interpolation_effect": float(np.mean(effect)),
        "monotone_steps": float(np.mean(np.diff(p0) > 0)),
    }


def _vector_detail(layers: list[int]):
    def describe(d: Data) -> dict[str, Any]:
        best = _best_layers(d["select"]["p"])
        score = d["score"]["p"].mean(0)
        return {"best_layer": [layers[b] for b in best],
                "p_task0_along_lambda": score[best[0], :, 0].tolist()}  # fmt: skip

    return describe


def geometry(s: Setting, m: Measurement, seed: int) -> Sample:
    """Final-token vectors of pure prompts of four tasks and of every 50/50 mixture of two,
    with each mixture's answer probabilities (Finding 3, rebuttal d; correlational)."""
    spec, names = s.spec(m, seed), s.tasks(m)
    tasks = resolve_tasks(names)
    k = len(tasks)
    if k != 4:
        raise ValueError(f"geometry needs 4 tasks (a pair and a null pair), got {k}")
    data: Data = {}
    for i in range(k):  # the same prompts task_vectors() averages (resumable runs share them)
        v = prompt_vectors(s.lens, [tasks[i]], spec.but(weights=[1.0]), batch_size=s.batch_size,
                           progress=s.progress).double().numpy()  # fmt: skip
        for half, part in halves(v).items():
            data[f"{half}:pure{i}"] = {"v": part}
    for a, b in combinations(range(k), 2):
        weights = [0.5 if j in (a, b) else 0.0 for j in range(k)]
        v = prompt_vectors(s.lens, tasks, spec.but(weights=weights), batch_size=s.batch_size,
                           progress=s.progress).double().numpy()  # fmt: skip
        p = measure_mixture(s.lens, tasks, weights, spec.n_prompts, spec.n_examples, spec.seed,
                            spec.template, batch_size=s.batch_size, solved=False).probs
        for half, part in halves(v).items():
            data[f"{half}:mix{a}{b}"] = {"v": part, "p": halves(p.double().numpy())[half]}
    detail = {"tasks": names, "null_pair": names[2:]}
    return Sample(data, _geometry_statistics, detail=detail, describe=_geometry_detail)


def _centroids(d: Data, half: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each set's centroid ``[layer, d]`` on one half, and the mean of all the centroids."""
    cents = {key.split(":")[1]: arrays["v"].mean(0) for key, arrays in d.items()
             if key.startswith(half + ":")}  # fmt: skip
    return cents, np.mean(list(cents.values()), axis=0)


def _line_distance(m: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per layer, the distance of ``m`` from the line through ``a`` and ``b`` (``[layer, d]``
    each): where convex combinations of the two lie. Translation-invariant, so a mean
    direction all the vectors share explains nothing."""
    u, w = b - a, m - a
    along = (w * u).sum(-1, keepdims=True) / np.maximum((u * u).sum(-1, keepdims=True), 1e-300)
    return np.linalg.norm(w - along * u, axis=-1)


def _span_ratio(d: Data, half: str) -> np.ndarray:
    """Per layer: the A+B mixture centroid's distance from the line through the A and B
    centroids over its distance from the line through two other tasks' centroids (C, D):
    1 = its own tasks' combinations explain it no better than unrelated tasks'."""
    c, _ = _centroids(d, half)
    own = _line_distance(c["mix01"], c["pure0"], c["pure1"])
    null = _line_distance(c["mix01"], c["pure2"], c["pure3"])
    return own / np.maximum(null, 1e-300)


def _distance_points(d: Data, half: str) -> tuple[np.ndarray, np.ndarray]:
    """Per (mixture, present task): the distance ``[layer, point]`` from the mixture's
    centroid to the task's centroid, and the task's mean P on the mixture ``[point]``."""
    cents, _ = _centroids(d, half)
    distance, probs = [], []
    for key in sorted(c for c in cents if c.startswith("mix")):
        p = d[f"{half}:{key}"]["p"].mean(0)
        for task in (int(key[3]), int(key[4])):
            distance.append(np.linalg.norm(cents[key] - cents[f"pure{task}"], axis=-1))
            probs.append(p[task])
    return np.stack(distance, -1), np.array(probs)


def _rho(distance: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Spearman rho per layer between distance ``[layer, point]`` and P ``[point]``."""
    a, b = rankdata(distance, axis=-1), rankdata(probs)
    a, b = a - a.mean(-1, keepdims=True), b - b.mean()
    denominator = np.linalg.norm(a, axis=-1) * np.linalg.norm(b)
    return np.where(denominator > 0, (a @ b) / np.where(denominator > 0, denominator, 1), np.nan)


def _geometry_statistics(d: Data) -> dict[str, float]:
    ratio_layer = int(np.nanargmin(_span_ratio(d, "select")))
    rho_select = _rho(*_distance_points(d, "select"))
    rho_score = _rho(*_distance_points(d, "score"))
    rho_layer = int(np.nanargmin(rho_select)) if np.isfinite(rho_select).any() else 0
    return {"span_residual_ratio": float(_span_ratio(d, "score")[ratio_layer]),
            "distance_probability_rho": float(rho_score[rho_layer])}  # fmt: skip


def _geometry_detail(d: Data) -> dict[str, Any]:
    """Per layer on the scoring half: the span ratio and rho with its one-sided permutation
    p-value (pairings permuted: is rho lower than chance?)."""
    distance, probs = _distance_points(d, "score")
    p_values = []
    for layer in range(distance.shape[0]):
        test = permutation_test((distance[layer], probs), lambda x, y: _rho(x[None], y)[0],
                                permutation_type="pairings", alternative="less",
                                n_resamples=999, rng=np.random.default_rng(36))  # fmt: skip
        p_values.append(float(test.pvalue))
    rho_select = _rho(*_distance_points(d, "select"))
    rho_layer = int(np.nanargmin(rho_select)) if np.isfinite(rho_select).any() else 0
    return {"ratio_by_layer": _span_ratio(d, "score").tolist(),
            "rho_by_layer": [None if math.isnan(r) else float(r) for r in _rho(distance, probs)],
            "rho_p_by_layer": p_values, "rho_layer": rho_layer,
            "ratio_layer": int(np.nanargmin(_span_ratio(d, "select")))}  # fmt: skip


def function_vectors(s: Setting, m: Measurement, seed: int) -> Sample:
    """Function vectors of the top-AIE heads added to zero-shot queries (Todd et al.); the
    heads come from the ICL prompts, the layer from half the queries, the gain from the
    other half."""
    spec, names = s.spec(m, seed), s.tasks(m)
    got = attribute_heads(s.lens, resolve_tasks(names), ["aie"], spec.n_prompts,
                          spec.n_examples, spec.seed, spec.template, batch_size=s.batch_size,
                          progress=s.progress).extras["function_vectors"]  # fmt: skip
    p = np.stack([np.array(got[n]["query_p"]) for n in names], 1)  # [query, task, 1 + layer]
    data: Data = {half: {"p": part} for half, part in halves(p).items()}
    detail = {"tasks": names, "heads": {n: got[n]["heads"] for n in names}}
    return Sample(data, _fv_statistics, detail=detail)


def _fv_statistics(d: Data) -> dict[str, float]:
    select, score = d["select"]["p"].mean(0), d["score"]["p"].mean(0)  # [task, 1 + layer]
    best = select[:, 1:].argmax(-1) + 1
    rows = np.arange(len(best))
    return {"gain": float((score[rows, best] - score[:, 0]).mean()),
            "zero_shot_p": float(score[:, 0].mean())}  # fmt: skip
