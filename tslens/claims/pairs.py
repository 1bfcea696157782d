"""Which task pair the pair-based claims are tested on, by a rule written down before any
measurement (``[pairs]`` in tslens/data/claims.toml), never by which pair shows the effect:

1. each task alone reaches ``min_accuracy`` (greedy answer on single-task prompts), so a
   missing answer in a mixture is not the model failing the task;
2. the two answers' first *deciding* tokens differ on at least ``min_distinct_first`` of the
   queries, so the first token the model has to choose mostly decides between the tasks.
   Leading tokens that only write whitespace are skipped: Gemma writes " 34" as "▁", "3",
   "4", so every numeric answer begins with the same "▁" and the plain first token would
   say nothing about the tasks (changed 2026-12-05, docs/findings.md "Registry changes");
3. the answers are not case variants of each other (equal after casefolding on at least half
   the queries): one computation with a casing choice is not two tasks.

The candidates are tried in the order the registry lists them (the model's own training
tasks first for the character models); every candidate's outcome is reported, and the first
that passes is the pair. The geometry's null pair is the first two tasks of the pair's family
in library order that are not in the pair and whose answers coincide (equal after casefolding
on at least half of the family's inputs) neither with each other nor with a pair task's:
``add_digits`` writes what ``add`` writes, and a null pair of one task twice, or of the pair's
own case variants, is no control (changed 2026-12-05, docs/findings.md "Registry changes").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tslens.analyses.prompt.curves import task_hits
from tslens.engine.batching import status
from tslens.engine.lens import Lens
from tslens.engine.tokens import answer_token_ids
from tslens.errors import TslensError
from tslens.prompts import PromptSpec
from tslens.tasks import Task, list_tasks, resolve_tasks

COINCIDE_INPUTS = 200  # inputs of the family on which two tasks' answers are compared


def answers_coincide(a: Task, b: Task, inputs: Sequence[str]) -> bool:
    """Whether ``a`` and ``b`` write the same answer (after casefolding) on at least half of
    ``inputs``: one computation under two names, or one with a casing choice."""
    same = sum(a.answer(x).strip().casefold() == b.answer(x).strip().casefold() for x in inputs)
    return same >= len(inputs) / 2


def null_pair(pair: Sequence[str]) -> list[str]:
    """The first two tasks of the pair's family, in library order, outside the pair, whose
    answers coincide neither with each other's nor with a pair task's."""
    chosen = resolve_tasks(list(pair))
    family = chosen[0].family
    inputs = family.sample(np.random.default_rng(0), COINCIDE_INPUTS)
    null: list[Task] = []
    for task in list_tasks():
        if task.family != family or task.name in pair:
            continue
        if not any(answers_coincide(task, other, inputs) for other in [*chosen, *null]):
            null.append(task)
        if len(null) == 2:
            return [t.name for t in null]
    raise TslensError(
        f"the family of {pair[0]} has no two other tasks whose answers differ from each other's "
        "and the pair's, for a null pair"
    )


def deciding_tokens(
    lens: Lens, prompts: Sequence[str], answers: Sequence[Sequence[str]]
) -> list[list[int]]:
    """``[prompt][k]``: the first token of answer k in context that writes more than
    whitespace (the answer's last token if all of them are whitespace)."""
    ids = answer_token_ids(lens, prompts, answers, lens.token_ids(prompts))
    blank: dict[int, bool] = {}  # token id -> writes only whitespace (decoded once)

    def first_written(tokens: list[int]) -> int:
        for token in tokens:
            if token not in blank:
                blank[token] = not lens.tokenizer.decode([token]).strip()
            if not blank[token]:
                return token
        return tokens[-1]

    return [[first_written(a) for a in row] for row in ids]


def check_pairs(
    lens: Lens,
    candidates: Sequence[Sequence[str]],
    rule: dict[str, Any],
    spec: PromptSpec,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
    """Every candidate pair with its tasks' accuracy alone, the share of queries with
    distinct first answer tokens, the share with case-variant answers, whether it passes and
    why not."""
    accuracy: dict[str, float | None] = {}
    rows = []
    for pair in candidates:
        row: dict[str, Any] = {"pair": list(pair)}
        try:
            tasks = resolve_tasks(list(pair))
            for task in tasks:
                if task.name not in accuracy:
                    status(f"pair rule: {task.name} alone")
                    hits = task_hits(lens, [task], spec.n_prompts, spec.n_examples, spec.seed,
                                     spec.template, batch_size)  # fmt: skip
                    accuracy[task.name] = float(hits[task.name].double().mean())
            queries = spec.mixture(tasks)
            firsts = deciding_tokens(lens, [q.text for q in queries],
                                     [q.answers for q in queries])  # fmt: skip
        except TslensError as err:  # the tokenizer cannot write a task, a context too short
            rows.append({**row, "passes": False, "why": str(err)})
            continue
        distinct = sum(a != b for a, b in firsts) / len(firsts)
        variants = sum(q.answers[0].strip().casefold() == q.answers[1].strip().casefold()
                       for q in queries) / len(queries)  # fmt: skip
        why = [f"{t.name} alone {accuracy[t.name]:.2f} < {rule['min_accuracy']}"
               for t in tasks if accuracy[t.name] < rule["min_accuracy"]]  # fmt: skip
        if distinct < rule["min_distinct_first"]:
            why.append(f"distinct first tokens on {distinct:.2f} < {rule['min_distinct_first']}")
        if variants >= 0.5:
            why.append(f"case variants on {variants:.2f} of the queries")
        rows.append({**row, "accuracy": [accuracy[t.name] for t in tasks],
                     "distinct_first": distinct, "case_variants": variants,
                     "passes": not why, "why": "; ".join(why)})  # fmt: skip
    return rows
