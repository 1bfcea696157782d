"""The measurements claims read. Each kind runs existing analyses on one prompt seed and
returns its per-prompt data (:class:`~tslens.claims.intervals.Sample`); :func:`measure` runs
it on every seed of the setting and turns the pooled data into statistics with bootstrap
intervals (:func:`~tslens.claims.intervals.summarize`). A measurement the model cannot do (a
task its tokenizer cannot write, a context too short) gives ``{"unavailable": reason}``,
which makes its claims "not testable here".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tslens.claims import head_measures, layer_measures, prompt_measures
from tslens.claims.intervals import Sample, summarize
from tslens.claims.registry import Measurement
from tslens.claims.setting import Setting

KINDS: dict[str, Callable[[Setting, Measurement, int], Sample]] = {
    "mixture": prompt_measures.mixture, "curve": prompt_measures.curve,
    "collapse": prompt_measures.collapse, "demos": prompt_measures.demos,
    "vectors": layer_measures.vectors, "geometry": layer_measures.geometry,
    "function_vectors": layer_measures.function_vectors, "heads": head_measures.heads,
}  # fmt: skip


def measure(setting: Setting, m: Measurement) -> dict[str, Any]:
    """One measurement on every prompt seed of ``setting``, summarized: values, intervals,
    replicates, per-seed values, prompt counts, reasons for NaN and the report's detail."""
    run = KINDS[m.kind]
    samples = [run(setting, m, seed) for seed in setting.seeds]
    return {**summarize(samples, setting.seed), "size": setting.size}


__all__ = ["KINDS", "Setting", "measure"]
