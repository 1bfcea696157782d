"""Every tslens benchmark, side by side in one process; one JSON object per line.

    python benchmarks/run.py [--quick] [--only score_k4,...] [--model gemma-3-270m]

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

# The model every benchmark runs on (--model): the GPT-2-small fixture by default; any model
# tslens loads whose tokenizer handles the text tasks (capital, continent, ...).
MODEL = "gpt2-small-random"


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

    model = load_model(MODEL, device="cpu")
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
    t_floor, floor = timed(lambda: _plain_hf_packed_scoring(model, texts, answers))
    lengths = [
        len(ids)
        for ids in model.tokenizer(
            [a for a in sum(map(list, answers), [])], add_special_tokens=False
        )["input_ids"]
    ]
    return {
        "metric": "score_k4",
        "speedup": t_naive / t_fast,
        "vs_floor": t_fast / t_floor,
        "floor_s": t_floor,
        "floor_max_abs_diff_logprob": (floor - fast).abs().max().item(),
        "max_abs_diff": (fast.exp() - naive.exp()).abs().max().item(),
        "max_abs_diff_logprob": (fast - naive).abs().max().item(),
        "ours_s": t_fast,
        "naive_s": t_naive,
        "n_prompts": n_prompts,
        "k": 4,
        "mean_answer_tokens": sum(lengths) / len(lengths),
        "mean_prompt_tokens": sum(len(model.tokenizer(t)["input_ids"]) for t in texts) / n_prompts,
        "goal_speedup": 5.0,
        "goal_vs_floor": 1.3,
    }


@torch.inference_mode()
def _plain_hf_packed_scoring(model, texts, answers) -> torch.Tensor:
    """The scoring floor: the same packed tokens (each prompt once, every answer's tokens
    once) through the plain Hugging Face model, no bridge and no hooks, same batches."""
    from tslens.architecture import attention_masks
    from tslens.scoring import (
        answer_token_ids,
        default_batch_size,
        pack_answers,
        pad_token_id,
        prompt_token_ids,
        read_packed,
    )

    hf = model.original_model
    prompt_ids = prompt_token_ids(model, texts)
    answer_ids = answer_token_ids(model, texts, answers, prompt_ids)
    size = default_batch_size(model, max(len(p) for p in prompt_ids))
    order = sorted(range(len(texts)), key=lambda i: len(prompt_ids[i]))
    out = torch.empty(len(texts), len(answers[0]), dtype=torch.float64)
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        packed = pack_answers([prompt_ids[i] for i in chunk], [answer_ids[i] for i in chunk],
                              pad_token_id(model))  # fmt: skip
        masks = attention_masks(model, packed.mask, packed.positions, packed.positions)
        logits = hf(packed.ids, attention_mask=masks, position_ids=packed.positions,
                    logits_to_keep=packed.n_keep).logits  # fmt: skip
        out[chunk] = read_packed(logits, packed.reads, len(chunk), out.shape[1])[0]
    return out


def bench_bridge_overhead(quick: bool) -> dict:
    """The same packed scoring forwards through the TransformerBridge and through the plain
    Hugging Face model it wraps (the scoring floor): ``ratio`` - 1 is what the bridge costs."""
    from tslens.models import load_model
    from tslens.prompts import build_mixture_prompts
    from tslens.scoring import answer_logprobs
    from tslens.tasks import resolve_tasks

    model = load_model(MODEL, device="cpu")
    prompts = build_mixture_prompts(resolve_tasks("capital,continent,upper,currency"), None,
                                    8 if quick else 32, 30, seed=0)  # fmt: skip
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    _plain_hf_packed_scoring(model, texts[:2], answers[:2])  # warm-up
    t_bridge, ours = timed(lambda: answer_logprobs(model, texts, answers), repeats=2)
    t_plain, plain = timed(lambda: _plain_hf_packed_scoring(model, texts, answers), repeats=2)
    return {
        "metric": "bridge_overhead",
        "ratio": t_bridge / t_plain,
        "overhead": t_bridge / t_plain - 1,
        "max_abs_diff_logprob": (ours - plain).abs().max().item(),
        "bridge_s": t_bridge,
        "plain_hf_s": t_plain,
        "n_prompts": len(texts),
        "goal_overhead": 0.10,
    }


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def _peak_rss_during(fn: Callable[[], object]) -> tuple[int, object]:
    """Peak resident memory while ``fn`` runs (sampled every 2 ms in a thread)."""
    import threading

    peak, done = [_rss_bytes()], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        out = fn()
    finally:
        done.set()
        thread.join()
    return max(peak[0], _rss_bytes()), out


def bench_patch_sweep(quick: bool) -> dict:
    """Convex task-vector sweep, 12 layers x 11 lambdas, K=2: prefix-cached batched patch
    scoring vs one plain forward with a hook per prompt, variant and answer (GPT-2 fixture).
    ``vs_clean_forward`` divides the sweep's time by one clean scoring forward of the same
    zero-shot query prompts; ``vs_icl_forward`` by one clean forward of in-context prompts
    (30 demonstrations) for the same queries, the cost of measuring the real mixtures."""
    from tslens.analyses.patching import patched_answer_logprobs, patched_answer_logprobs_naive
    from tslens.analyses.sweeps import lambda_points
    from tslens.hooks.patch import convex_combination
    from tslens.models import load_model
    from tslens.prompts import build_mixture_prompts, build_query_prompts
    from tslens.scoring import answer_logprobs
    from tslens.tasks import resolve_tasks

    model = load_model(MODEL, device="cpu")
    tasks = resolve_tasks("capital,continent")
    n_prompts = 2 if quick else 10
    queries = build_query_prompts(tasks, n_prompts, seed=1)
    texts, answers = [q.text for q in queries], [q.answers for q in queries]
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(2, model.cfg.n_layers, model.cfg.d_model, generator=generator) * 10
    points = lambda_points([i / 10 for i in range(11)])
    n_layers = model.cfg.n_layers
    combos = torch.stack(
        [convex_combination(vectors[:, layer], points) for layer in range(n_layers)]
    )
    layers = torch.arange(n_layers).repeat_interleave(len(points))
    flat = combos.flatten(0, 1).float()
    patched_answer_logprobs(model, texts[:1], answers[:1], layers[:4], flat[:4])  # warm-up
    t_fast, fast = timed(lambda: patched_answer_logprobs(model, texts, answers, layers, flat))
    t_naive, naive = timed(
        lambda: patched_answer_logprobs_naive(model, texts, answers, layers, flat)
    )
    t_clean, _ = timed(lambda: answer_logprobs(model, texts, answers), repeats=3)
    icl = build_mixture_prompts(tasks, [0.5, 0.5], n_prompts, 30, seed=1)
    t_icl, _ = timed(
        lambda: answer_logprobs(model, [p.text for p in icl], [p.answers for p in icl]), 3
    )
    return {
        "metric": "patch_sweep",
        "speedup": t_naive / t_fast,
        "vs_clean_forward": t_fast / t_clean,
        "vs_icl_forward": t_fast / t_icl,
        "max_abs_diff": (fast.exp() - naive.exp()).abs().max().item(),
        "max_abs_diff_logprob": (fast - naive).abs().max().item(),
        "ours_s": t_fast,
        "naive_s": t_naive,
        "clean_forward_s": t_clean,
        "icl_forward_s": t_icl,
        "n_prompts": n_prompts,
        "variants": len(layers),
        "goal_speedup": 20.0,
        "goal_vs_clean_forward": 3.0,
    }


def bench_capture_memory(quick: bool) -> dict:
    """Peak memory of extracting task vectors (final-token resid_post, every layer) for 100
    in-context prompts, relative to the model's weights (GPT-2 fixture)."""
    from tslens.analyses.task_vectors import task_vectors
    from tslens.models import load_model

    before_model = _rss_bytes()
    model = load_model(MODEL, device="cpu")
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    n_prompts = 20 if quick else 100
    task_vectors(model, "capital", n_prompts=2, n_examples=30)  # warm-up
    before = _rss_bytes()
    start = time.perf_counter()
    peak, vectors = _peak_rss_during(
        lambda: task_vectors(model, "capital", n_prompts=n_prompts, n_examples=30)
    )
    return {
        "metric": "capture_memory",
        "peak_over_weights": (peak - before_model) / weights,
        "extra_over_weights": (peak - before) / weights,
        "weights_mb": weights / 2**20,
        "peak_rss_mb": peak / 2**20,
        "seconds": time.perf_counter() - start,
        "n_prompts": n_prompts,
        "layers": int(vectors.vectors.shape[1]),
        "goal_peak_over_weights": 2.0,
    }


