"""Check a registry of claims on one model: every measurement the chosen claims read runs
once (shared by all of them), each inside :func:`tslens.engine.resume.cached` so an
interrupted ``tslens reproduce`` resumes measurement by measurement (and, inside one, batch
by batch); then each claim's verdict is read off the statistics."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from tslens.claims.measure import KINDS, Setting
from tslens.claims.registry import (
    VERDICTS,
    Claim,
    Measurement,
    Registry,
    load_registry,
    verdict,
)
from tslens.engine.lens import as_lens
from tslens.engine.resume import cached
from tslens.errors import TslensError


@dataclass
class Reproduction:
    """The verdicts, the statistics they rest on and how long each measurement took."""

    model: str
    quick: bool
    verdicts: list[dict[str, Any]]
    statistics: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    settings: dict[str, Any]

    def counts(self) -> dict[str, int]:
        return {v: sum(r["verdict"] == v for r in self.verdicts) for v in VERDICTS}


def reproduce(
    model,
    quick: bool = False,
    only: list[str] | None = None,
    pair: list[str] | None = None,
    template: str | None = None,
    n_examples: int = 20,
    seed: int = 0,
    registry: Registry | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> Reproduction:
    """Run the measurements the claims in ``only`` (default all) read, once each, and judge
    every claim (see the module docstring).

    Args:
        model: a Lens or bridge.
        quick: the registry's quick sizes (``prompts = [quick, full]``).
        pair: the task pair ``$pair`` stands for (default: the registry's).
        template, n_examples: the prompts' template (default each task family's) and
            demonstrations per prompt for the pair-based measurements.
    """
    lens = as_lens(model)
    registry = registry or load_registry()
    claims = registry.select(only)
    defaults = {**registry.defaults, **({"pair": pair} if pair else {})}
    setting = Setting(lens, defaults, template, n_examples, quick, seed, batch_size, progress)
    needed = claims_needing(claims)
    statistics, seconds, done = {}, {}, {}
    bar = tqdm(needed, desc="reproduce", unit="measurement", disable=not progress, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        key = _resolved(setting, registry.measurements[name])
        if key in done:  # the same analysis under another name: shared, not rerun
            statistics[name], seconds[name] = {**statistics[done[key]], "same_as": done[key]}, 0.0
            continue
        start = time.perf_counter()
        statistics[name] = _measure(setting, registry.measurements[name], key)
        seconds[name] = time.perf_counter() - start
        done[key] = name
    bar.close()
    return Reproduction(
        model=lens.name,
        quick=quick,
        verdicts=[verdict(claim, statistics) for claim in claims],
        statistics=statistics,
        seconds=seconds,
        settings={
            "pair": defaults["pair"],
            "template": template or "default",
            "n_examples": n_examples,
            "seed": seed,
        },  # fmt: skip
    )


def _resolved(setting: Setting, measurement: Measurement) -> str:
    """What a measurement computes, placeholders resolved: equal keys, equal results."""
    options = {k: v for k, v in measurement.options.items() if k != "tasks"}
    what = [measurement.kind, setting.tasks(measurement), options]
    return json.dumps([*what, setting.template, setting.n_examples, setting.quick, setting.seed],
                      sort_keys=True)  # fmt: skip


def _measure(setting: Setting, measurement: Measurement, key: str) -> dict[str, Any]:
    """One measurement's statistics, cached for a resumed run; a TslensError (the model
    cannot do these inputs) becomes ``{"unavailable": message}``."""
    run = KINDS.get(measurement.kind)
    if run is None:
        raise TslensError(f"measurement {measurement.name}: unknown kind {measurement.kind!r}")

    def compute() -> dict[str, Any]:
        try:
            return run(setting, measurement)
        except TslensError as err:
            return {"unavailable": str(err)}

    return cached("claim-measurement", setting.lens, key, compute)


def claims_needing(claims: list[Claim]) -> list[str]:
    """The measurements a list of claims reads, each once (what sharing saves)."""
    return sorted({name for claim in claims for name in claim.measurements()})


__all__ = ["Reproduction", "claims_needing", "reproduce"]
