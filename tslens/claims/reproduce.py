"""Check a registry of claims on one model: the task pair is chosen by the registry's
pre-registered rule (:mod:`tslens.claims.pairs`) unless the caller names one; every
measurement the chosen claims read runs once (shared by all of them), on every prompt seed,
inside :func:`tslens.engine.resume.cached` so an interrupted ``tslens reproduce`` resumes
measurement by measurement (and, inside one, batch by batch); then each claim's verdict is
read off the statistics and their bootstrap intervals."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from tslens.claims.measure import KINDS, Setting, measure
from tslens.claims.pairs import check_pairs, null_pair
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
from tslens.prompts import PromptSpec, default_n_examples
from tslens.tasks import resolve_tasks

PAIR_PLACEHOLDERS = ("$pair", "$quad")


@dataclass
class Reproduction:
    """The verdicts, the statistics they rest on and how long each measurement took."""

    model: str
    quick: bool
    verdicts: list[dict[str, Any]]
    statistics: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    settings: dict[str, Any]
    pairs: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {v: sum(r["verdict"] == v for r in self.verdicts) for v in VERDICTS}

    def to_json(self) -> dict[str, Any]:
        """Everything but the bootstrap replicates (the verdicts carry their intervals)."""
        statistics = {name: {k: v for k, v in record.items() if k != "replicates"}
                      for name, record in self.statistics.items()}  # fmt: skip
        return {"model": self.model, "quick": self.quick, "size": self.settings["size"],
                "settings": self.settings, "pairs": self.pairs, "counts": self.counts(),
                "verdicts": self.verdicts, "statistics": statistics,
                "seconds": self.seconds}  # fmt: skip


def reproduce(
    model,
    quick: bool = False,
    only: list[str] | None = None,
    pair: list[str] | None = None,
    template: str | None = None,
    n_examples: int | None = None,
    seed: int = 0,
    registry: Registry | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    own_pair: list[str] | None = None,
) -> Reproduction:
    """Run the measurements the claims in ``only`` (default all) read, once each, and judge
    every claim (see the module docstring).

    Args:
        model: a Lens or bridge.
        quick: the registry's quick sizes (``prompts = [quick, full]``, one prompt seed; full
            runs split the prompts over three seeds).
        pair: the task pair ``$pair`` stands for; default: the first candidate that passes the
            registry's pair rule (``own_pair``, a model's training tasks, tried first).
        template, n_examples: the prompts' template (default each task family's) and
            demonstrations per prompt of the pair-based measurements (default 20 for the
            character tasks, else 30).
    """
    lens = as_lens(model)
    registry = registry or load_registry()
    claims = registry.select(only)
    needed = claims_needing(claims)
    uses_pair = any(registry.measurements[n].options.get("tasks") in PAIR_PLACEHOLDERS
                    for n in needed)  # fmt: skip
    pairs: list[dict[str, Any]] = []
    chosen_by = "the caller"
    if pair is None and uses_pair:
        pairs = _pair_rule(lens, registry, own_pair, template, n_examples, seed, quick,
                           batch_size)  # fmt: skip
        passing = [row["pair"] for row in pairs if row["passes"]]
        pair, chosen_by = (passing[0] if passing else None), "the pair rule"
    defaults = dict(registry.defaults)
    if pair is not None:
        defaults["pair"] = list(pair)
        n_examples = n_examples or default_n_examples(resolve_tasks(list(pair)))
        try:
            defaults["quad"] = [*pair, *null_pair(pair)]
        except TslensError as err:
            defaults["quad"] = str(err)
    n_examples = n_examples or 30
    setting = Setting(lens, defaults, template, n_examples, quick, seed, batch_size, progress)
    statistics, seconds, done = {}, {}, {}
    bar = tqdm(needed, desc="reproduce", unit="measurement", disable=not progress, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        m = registry.measurements[name]
        missing = _missing_tasks(m, defaults, pairs)
        if missing:
            statistics[name], seconds[name] = {"unavailable": missing}, 0.0
            continue
        key = _resolved(setting, m)
        if key in done:  # the same analysis under another name: shared, not rerun
            statistics[name], seconds[name] = {**statistics[done[key]], "same_as": done[key]}, 0.0
            continue
        start = time.perf_counter()
        statistics[name] = _measure(setting, m, key)
        seconds[name] = time.perf_counter() - start
        done[key] = name
    bar.close()
    return Reproduction(
        model=lens.name,
        quick=quick,
        verdicts=[{**verdict(claim, statistics), "size": setting.size} for claim in claims],
        statistics=statistics,
        seconds=seconds,
        settings={"pair": defaults.get("pair"), "pair_chosen_by": chosen_by,
                  "null_pair": (defaults.get("quad") or [None] * 4)[2:]
                  if isinstance(defaults.get("quad"), list) else None,
                  "template": template or "default", "n_examples": n_examples, "seed": seed,
                  "seeds": setting.seeds, "size": setting.size},  # fmt: skip
        pairs=pairs,
    )


def _pair_rule(lens, registry: Registry, own_pair, template, n_examples, seed, quick,
               batch_size) -> list[dict[str, Any]]:  # fmt: skip
    """The registry's pair rule on every candidate (cached for a resumed run)."""
    rule = registry.pairs
    candidates = ([list(own_pair)] if own_pair else []) + [
        list(c) for c in rule.get("candidates", []) if list(c) != list(own_pair or [])
    ]
    n = Measurement("pairs", "pairs", dict(rule)).size("prompts", quick) or 8

    def run() -> list[dict[str, Any]]:
        rows = []
        for pair in candidates:
            try:
                examples = n_examples or default_n_examples(resolve_tasks(pair))
            except TslensError as err:
                rows.append({"pair": pair, "passes": False, "why": str(err)})
                continue
            spec = PromptSpec(n, examples, seed, template)
            rows += check_pairs(lens, [pair], rule, spec, batch_size)
        return rows

    key = json.dumps([candidates, {k: v for k, v in rule.items() if k != "candidates"}, n,
                      template, n_examples, seed], sort_keys=True)  # fmt: skip
    return cached("claim-pairs", lens, key, run)


