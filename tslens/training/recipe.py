"""What determines a training run of ``tslens train``: the :class:`Recipe` (``recipe.toml``).

Kept apart from :mod:`tslens.training.train` and free of torch, so that the command line can build
its options from the recipe's fields in a moment (``tslens train --help``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from tslens.errors import TslensError
from tslens.io import read_toml


@dataclass
class Recipe:
    """Everything that determines a training run (saved as ``recipe.toml`` beside the model)."""

    tasks: list[str] = field(default_factory=lambda: [f"plus{b}" for b in range(10)])
    architecture: str = "llama"  # or "gpt2" (tslens.training.charlm.ARCHITECTURES)
    n_demos: int = 20
    n_layers: int = 3
    d_model: int = 96
    n_heads: int = 4
    n_ctx: int = 512
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    decay_fraction: float = 0.2
    weight_decay: float = 0.01
    seed: int = 0
    checkpoint_every: int = 250
    # Also train the newline that ends each answer, so that decoding knows where to stop
    # (off for the embedded models, whose one-token answers need no stop).
    separator_loss: bool = False
    # Issue 17's recipe changes for within-prompt superposition: "rotary" or "none" (NoPE,
    # llama only), and the training-sequence corruptions of tslens.training.synthetic.Corruption.
    positions: str = "rotary"
    label_noise: float = 0.0
    tail_noise: float = 0.0
    mix_tasks: bool = False
    # Start from a finished run's weights (a directory of tslens train) instead of random
    # ones: a curriculum, clean single-task training first (the optimizer starts afresh).
    init_from: str = ""
    # The final evaluation (tslens.analyses.prompt.evaluation): mixture-curve pairs, prompts per
    # point.
    eval_pairs: list[list[str]] = field(
        default_factory=lambda: [["plus2", "plus5"], ["ret2", "ret6"]]
    )
    eval_prompts: int = 500

    @classmethod
    def from_toml(cls, path: str | Path) -> Recipe:
        data = read_toml(path, "recipe", "see recipes/tslens-char-3l4h.toml for the format")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise TslensError(f"recipe {path}: unknown keys {', '.join(sorted(unknown))}")
        try:
            return cls(**data)
        except TypeError as err:
            raise TslensError(f"recipe {path}: {err}") from err

    def to_toml(self) -> str:
        def value(v: object) -> str:
            return json.dumps(v)  # JSON scalars and string lists are valid TOML

        return "".join(f"{k} = {value(v)}\n" for k, v in asdict(self).items())

    def task_groups(self) -> dict[str, list[int]]:
        """``{"plus": [b, ...], "ret": [i, ...]}`` for the recipe's tasks."""
        from tslens.training.synthetic import parse_task  # torch: only when a run is built

        groups: dict[str, list[int]] = {}
        for name in self.tasks:
            kind, param = parse_task(name)
            groups.setdefault(kind, []).append(param)
        return groups