def bench_head_patch(quick: bool) -> dict:
    """Per-head activation patching, all 144 heads of the GPT-2-small fixture: each head's
    final-position z from clean mixture prompts (capital/continent, 30 demonstrations) patched
    into the shuffled-label prompts. Ours: every head a row of one batch over the cached
    prefix; baseline: one hooked forward of all prompts per head (what TransformerLens
    ``patching`` and the function-vector code do), with the same exact packed scoring."""
    from tslens.analyses.heads import all_heads, final_z
    from tslens.analyses.patching import patched_answer_logprobs, patched_answer_logprobs_loop
    from tslens.models import load_model
    from tslens.prompts import build_mixture_prompts
    from tslens.tasks import resolve_tasks

    model = load_model(MODEL, device="cpu")
    tasks = resolve_tasks("capital,continent")
    n_prompts = 2 if quick else 4
    clean = build_mixture_prompts(tasks, None, n_prompts, 30, seed=0)
    corrupt = build_mixture_prompts(tasks, None, n_prompts, 30, seed=0, shuffle_labels=True)
    texts, answers = [p.text for p in corrupt], [p.answers for p in clean]
    layers, heads = all_heads(model)
    vectors = final_z(model, [p.text for p in clean])[:, layers, heads]
    args = (model, texts, answers, layers, vectors)
    options = dict(kind="z", heads=heads, per_prompt=True)
    patched_answer_logprobs(model, texts[:1], answers[:1], layers[:4], vectors[:1, :4], **options)
    t_fast, fast = timed(lambda: patched_answer_logprobs(*args, **options))
    t_loop, loop = timed(lambda: patched_answer_logprobs_loop(*args, **options))
    return {
        "metric": "head_patch",
        "speedup": t_loop / t_fast,
        "max_abs_diff": (fast.exp() - loop.exp()).abs().max().item(),
        # the fixture's random weights give answers P ~ 1e-10; log-space is the real check
        "max_abs_diff_logprob": (fast - loop).abs().max().item(),
        "ours_s": t_fast,
        "per_head_loop_s": t_loop,
        "n_prompts": n_prompts,
        "heads": len(layers),
        "mean_prompt_tokens": sum(len(model.tokenizer(t)["input_ids"]) for t in texts) / n_prompts,
        "goal_speedup": 20.0,
        "goal_max_abs_diff": 1e-4,
    }


