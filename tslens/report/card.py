"""The model card (``README.md``) written beside a model trained by ``tslens train``: prompt
format, tasks, how it was trained (command, recipe, steps, wall time, device) and its
evaluation table."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from tslens.report.evaluation import curve_table_markdown, summary_rows
from tslens.tasks import get_task
from tslens.training.recipe import Recipe


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def model_card(
    name: str,
    recipe: Recipe,
    log: dict[str, Any],
    evaluation: dict[str, Any],
    command: str,
    example: tuple[str, str],
    vocabulary: str,
) -> str:
    """The card's Markdown text. ``log`` is ``train_log.json``, ``evaluation`` is ``eval.json``
    and ``command`` the shell command that trained (and evaluated) the model; ``example`` is a
    one-task prompt with 3 demonstrations followed by its answer, as ``(task name, text)``, and
    ``vocabulary`` a note on the tokenizer's vocabulary. Long: one Markdown template, read top
    to bottom as the card reads."""
    tail = 100
    final = {kind: sum(v[-tail:]) / len(v[-tail:]) for kind, v in log["kind_losses"].items()}
    groups = recipe.task_groups()
    example_task, example_text = example
    header, rows = summary_rows([evaluation])
    accuracy_rows = [[t, a] for t, a in evaluation["accuracy"].items()]
    recipe_rows = [[k, json.dumps(v)] for k, v in asdict(recipe).items() if k != "tasks"]
    curves = "\n\n".join(
        f"**{' vs '.join(c['tasks'])}** (share d of {c['tasks'][0]} demonstrations)\n\n"
        + curve_table_markdown(c)
        for c in evaluation["curves"]
    )
    return f"""# {name}

A {recipe.n_layers}-layer Llama-style (rotary positions) character-level decoder,
d_model {recipe.d_model}, {recipe.n_heads} attention heads, trained from scratch by `tslens train`
to learn **one task per sequence** in context, as in Xiong et al. (2024, *Everything Everywhere
All at Once: LLMs can In-Context Learn Multiple Tasks in Superposition*, Sec. 4). Prompts that mix
tasks were never seen in training; the evaluation below measures what the model does with them.

## Prompt format (training and every tslens analysis use exactly this)

- The sequence starts with the `<bos>` token (id 1). `tslens` adds it by itself
  (`default_prepend_bos`); with plain `transformers`, tokenize with `add_special_tokens=True`.
- One token per character (letters, digits, punctuation, space, newline; {vocabulary}).
- Each demonstration is one line `x>y`; lines are joined by a newline; the prompt ends with the
  query `x>` and the answer is the next character. Training sequences hold {recipe.n_demos}
  demonstrations of one task and a query; the loss is on answer characters only.
- Example ({example_task}, 3 demonstrations; in `tslens` the query never appears among
  its prompt's demonstrations):

```
<bos>{example_text}
```

## Tasks

{markdown_table(["task", "what it does"], [[t, get_task(t).description] for t in recipe.tasks])}

Task kinds trained: {", ".join(f"{kind} ({len(v)} tasks)" for kind, v in groups.items())}; each
training batch holds an equal share of sequences of each kind.

## Training

```
{command}
```

- {recipe.steps} AdamW steps (betas 0.9, 0.98), batch {recipe.batch_size} sequences,
  warmup-stable-decay learning rate (peak {recipe.lr}), seed {recipe.seed}, no dropout.
- Wall time **{_minutes(log["wall_s"])}** on **{log.get("device", "?")}**
  ({log.get("torch_threads", "?")} torch threads).
- Final loss on answers (mean of the last {tail} steps): {
        ", ".join(f"{k} {v:.3f}" for k, v in final.items())
    }. The floor is ln(10)/{recipe.n_demos + 1} = {
        math.log(10) / (recipe.n_demos + 1):.3f} for plus-b
  and ln(8)/{recipe.n_demos + 1} = {math.log(8) / (recipe.n_demos + 1):.3f} for retrieval: only the
  first demonstration's answer cannot be inferred.
- `recipe.toml` (beside this card) holds the full recipe; `train_log.json` the loss of every step.

{markdown_table(["recipe field", "value"], recipe_rows)}

## Evaluation

`{evaluation["n_prompts"]}` prompts per task and per share d, {evaluation["n_examples"]}
demonstrations each (exact counts per prompt), seed {evaluation["seed"]};
`eval.json` holds every number and `eval.html` the figures.

Single-task accuracy (greedy decoding produces the task's answer):

{markdown_table(["task", "accuracy"], accuracy_rows)}

Mixture curves: mean probability of each task's answer, and of anything else, when a share d of
the demonstrations come from the first task and the rest from the second.

{curves}

Summary (`both >= .1`: share of d = 0.5 prompts giving each answer at least 0.1, i.e.
superposition inside one prompt; `last-demo gap`: P(first task) when the last demonstration is
of the first task minus when it is of the second; near 1 means each prompt's answer is chosen by
its last demonstration and only the average over prompts is proportional):

{markdown_table(header, rows)}
{_reading(evaluation)}"""


def _reading(evaluation: dict[str, Any]) -> str:
    """A plain-words warning when the averages hide a per-prompt choice."""
    notes = []
    for curve in evaluation["curves"]:
        gap, both = curve.get("last_demo_gap_at_half"), curve.get("both_share_at_half")
        if gap is not None and both is not None and gap > 0.8 and both < 0.2:
            notes.append(
                f"**{'/'.join(curve['tasks'])}: the proportional average is not superposition "
                f"within a prompt.** At d = 0.5 only {both:.1%} of prompts give both answers "
                f"at least 0.1, and P({curve['tasks'][0]}) is {gap:.3f} higher when the last "
                "demonstration is of that task: the model answers the task of the last "
                "demonstration, and the mixture curve is proportional because the last "
                "demonstration is of the first task with probability d."
            )
    return "\n" + "\n\n".join(notes) + "\n" if notes else ""


def set_card_section(card: str, title: str, body: str) -> str:
    """``card`` with its ``## title`` section replaced by ``body`` (appended if absent), so
    adding a study's results to a card can be repeated without piling up copies."""
    heading = f"## {title}"
    section = f"{heading}\n\n{body.strip()}\n"
    if heading not in card:
        return card.rstrip("\n") + "\n\n" + section
    before, rest = card.split(heading, 1)
    after = rest.split("\n## ", 1)
    tail = "\n## " + after[1] if len(after) > 1 else ""
    return before + section + tail
