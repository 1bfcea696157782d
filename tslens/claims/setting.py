"""What every measurement needs besides its own options: the model, its task pair and
template (``$pair``, ``$template``), the registry defaults, sizes and the prompt seeds.

Sizes: ``prompts = [quick, full]`` in the registry is the number of prompts a measurement
rests on. A quick run draws them with one seed; a full run splits them over
:data:`FULL_SEEDS` seeds (``seed``, ``seed + 1``, ...), so the verdict's interval pools every
seed's prompts and the spread over seeds is reported beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tslens.claims.registry import Measurement
from tslens.engine.lens import Lens
from tslens.prompts import PromptSpec

FULL_SEEDS = 3


@dataclass(frozen=True)
class Setting:
    """The model and the settings a reproduction shares across measurements."""

    lens: Lens
    defaults: dict[str, Any]
    template: str | None
    n_examples: int
    quick: bool
    seed: int = 0
    batch_size: int | None = None
    progress: bool = False
    # Results several seeds' measurements share (the pooled single-task accuracy that gates a
    # beam search), computed once per run.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def seeds(self) -> list[int]:
        """The prompt seeds of every measurement (one quick, :data:`FULL_SEEDS` full)."""
        return [self.seed] if self.quick else [self.seed + i for i in range(FULL_SEEDS)]

    @property
    def size(self) -> str:
        return "quick" if self.quick else "full"

    def tasks(self, m: Measurement) -> list[str]:
        value = m.options.get("tasks", [])
        if isinstance(value, str) and value.startswith("$"):
            value = self.defaults[value[1:]]
        return list(value)

    def per_seed(self, m: Measurement, key: str = "prompts", default: int = 8) -> int:
        """``options[key]`` (the registry's total) split over the seeds, at least 2."""
        total = m.size(key, self.quick) or default
        return max(2, math.ceil(total / len(self.seeds)))

    def spec(self, m: Measurement, seed: int) -> PromptSpec:
        return PromptSpec(self.per_seed(m), self.n_examples, seed, self.template)
