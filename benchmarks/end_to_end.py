"""``probs_end_to_end``: the main job (``tslens probs``) with "tasks solved" vs without it.

Goal (issue 22): with tasks solved <= 1.5x the same run with ``--no-solved`` on Gemma-3-270M
(100 prompts, 20 demonstrations of copy_op1/copy_op2). Both runs go through
:func:`tslens.analyses.prompt.mixture.measure_mixture` in one process, the model loaded once, so the
ratio is what a user waits for beyond the scoring. ``three_pass_s`` times the previous way
(score, beam search from scratch, score the candidates again with the prompt) for reference.
"""

from __future__ import annotations

import time

GEMMA = "gemma-3-270m"


def bench_probs_end_to_end(quick: bool, model_name: str | None = None) -> dict:
    import torch

    from tslens.analyses.prompt.mixture import measure_mixture, tasks_solved
    from tslens.engine.scoring import answer_logprobs
    from tslens.prompts import build_mixture_prompts
    from tslens.sources.loader import load_model
    from tslens.tasks import resolve_tasks

    name = model_name or GEMMA
    model = load_model(name, device="cpu")
    n_prompts, n_examples = (10, 20) if quick else (100, 20)
    options = dict(tasks="copy_op1,copy_op2", n_prompts=n_prompts, n_examples=n_examples,
                   template="spaced" if name == GEMMA else None)  # fmt: skip
    measure_mixture(model, **{**options, "n_prompts": 2}, solved=True)  # warm-up
    start = time.perf_counter()
    plain = measure_mixture(model, **options, solved=False)
    no_solved = time.perf_counter() - start
    start = time.perf_counter()
    full = measure_mixture(model, **options, solved=True)
    with_solved = time.perf_counter() - start
    prompts = build_mixture_prompts(resolve_tasks(options["tasks"]), None, n_prompts,
                                    n_examples, 0, options["template"])  # fmt: skip
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    start = time.perf_counter()
    logps = answer_logprobs(model, texts, answers)
    three = tasks_solved(model, texts, answers, logps, complete_by=full.settings["complete_by"])
    three_pass = time.perf_counter() - start
    return {
        "metric": "probs_end_to_end",
        "model": name,  # not the --model default: this metric is about Gemma
        "n_prompts": n_prompts,
        "n_examples": n_examples,
        "no_solved_s": round(no_solved, 2),
        "with_solved_s": round(with_solved, 2),
        "three_pass_s": round(three_pass, 2),
        "ratio_with_vs_without": round(with_solved / no_solved, 3),
        "goal_ratio": 1.5,
        "speedup_vs_three_pass": round(three_pass / max(with_solved - no_solved, 1e-9), 2),
        "max_abs_diff": float((full.probs - plain.probs).abs().max()),
        "solved_equal_three_pass": bool(torch.equal(full.solved, three)),
        "mean_tasks_solved": full.summary()["mean_tasks_solved"],
    }
