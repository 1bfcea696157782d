"""Every tslens benchmark, side by side in one process; one JSON object per line.

    python benchmarks/run.py [--quick] [--only score_k4,...]

Each metric reports ``speedup`` (ours vs the plain baseline) and ``max_abs_diff`` (agreement
with that baseline), plus times and sizes. Absolute times depend on the machine; compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(fn: Callable[[], object], repeats: int = 1) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_score_k4(quick: bool) -> dict:
    """Exact answer probabilities, K=4 multi-token answers: shared-prefix batched scorer vs one
    full forward per prompt+answer (GPT-2-small fixture)."""
    from tslens.models import load_model
    from tslens.prompts import build_mixture_prompts
    from tslens.scoring import answer_logprobs, answer_logprobs_naive
    from tslens.tasks import resolve_tasks

    model = load_model("gpt2-small-random", device="cpu")
    n_prompts, n_examples = (10, 30) if quick else (100, 30)
    prompts = build_mixture_prompts(
        resolve_tasks("capital,continent,upper,currency"),
        n_prompts=n_prompts,
        n_examples=n_examples,
        seed=0,
    )
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    answer_logprobs(model, texts[:2], answers[:2])  # warm-up
    t_fast, fast = timed(lambda: answer_logprobs(model, texts, answers))
    t_naive, naive = timed(lambda: answer_logprobs_naive(model, texts, answers))
    lengths = [
        len(ids)
        for ids in model.tokenizer(
            [a for a in sum(map(list, answers), [])], add_special_tokens=False
        )["input_ids"]
    ]
    return {
        "metric": "score_k4",
        "speedup": t_naive / t_fast,
        "max_abs_diff": (fast.exp() - naive.exp()).abs().max().item(),
        "max_abs_diff_logprob": (fast - naive).abs().max().item(),
        "ours_s": t_fast,
        "naive_s": t_naive,
        "n_prompts": n_prompts,
        "k": 4,
        "mean_answer_tokens": sum(lengths) / len(lengths),
        "mean_prompt_tokens": sum(len(model.tokenizer(t)["input_ids"]) for t in texts) / n_prompts,
        "goal_speedup": 5.0,
    }


BENCHMARKS: dict[str, Callable[[bool], dict]] = {"score_k4": bench_score_k4}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", default=None, help="comma-separated metric names")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        print(f"unknown metric(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    env = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "quick": args.quick,
    }
    for name in names:
        print(json.dumps({**BENCHMARKS[name](args.quick), **env}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
