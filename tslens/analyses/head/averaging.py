"""The causal test of an averaging head: ablate the head that spreads its attention evenly
over the demonstrations and measure again which demonstrations the answer depends on.

If the head is how the model averages its demonstrations, then without it the answer should
lean on fewer of them: the nearest demonstration's share of the deletion effects
(:meth:`tslens.analyses.prompt.demonstrations.DemoEffects.nearest_share`, 1/n for an even
average, 1 for reading only the nearest) rises, and additivity changes. The same is measured
with a control head ablated the same way (seeded, not the tested head), so a change that any
ablation causes is not read as the head's.

The ablation is a mean ablation at every position (the head's mean ``z`` over every token of
the prompts), a position-independent value, so the cached-continuation deletion engine stays
exact under it: every forward, prefix or continuation, sees the same ablated head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tslens.analyses.prompt.demonstrations import DemoEffects, demonstration_effects
from tslens.engine.ablation import Head, head_statistics
from tslens.engine.lens import as_lens
from tslens.hooks.ablate import ablating
from tslens.prompts import PromptSpec
from tslens.tasks import Task


def demo_summary(effects: DemoEffects) -> dict[str, Any]:
    """What the test compares: P per task, nearest share, additivity, last-demo gap."""
    return {
        "p": effects.base.mean(0).tolist(),
        "nearest_share": effects.nearest_share(),
        "additivity": effects.additivity(),
        "last_demo_gap": effects.last_demo_gap(),
    }


def control_head(model, head: Head, seed: int = 0) -> Head:
    """A head other than ``head``, drawn with ``seed``."""
    lens = as_lens(model)
    others = [(lay, h) for lay in range(lens.n_layers) for h in range(lens.n_heads)
              if (lay, h) != tuple(head)]  # fmt: skip
    return others[int(np.random.default_rng([seed, 26]).integers(len(others)))]


def averaging_test(
    model,
    tasks: Sequence[Task],
    heads: Sequence[Head],
    spec: PromptSpec,
    intact: DemoEffects | None = None,
    control: Head | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Demonstration effects on ``spec``'s mixture prompts of ``tasks``: intact (``intact``
    if already measured), with ``heads`` mean-ablated together, and with ``control`` (default
    :func:`control_head` of the first head) ablated. Returns each condition's
    :func:`demo_summary` and the change of the nearest share and additivity per task."""
    lens = as_lens(model)
    heads = [tuple(h) for h in heads]
    control = tuple(control) if control is not None else control_head(lens, heads[0], spec.seed)
    kwargs = {**spec.arguments(), "batch_size": batch_size, "progress": progress}
    if intact is None:
        intact = demonstration_effects(lens, tasks, **kwargs)
    means = head_statistics(lens, [p.text for p in intact.prompts], batch_size).mean_all
    conditions = {"intact": demo_summary(intact)}
    for name, ablated in (("ablated", heads), ("control", [control])):
        with ablating(lens, {h: means[h] for h in ablated}):
            conditions[name] = demo_summary(demonstration_effects(lens, tasks, **kwargs))
    change = {
        name: {key: [None if a is None or b is None else b - a
                     for a, b in zip(conditions["intact"][key], conditions[name][key],
                                     strict=True)]
               for key in ("nearest_share", "additivity")}
        for name in ("ablated", "control")
    }  # fmt: skip
    counts = (intact.demo_tasks[..., None] == torch.arange(len(tasks))).sum(1).double().mean(0)
    return {
        "tasks": [t.name for t in tasks],
        "heads": [list(h) for h in heads],
        "control": list(control),
        "ablation": "mean over every token of the prompts, at every position",
        "even_share": (1 / counts).tolist(),  # the nearest share of an even average
        "conditions": conditions,
        "change": change,
        "settings": spec.settings(),
    }