def _branch_naive(model, prompt: str, width: int, max_new_tokens: int) -> list[tuple[str, float]]:
    """The plain way to get the same branches: for each of the top-``width`` first tokens, a
    greedy decode that re-runs the whole sequence at every step (no cache, no batching)."""
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    newline = model.tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    first = torch.log_softmax(model(ids)[0, -1].float(), -1)
    first[newline] = -torch.inf
    out = []
    for lp, tok in zip(*first.topk(width), strict=True):
        seq, score = [int(tok)], lp.item()
        for _ in range(max_new_tokens - 1):
            step = torch.log_softmax(
                model(torch.cat([ids[0], torch.tensor(seq)])[None])[0, -1].float(), -1
            )
            nxt = int(step.argmax())
            if nxt == newline:
                break
            seq, score = seq + [nxt], score + step[nxt].item()
        out.append((model.tokenizer.decode(seq), score))
    return out


def bench_decode(quick: bool) -> dict:
    """Decoding that keeps the superposition: ``branch_complete_answers`` (width 4: one greedy
    branch per top first token over the shared prefix cache) vs one greedy decode of the same
    prompts (the cost the issue asks for) and vs the naive branching loop (each branch decoded
    from scratch without a cache), on the GPT-2-small fixture with 30-demonstration prompts."""
    from tslens.complete import branch_complete_answers, sample_complete_answers
    from tslens.models import load_model
    from tslens.prompts import build_mixture_prompts
    from tslens.tasks import resolve_tasks

    model = load_model(MODEL, device="cpu")
    n_prompts, width, budget = (4, 4, 6) if quick else (16, 4, 8)
    prompts = build_mixture_prompts(
        resolve_tasks("capital,continent,upper,currency"), None, n_prompts, 30, seed=0
    )
    texts = [p.text for p in prompts]
    options = dict(max_new_tokens=budget, finish_at_max=True)
    sample_complete_answers(model, texts[:1], **options)  # warm-up
    t_greedy, _ = timed(lambda: sample_complete_answers(model, texts, **options), repeats=2)
    t_branch, ours = timed(lambda: branch_complete_answers(model, texts, width, **options), 2)
    with torch.inference_mode():
        t_naive, naive = timed(lambda: [_branch_naive(model, t, width, budget) for t in texts])
    diffs = [
        abs(torch.tensor(prob).log().item() - dict(plain).get(text, float("nan")))
        for found, plain in zip(ours, naive, strict=True)
        for text, prob in found
        if text in dict(plain)
    ]
    return {
        "metric": "decode_branch",
        "speedup": t_naive / t_branch,
        "cost_vs_greedy": t_branch / t_greedy,
        "max_abs_diff_logprob": max(diffs),
        "branches_matched": len(diffs),
        "ours_s": t_branch,
        "greedy_s": t_greedy,
        "naive_s": t_naive,
        "n_prompts": n_prompts,
        "width": width,
        "max_new_tokens": budget,
    }


# capture_memory first: it reads the process's resident memory before loading its model.
BENCHMARKS: dict[str, Callable[[bool], dict]] = {
    "capture_memory": bench_capture_memory,
    "score_k4": bench_score_k4,
    "patch_sweep": bench_patch_sweep,
    "head_patch": bench_head_patch,
    "decode_branch": bench_decode,
    "bridge_overhead": bench_bridge_overhead,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", default=None, help="comma-separated metric names")
    parser.add_argument("--model", default=MODEL, help="any model tslens loads (tslens models)")
    args = parser.parse_args()
    globals()["MODEL"] = args.model
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        print(f"unknown metric(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    env = {
        "model": args.model,
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