def _missing_tasks(m: Measurement, defaults: dict[str, Any], pairs: list[dict]) -> str | None:
    """Why a measurement on ``$pair`` / ``$quad`` cannot run (no pair passed the rule, no
    null pair in the family), else None."""
    placeholder = m.options.get("tasks")
    if placeholder not in PAIR_PLACEHOLDERS:
        return None
    value = defaults.get(placeholder[1:])
    if value is None:
        tried = "; ".join(f"{'/'.join(r['pair'])}: {r['why'].split('; ')[0]}" for r in pairs)
        return f"no candidate pair passes the pair rule ({tried})"
    return value if isinstance(value, str) else None


def _resolved(setting: Setting, measurement: Measurement) -> str:
    """What a measurement computes, placeholders resolved: equal keys, equal results."""
    options = {k: v for k, v in measurement.options.items() if k != "tasks"}
    what = [measurement.kind, setting.tasks(measurement), options]
    return json.dumps([*what, setting.template, setting.n_examples, setting.quick,
                       setting.seeds], sort_keys=True)  # fmt: skip


def _measure(setting: Setting, measurement: Measurement, key: str) -> dict[str, Any]:
    """One measurement's statistics, cached for a resumed run; a TslensError (the model
    cannot do these inputs) becomes ``{"unavailable": message}``."""
    if measurement.kind not in KINDS:
        raise TslensError(f"measurement {measurement.name}: unknown kind {measurement.kind!r}")

    def compute() -> dict[str, Any]:
        try:
            return measure(setting, measurement)
        except TslensError as err:
            return {"unavailable": str(err)}

    return cached("claim-measurement", setting.lens, key, compute)


def claims_needing(claims: list[Claim]) -> list[str]:
    """The measurements a list of claims reads, each once (what sharing saves)."""
    return sorted({name for claim in claims for name in claim.measurements()})


__all__ = ["Reproduction", "claims_needing", "reproduce"]
