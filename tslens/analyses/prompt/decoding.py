"""Decoding that keeps the superposition, against the decoders a user has: how many of a
prompt's K task answers each returns, and at what cost.

- ``greedy``: one decode (:func:`tslens.engine.decoders.sample_complete_answers`, temperature 0);
  recovers at most one answer by construction.
- ``beam``: beam search of complete answers with ``width`` beams
  (:func:`tslens.engine.search.beam_complete_answers`), its ``width`` best answers.
- ``branch``: one greedy branch per each of the ``width`` most likely first tokens over the
  shared prefix cache (:func:`tslens.engine.decoders.branch_complete_answers`), answers with their
  probabilities.

``recovered`` counts the prompt's task answers among a decoder's answers; ``cost`` is each
decoder's wall time over greedy's, on the same prompts and batch size.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tslens.engine.decoders import branch_complete_answers, sample_complete_answers
from tslens.engine.search import beam_complete_answers
from tslens.errors import TslensError

DECODERS = ("greedy", "beam", "branch")


def check_width(answers: Sequence[Sequence[str]], width: int, name: str = "width") -> None:
    """Raise :class:`TslensError` when a prompt has more task answers than ``width``: no
    decoder here returns more than ``width`` answers (``name`` is how the caller calls it)."""
    k = max(len(a) for a in answers)
    if k > width:
        raise TslensError(
            f"{k} task answers per prompt but {name} {width}: the decoders return at most "
            f"{width} answers; raise {name} to at least {k}"
        )


def compare_decoders(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]] | None = None,
    width: int = 4,
    max_new_tokens: int = 12,
    stop: str = "\n",
    finish_at_max: bool = False,
    batch_size: int | None = None,
    repeats: int = 1,
) -> dict[str, Any]:
    """Run greedy, beam and branch decoding on ``prompts`` and compare them.

    Args:
        model: a ``TransformerBridge``.
        prompts: texts ending where the answer starts.
        answers: per prompt, its task answers (optional; needed for ``recovered``). A prompt
            with more answers than ``width`` raises :class:`TslensError`: no decoder here
            returns more than ``width`` answers.
        width: beams, and branches, per prompt.
        max_new_tokens, stop, finish_at_max: as in :mod:`tslens.engine.search`.
        repeats: timing runs per decoder (the minimum is kept).

    Returns:
        ``{"per_prompt": [{greedy, beam, branch, answers, recovered}], "summary": {decoder:
        {mean_recovered, all_recovered, seconds, cost_vs_greedy}}, "settings"}``.
    """
    if answers is not None:
        check_width(answers, width)
    common = dict(max_new_tokens=max_new_tokens, stop=stop, batch_size=batch_size,
                  finish_at_max=finish_at_max)  # fmt: skip
    runs = {
        "greedy": lambda: [
            [text] if text else []
            for ((text, _),) in sample_complete_answers(model, prompts, **common)
        ],
        "beam": lambda: beam_complete_answers(model, prompts, width, **common),
        "branch": lambda: branch_complete_answers(model, prompts, width, **common),
    }
    outputs, seconds = {}, {}
    sample_complete_answers(model, prompts[:1], **common)  # warm-up: first-call overheads
    for name, run in runs.items():
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            outputs[name] = run()
            times.append(time.perf_counter() - began)
        seconds[name] = min(times)
    per_prompt = []
    for i, prompt in enumerate(prompts):
        row: dict[str, Any] = {
            "prompt": prompt,
            "greedy": outputs["greedy"][i],
            "beam": outputs["beam"][i],
            "branch": [{"answer": a, "prob": p} for a, p in outputs["branch"][i]],
        }
        if answers is not None:
            found = {
                "greedy": set(outputs["greedy"][i]),
                "beam": set(outputs["beam"][i]),
                "branch": {a for a, _ in outputs["branch"][i]},
            }
            row["answers"] = list(answers[i])
            row["recovered"] = {d: sum(a in found[d] for a in answers[i]) for d in DECODERS}
        per_prompt.append(row)
    summary: dict[str, Any] = {}
    for name in DECODERS:
        entry: dict[str, Any] = {
            "seconds": seconds[name],
            "cost_vs_greedy": seconds[name] / seconds["greedy"],
        }
        if answers is not None:
            counts = [r["recovered"][name] for r in per_prompt]
            entry["mean_recovered"] = sum(counts) / len(counts)
            entry["all_recovered"] = sum(
                c == len(a) for c, a in zip(counts, answers, strict=True)
            ) / len(counts)
        summary[name] = entry
    settings = {"width": width, "max_new_tokens": max_new_tokens, "finish_at_max": finish_at_max,
                "n_prompts": len(prompts), "repeats": repeats}  # fmt: skip
    return {"summary": summary, "per_prompt": per_prompt, "settings": settings}
