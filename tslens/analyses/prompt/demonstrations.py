"""Which demonstrations feed each answer of a mixture prompt (issue 17, prompt level).

For every mixture prompt and every task's answer, the answer's probability is measured on the
intact prompt, with each demonstration deleted, and with every demonstration of one task
deleted. Each prompt runs once and keeps its KV cache; every deleted prompt is then one row of
a batched continuation of that cache that sees the prompt's keys before the deletion and
recomputes only what follows it (:func:`deletion_logprobs`), at the positions it has without
the deleted tokens. ``demonstration_effects_naive`` (private, in ``tslens/_reference.py``) is
the plain reference (one forward per deleted prompt and answer); the two agree to float32
precision.

A demonstration is its line plus the separator after it, in tokens: token ``t`` belongs to
demonstration ``j`` when its first character lies in that span of the text (BOS and the query
belong to none). Deleting it removes exactly those tokens.

Distances count demonstrations back from the query: distance 1 is the last demonstration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from tslens.engine.batching import batched
from tslens.engine.continuation import run_prefix
from tslens.engine.lens import as_lens
from tslens.engine.rows import Row, score_rows
from tslens.engine.scoring import (
    answer_token_ids,
)
from tslens.prompts import MixturePrompt, PromptSpec, Template, get_template
from tslens.tasks import Task


def demonstration_tokens(
    model, prompts: Sequence[MixturePrompt], template: Template
) -> list[list[list[int]]]:
    """Per prompt, per demonstration, the indices of its tokens in
    :func:`tslens.engine.scoring.prompt_token_ids` (BOS included in the count)."""
    ids = as_lens(model).token_ids([p.text for p in prompts])
    encoded = model.tokenizer(
        [p.text for p in prompts], add_special_tokens=False, return_offsets_mapping=True
    )
    out = []
    for prompt, p_ids, offsets in zip(prompts, ids, encoded["offset_mapping"], strict=True):
        shift = len(p_ids) - len(offsets)  # the BOS token, if any
        lines = prompt.text.split(template.sep)
        # a demonstration may itself contain the separator (e.g. "Q: x\nA: y" with "\n"):
        # rebuild the demonstration spans from the template's lines per demonstration
        per_demo = template.demo.count(template.sep) + 1
        starts, position = [], 0
        for j in range(len(prompt.demo_tasks)):
            starts.append(position)
            line = template.sep.join(lines[j * per_demo : (j + 1) * per_demo])
            position += len(line) + len(template.sep)
        starts.append(position)  # where the query begins
        spans: list[list[int]] = [[] for _ in prompt.demo_tasks]
        for t, (first, _) in enumerate(offsets):
            j = next((j for j in range(len(spans)) if starts[j] <= first < starts[j + 1]), None)
            if j is not None:
                spans[j].append(t + shift)
        out.append(spans)
    return out


def demo_distances(n_demos: int) -> Int[Tensor, " demo"]:
    """Each demonstration's distance from the query: 1 for the last one."""
    return torch.arange(n_demos, 0, -1)


def nearest_demonstrations(
    demo_tasks: Int[Tensor, "prompt demo"], k: int
) -> tuple[Int[Tensor, " prompt"], Bool[Tensor, "prompt demo"]]:
    """For task ``k``: the distance from the query of each prompt's nearest task-k
    demonstration (``n_demos + 1`` where there is none), and which demonstration that is."""
    n_demos = demo_tasks.shape[1]
    distance = demo_distances(n_demos)
    nearest = torch.where(demo_tasks == k, distance, n_demos + 1).amin(1)
    return nearest, (demo_tasks == k) & (distance == nearest[:, None])


def deletion_sets(prompt: MixturePrompt, spans: list[list[int]], k: int) -> list[list[int]]:
    """Each demonstration's tokens, then each task's demonstrations' tokens together."""
    groups = [
        sorted(t for j, s in enumerate(spans) if prompt.demo_tasks[j] == i for t in s)
        for i in range(k)
    ]
    return [*spans, *groups]


