"""Head-level measurements: Yin & Steinhardt's ablation of the top function-vector heads
against the top induction heads. The heads are ranked once per run, on ``rank_prompts``
prompts of the run's first seed, and every seed's ablations are judged on prompts of another
seed (held out from the ranking). Ranking once, on a fixed number of prompts, keeps the head
sets the same across seeds and sizes: ranked per seed on a full run's few prompts per seed
(3, at 9 prompts over three seeds), Gemma-3-270M's top FV heads changed with the seed and the
verdict with them (docs/findings.md, "Registry changes", 2026-12-05)."""

from __future__ import annotations

import numpy as np

from tslens.analyses.head.fv_vs_induction import fv_vs_induction
from tslens.analyses.head.types import HeadTypes, type_heads
from tslens.claims.intervals import Data, Sample
from tslens.claims.registry import Measurement
from tslens.claims.setting import Setting
from tslens.errors import TslensError
from tslens.prompts import PromptSpec
from tslens.tasks import resolve_tasks

CONDITIONS = ("fv", "induction", "random")
HELD_OUT = 7919  # seed offset of the prompts the ablations are judged on
RANK_PROMPTS = 8  # prompts the heads are ranked on, where the registry does not say


def ranked_heads(s: Setting, m: Measurement) -> HeadTypes:
    """Every head's scores on ``rank_prompts`` mixture prompts of the run's first seed,
    computed once per run and shared by every seed's ablation."""
    key = ("head_types", m.name)
    if key not in s.memo:
        n = m.size("rank_prompts", s.quick) or RANK_PROMPTS
        spec = PromptSpec(n, s.n_examples, s.seed, s.template)
        s.memo[key] = type_heads(s.lens, resolve_tasks(s.tasks(m)), spec,
                                 batch_size=s.batch_size, progress=s.progress)  # fmt: skip
    return s.memo[key]


def heads(s: Setting, m: Measurement, seed: int) -> Sample:
    """ICL accuracy per single-task prompt with no head, the top-n FV heads, the top-n
    induction heads and n random heads mean-ablated (n the largest size measured), judged
    on this seed's held-out prompts with the heads ranked once (:func:`ranked_heads`)."""
    spec, tasks = s.spec(m, seed), resolve_tasks(s.tasks(m))
    types = ranked_heads(s, m)
    got = fv_vs_induction(s.lens, tasks, types, spec.but(seed=spec.seed + HELD_OUT),
                          batch_size=s.batch_size, progress=s.progress)  # fmt: skip
    if not got["conditions"]["fv"]:
        raise TslensError(f"{types.fv.numel()} heads are too few for disjoint head sets")
    n = max(got["conditions"]["fv"], key=int)
    data: Data = {}
    for j in range(len(got["tasks"])):
        arrays = {"base": np.array(got["baseline"]["hits"][j], dtype=float)}
        for name in CONDITIONS:
            arrays[name] = np.array(got["conditions"][name][n]["hits"][j], dtype=float)
        data[f"single{j}"] = arrays
    detail = {"n": int(n), "tasks": got["tasks"],
              "heads": {c: got["conditions"][c][n]["heads"] for c in CONDITIONS},
              "share_drop": {c: got["conditions"][c][n]["share_drop"] for c in CONDITIONS},
              "fv_induction_spearman": types.fv_induction_spearman(),
              "rank_prompts": m.size("rank_prompts", s.quick) or RANK_PROMPTS}  # fmt: skip
    return Sample(data, _head_statistics, detail=detail)


def _head_statistics(d: Data) -> dict[str, float]:
    base = np.mean([arrays["base"].mean() for arrays in d.values()])
    drop = {c: base - np.mean([arrays[c].mean() for arrays in d.values()]) for c in CONDITIONS}
    return {
        "baseline_accuracy": float(base),
        "fv_drop": float(drop["fv"]),
        "induction_drop": float(drop["induction"]),
        "random_drop": float(drop["random"]),
    }
