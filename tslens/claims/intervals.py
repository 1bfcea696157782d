"""Uncertainty of the claims' statistics: a measurement keeps its per-prompt data (a
:class:`Sample`), and every statistic computed from it gets a bootstrap interval over prompts
(``scipy.stats.bootstrap``, percentile intervals) and its spread over prompt seeds.

A sample holds named *groups* (independent prompt sets: the mixture prompts, each task's
single-task prompts, the queries a layer is chosen on, the queries it is scored on), each a
dict of arrays whose first axis is the prompt. ``statistics(data)`` turns (resampled) data
into ``{name: value}``; the bootstrap resamples each group's prompts independently
(``paired=False`` over the groups' index arrays), so a selection step inside ``statistics``
(the best layer on the held-out half) is redone on every resample and its uncertainty is in
the interval.

The replicates are kept (``replicates[name]``) so that a claim's statistic written over two
measurements (``a.x - b.y``) gets its interval from the replicate-wise values: measurements
draw their own prompts, so their replicates are independent.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import bootstrap

Data = dict[str, dict[str, np.ndarray]]  # group -> array name -> [prompt, ...]
N_RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass
class Sample:
    """One measurement's per-prompt data and how its statistics are read off it.

    Attributes:
        data: group -> array name -> array with the prompt on axis 0 (same length within a
            group).
        statistics: data -> ``{statistic: value}`` (NaN where the data say nothing).
        reasons: statistic -> why it can be NaN on these inputs (the verdict's "why").
        detail: plain JSON facts for the report (not bootstrapped: tasks, example answers).
    """

    data: Data
    statistics: Callable[[Data], dict[str, float]]
    reasons: dict[str, str] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    # facts of the pooled data that are no statistic (a permutation p-value), for the report
    describe: Callable[[Data], dict[str, Any]] | None = None

    def sizes(self) -> dict[str, int]:
        return {g: len(next(iter(arrays.values()))) for g, arrays in self.data.items()}


def pooled(samples: list[Sample]) -> Sample:
    """The samples of several prompt seeds as one: each group's prompts concatenated."""
    first = samples[0]
    data = {g: {name: _stack([s.data[g][name] for s in samples])
                for name in arrays} for g, arrays in first.data.items()}  # fmt: skip
    reasons = {k: v for s in samples for k, v in s.reasons.items()}
    return Sample(data, first.statistics, reasons, first.detail, first.describe)


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenated along the prompt axis, NaN-padded where the other axes differ (a seed's
    longest answer has more tokens than another's)."""
    shape = np.max([a.shape[1:] for a in arrays], axis=0) if arrays[0].ndim > 1 else ()
    padded = []
    for a in arrays:
        if a.shape[1:] != tuple(shape):
            out = np.full((len(a), *shape), math.nan)
            out[(slice(None), *(slice(0, n) for n in a.shape[1:]))] = a
            a = out
        padded.append(a)
    return np.concatenate(padded)


def _take(data: Data, picks: Mapping[str, np.ndarray]) -> Data:
    return {g: {n: a[picks[g]] for n, a in arrays.items()} for g, arrays in data.items()}


def summarize(
    samples: list[Sample], seed: int = 0, n_resamples: int = N_RESAMPLES
) -> dict[str, Any]:
    """Point values (on the pooled prompts of every seed), 95% bootstrap intervals,
    replicates, per-seed values and prompt counts of a measurement's statistics."""
    sample = pooled(samples)
    values = sample.statistics(sample.data)
    names = sorted(values)
    groups = sorted(sample.data)
    sizes = sample.sizes()

    def statistic(*indices: np.ndarray) -> np.ndarray:
        got = sample.statistics(_take(sample.data, dict(zip(groups, indices, strict=True))))
        return np.array([got[n] for n in names], dtype=np.float64)

    replicates = np.full((len(names), 0), math.nan)
    if names and all(sizes[g] >= 2 for g in groups):
        with warnings.catch_warnings():  # NaN replicates and degenerate data are expected
            warnings.simplefilter("ignore")
            result = bootstrap(
                tuple(np.arange(sizes[g]) for g in groups), statistic, paired=False,
                vectorized=False, n_resamples=n_resamples, confidence_level=CONFIDENCE,
                method="percentile", rng=np.random.default_rng([seed, 36]),
            )  # fmt: skip
        replicates = np.asarray(result.bootstrap_distribution).reshape(len(names), -1)
    by_seed = {n: [] for n in names}
    for s in samples:
        got = s.statistics(s.data)
        for n in names:
            by_seed[n].append(_plain(got[n]))
    return {
        "values": {n: _plain(values[n]) for n in names},
        "intervals": {n: interval(replicates[i]) for i, n in enumerate(names)},
        "replicates": {n: [_plain(v) for v in replicates[i]] for i, n in enumerate(names)},
        "by_seed": by_seed,
        "n_prompts": sizes,
        "seeds": len(samples),
        "reasons": sample.reasons,
        "detail": {**sample.detail, **(sample.describe(sample.data) if sample.describe else {})},
    }


def interval(replicates: np.ndarray | list[float]) -> list[float] | None:
    """The central 95% of the finite replicates (None when fewer than half are finite: the
    statistic is undefined on too many resamples to bound)."""
    values = np.asarray(replicates, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if len(values) == 0 or len(finite) < len(values) / 2:
        return None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def _plain(value: Any) -> float | None:
    """A JSON number (None for NaN)."""
    value = float(value)
    return None if math.isnan(value) else value


def nan_mean(values: np.ndarray) -> float:
    """Mean of the finite entries, NaN when there are none (no warning)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


__all__ = ["Sample", "interval", "nan_mean", "pooled", "summarize"]