@dataclass
class DemoEffects:
    """Answer probabilities of mixture prompts, intact and with demonstrations deleted.

    Attributes:
        tasks: task names (answer ``k`` is task ``k``'s answer to the query).
        prompts: the mixture prompts.
        spans: per prompt, per demonstration, its token indices.
        base: ``[prompt, k]`` P(answer k | intact prompt).
        without_demo: ``[prompt, demo, k]`` P(answer k) with demonstration ``demo`` deleted.
        without_task: ``[prompt, task, k]`` P(answer k) with every demonstration of ``task``
            deleted (equal to ``base`` where the prompt has none).
    """

    tasks: list[str]
    prompts: list[MixturePrompt]
    spans: list[list[list[int]]]
    base: Float[Tensor, "prompt k"]
    without_demo: Float[Tensor, "prompt demo k"]
    without_task: Float[Tensor, "prompt task k"]

    @property
    def demo_tasks(self) -> Tensor:
        """``[prompt, demo]`` the task index of every demonstration."""
        return torch.tensor([p.demo_tasks for p in self.prompts])

    def effects(self) -> Float[Tensor, "prompt demo k"]:
        """How much each demonstration supports each answer: P(intact) - P(without it)."""
        return self.base[:, None] - self.without_demo

    def group_effects(self) -> Float[Tensor, "prompt k"]:
        """How much task k's demonstrations together support answer k: P(intact) - P(without
        any of them)."""
        return self.base - self.without_task.diagonal(dim1=1, dim2=2)

    def by_task(self) -> Float[Tensor, "task k"]:
        """``[i, k]``: mean change in P(answer k) when every demonstration of task i is
        deleted (negative: task i's demonstrations were holding answer k up)."""
        return (self.without_task - self.base[:, None]).mean(0)

    def by_distance(self) -> dict[str, Any]:
        """Per task k and distance d from the query (1 = the last demonstration):
        ``nearest``: mean P(answer k) over prompts whose nearest task-k demonstration is at
        distance d; ``same`` / ``other``: mean effect on answer k of deleting one task-k /
        other-task demonstration at distance d; ``uniform``: the effect each task-k
        demonstration would have if the model averaged them evenly (the whole group's
        effect divided by the group's size); counts alongside."""
        n_demos = self.without_demo.shape[1]
        distance = demo_distances(n_demos)
        tasks, effects, groups = self.demo_tasks, self.effects(), self.group_effects()
        out: dict[str, Any] = {"distance": list(range(1, n_demos + 1)), "tasks": []}
        for k in range(len(self.tasks)):
            own = tasks == k  # [prompt, demo]
            nearest, _ = nearest_demonstrations(tasks, k)  # [prompt]
            group = groups[:, k]  # [prompt]
            keys = ("nearest", "n_nearest", "same", "n_same", "other", "uniform")
            entry: dict[str, list] = {key: [] for key in keys}
            for d in range(1, n_demos + 1):
                at = nearest == d
                entry["nearest"].append(_mean(self.base[at, k]))
                entry["n_nearest"].append(int(at.sum()))
                same = own & (distance == d)
                entry["same"].append(_mean(effects[..., k][same]))
                entry["n_same"].append(int(same.sum()))
                entry["other"].append(_mean(effects[..., k][~own & (distance == d)]))
                entry["uniform"].append(_mean((group / own.sum(1).clamp(min=1))[same.any(1)]))
            out["tasks"].append(entry)
        return out

    def last_demo_gap(self) -> list[float | None]:
        """Per task k: mean P(answer k) when the last demonstration is task k minus when it
        is another task (``None`` if either set is empty)."""
        last = self.demo_tasks[:, -1]
        gaps = []
        for k in range(len(self.tasks)):
            hit, miss = self.base[last == k, k], self.base[last != k, k]
            gaps.append(None if not len(hit) or not len(miss) else _mean(hit) - _mean(miss))
        return gaps

    def nearest_share(self) -> list[float | None]:
        """Per task k: of the summed effects of task k's single demonstrations on answer k,
        the share that its nearest one carries (1/n for a model that averages n
        demonstrations evenly, 1 for one that reads only the nearest)."""
        effects, tasks = self.effects(), self.demo_tasks
        out = []
        for k in range(len(self.tasks)):
            own = tasks == k
            _, nearest = nearest_demonstrations(tasks, k)  # [prompt, demo]
            total = (effects[..., k] * own).sum()
            out.append(None if total == 0 else float((effects[..., k] * nearest).sum() / total))
        return out

    def additivity(self) -> list[float | None]:
        """Per task k: the summed effects on answer k of deleting task k's demonstrations one
        at a time, over the effect of deleting them all at once (means over prompts). About 1:
        the demonstrations add up; well below 1: they are redundant, any one can go because
        the others still carry the task."""
        own = self.demo_tasks[..., None] == torch.arange(len(self.tasks))  # [prompt, demo, k]
        singles = (self.effects() * own).sum(1).mean(0)  # [k]
        group = self.group_effects().mean(0)
        return [None if g == 0 else float(a / g) for a, g in zip(singles, group, strict=True)]

    def per_prompt(self) -> list[dict[str, Any]]:
        """Per prompt: the query, answers, intact probabilities and each demonstration's
        task, position, distance and effect on each answer."""
        effects, n = self.effects(), self.without_demo.shape[1]
        return [
            {"query": p.query, "answers": list(p.answers), "p": self.base[i].tolist(),
             "demos": [{"task": int(p.demo_tasks[j]), "position": j, "distance": n - j,
                        "effect": effects[i, j].tolist()} for j in range(n)]}
            for i, p in enumerate(self.prompts)
        ]  # fmt: skip


