"""Named prompt configurations: the four task groups of Xiong et al. (2024), Fig. 2, with their
templates, demonstration counts and (for the ``a@b`` group) their generator's draws.

``get_preset("ops").prompts(n_prompts)`` builds the prompts; ``tslens probs --preset ops``
measures them. The presets are data (``tslens/data/presets.toml``); how each one's draws relate
to the authors' generator is written there.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tslens.errors import TslensError, close_names
from tslens.prompts import MixturePrompt, PromptSpec, get_template, parse_weights
from tslens.tasks import Task, resolve_tasks

PRESETS_FILE = Path(__file__).resolve().parent / "data" / "presets.toml"


@dataclass(frozen=True)
class Preset:
    """One named task configuration (see the module docstring)."""

    name: str
    source: str
    tasks: tuple[str, ...]
    template: str
    n_examples: int
    generator: str  # "xiong" (the authors' draws) or "tslens"
    seed: int

    def spec(self, n_prompts: int, n_examples: int | None = None, seed: int | None = None,
             weights: Sequence[float] | None = None) -> PromptSpec:  # fmt: skip
        """The prompt settings of this preset, ``n_examples`` and ``seed`` by default its own."""
        return PromptSpec(n_prompts, n_examples or self.n_examples,
                          self.seed if seed is None else seed, self.template, weights)  # fmt: skip

    def prompts(self, spec: PromptSpec) -> list[MixturePrompt]:
        """The mixture prompts of ``spec`` (from :meth:`spec`) drawn by this preset's generator."""
        tasks = resolve_tasks(list(self.tasks))
        if self.generator == "xiong":
            return xiong_prompts(tasks, spec)
        return spec.mixture(tasks)


@cache
def presets() -> dict[str, Preset]:
    """Every preset of ``tslens/data/presets.toml``, by name."""
    with PRESETS_FILE.open("rb") as handle:
        raw = tomllib.load(handle)
    return {name: Preset(name=name, source=entry["source"], tasks=tuple(entry["tasks"]),
                         template=entry["template"], n_examples=int(entry["n_examples"]),
                         generator=entry["generator"], seed=int(entry["seed"]))
            for name, entry in raw.items()}  # fmt: skip


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a :class:`TslensError` naming the close ones otherwise."""
    known = presets()
    if name not in known:
        raise TslensError(f"unknown preset {name!r}{close_names(name, known)}; "
                          f"presets: {', '.join(known)}")  # fmt: skip
    return known[name]


def xiong_prompts(tasks: Sequence[Task], spec: PromptSpec) -> list[MixturePrompt]:
    """Mixture prompts of two-operand tasks (``a@b`` inputs) drawn as the authors' generator
    draws them: ``random.Random(spec.seed)`` called in their order (module docstring of
    ``tslens/data/presets.toml``). Demonstrations ``"{a}@{b}" + sep + answer``, joined by
    ``template.sep``; the query is ``"{a}@{b}" + sep``, the answers unpadded."""
    if any(t.family.name != "a@b" for t in tasks):
        raise TslensError("the xiong generator draws a@b operands; use it for a@b tasks only")
    template = get_template(spec.template, tasks)
    weights = parse_weights(spec.weights, len(tasks))
    n = spec.n_examples
    counts = [round(w * n) for w in weights]  # Python's round, as theirs
    rng = random.Random(spec.seed)
    prompts = []
    for _ in range(spec.n_prompts):
        order = [k for k, c in enumerate(counts) for _ in range(c)]
        order += [max(range(len(weights)), key=weights.__getitem__)] * (n - len(order))
        rng.shuffle(order)
        lines = []
        for k in order:
            x = "@".join(map(str, rng.sample(range(10, 100), k=2)))
            lines.append(template.demo.replace("{x}", x).replace("{y}", tasks[k].answer(x)))
        query, answers = _distinct_query(tasks, rng)
        query_text, prefix = template.query_and_answer_prefix(query)
        prompts.append(MixturePrompt(text=template.sep.join([*lines, query_text]), query=query,
                                     answers=tuple(prefix + a for a in answers),
                                     demo_tasks=tuple(order)))  # fmt: skip
    return prompts


def _distinct_query(tasks: Sequence[Task], rng: random.Random) -> tuple[str, tuple[str, ...]]:
    for _ in range(1000):  # their limit
        x = "@".join(map(str, rng.sample(range(10, 100), k=2)))
        answers = tuple(t.answer(x) for t in tasks)
        if len(set(answers)) == len(answers):
            return x, answers
    raise TslensError("no query with a distinct answer per task in 1000 draws")