def _mean(values: Tensor) -> float | None:
    return float(values.double().mean()) if len(values) else None


def build_demo_prompts(
    model, tasks: Sequence[Task], spec: PromptSpec
) -> tuple[list[MixturePrompt], Template, list[list[list[int]]]]:
    """The mixture prompts ``spec`` draws from ``tasks``, their template and demonstration
    spans (token positions of each demonstration, per prompt)."""
    prompts = spec.mixture(tasks)
    tmpl = get_template(spec.template, tasks)
    return prompts, tmpl, demonstration_tokens(model, prompts, tmpl)


@torch.inference_mode()
def demonstration_effects(
    model,
    tasks: Sequence[Task],
    n_prompts: int = 50,
    n_examples: int = 20,
    seed: int = 0,
    template: str | Template | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> DemoEffects:
    """Score each task's answer on equal-weight mixture prompts of ``tasks``: intact, with
    each demonstration deleted and with each task's demonstrations deleted (see the module
    docstring). Batches are cached under :func:`tslens.engine.resume.checkpointing`."""
    lens = as_lens(model)
    prompts, _, spans = build_demo_prompts(
        lens, tasks, PromptSpec(n_prompts, n_examples, seed, template)
    )
    k = len(tasks)
    prompt_ids = lens.token_ids([p.text for p in prompts])
    answer_ids = answer_token_ids(
        lens, [p.text for p in prompts], [p.answers for p in prompts], prompt_ids,
        [t.name for t in tasks],
    )  # fmt: skip
    deletions = [deletion_sets(p, s, k) for p, s in zip(prompts, spans, strict=True)]
    n_variants = 1 + n_examples + k
    out = torch.zeros(len(prompts), n_variants, k, dtype=torch.float64)

    def parts(rows: list[int]) -> list:
        return [[prompt_ids[i] for i in rows], [deletions[i] for i in rows],
                [answer_ids[i] for i in rows]]  # fmt: skip

    # prompts per call; their deleted versions are then grouped into forwards by length
    batches = batched(
        lens, len(prompts), lambda rows: {"logprobs": deletion_logprobs(lens, *parts(rows))},
        kind="demos", key=parts, desc="deleting demonstrations", progress=progress,
        batch_size=batch_size or lens.batch_size(max(len(p) for p in prompt_ids)),
    )  # fmt: skip
    for rows, got in batches:
        out[rows] = got["logprobs"].exp()
    return DemoEffects(
        tasks=[t.name for t in tasks],
        prompts=prompts,
        spans=spans,
        base=out[:, 0],
        without_demo=out[:, 1 : 1 + n_examples],
        without_task=out[:, 1 + n_examples :],
    )


@torch.inference_mode()
def deletion_logprobs(
    model,
    prompt_ids: Sequence[list[int]],
    deletions: Sequence[Sequence[Sequence[int]]],
    answer_ids: Sequence[Sequence[list[int]]],
) -> Float[Tensor, "prompt variant k"]:
    """log P of every answer after each prompt (variant 0) and after each of its deleted
    versions (variant ``v``: ``deletions[p][v - 1]``, sorted token indices to delete).

    The prompts run once (:func:`tslens.engine.continuation.run_prefix`). A deleted version that
    starts deleting at token ``c`` is the prompt's tokens ``< c - 1`` (read from the cache)
    followed by a row that recomputes token ``c - 1`` and every kept token after the deletion
    at their new positions, then its answers packed behind it (a
    :class:`tslens.engine.rows.Row`). Each row's cost is its own suffix, not the prompt.
    """
    n_variants = 1 + max(len(d) for d in deletions)
    k = max(len(a) for a in answer_ids)
    lens = as_lens(model)
    pad = lens.pad_id
    prefix = lens.left_pad(prompt_ids)
    _, cache = run_prefix(model, prefix)
    rows = []
    for p, (p_ids, deleted_sets) in enumerate(zip(prompt_ids, deletions, strict=True)):
        for deleted in [[], *deleted_sets]:
            cut = deleted[0] if deleted else len(p_ids)
            start = max(cut - 1, 0)  # recompute one kept token, so the row never starts empty
            rows.append(Row(p, start, delete_tokens(p_ids, deleted, start), answer_ids[p]))
    out = score_rows(model, cache, prefix, rows, k, pad)
    return out.view(len(prompt_ids), n_variants, k)


def delete_tokens(ids: Sequence[int], deleted: Sequence[int], start: int = 0) -> list[int]:
    """``ids[start:]`` without the token indices ``deleted``."""
    gone = set(deleted)
    return [t for i, t in enumerate(ids) if i >= start and i not in gone]


def demos_json(effects: DemoEffects, heads: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``demos.json`` content: ``tasks``, ``per_prompt``, ``by_task`` (``[i][k]``: mean
    change in P(answer k) when task i's demonstrations are deleted), ``by_distance``,
    ``last_demo_gap``, ``nearest_share``, ``additivity`` (see :class:`DemoEffects`), ``p``
    (mean P per task on the intact prompts) and ``heads``
    (:func:`tslens.analyses.head.demo_attention.head_summary`, if given)."""
    counts = (effects.demo_tasks[..., None] == torch.arange(len(effects.tasks))).sum(1)
    return {
        "tasks": effects.tasks,
        "n_prompts": len(effects.prompts),
        "n_examples": effects.without_demo.shape[1],
        "p": effects.base.mean(0).tolist(),
        "mean_count": counts.double().mean(0).tolist(),
        "by_task": effects.by_task().tolist(),
        "by_distance": effects.by_distance(),
        "last_demo_gap": effects.last_demo_gap(),
        "nearest_share": effects.nearest_share(),
        "additivity": effects.additivity(),
        "heads": heads,
        "per_prompt": effects.per_prompt(),
    }
