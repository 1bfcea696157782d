"""Every tslens benchmark, side by side in one process; one JSON object per line.

    python benchmarks/run.py [--quick] [--only score_k4,...] [--model gemma-3-270m]

Each metric reports ``speedup`` (ours vs the plain baseline) and ``max_abs_diff`` (agreement
with that baseline), plus times and sizes. Absolute times depend on the machine; compare ratios.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from collections.abc import Callable

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from end_to_end import bench_probs_end_to_end  # noqa: E402
from floors import head_patch_floor, plain_model, residual_sweep_floor, scoring_floor  # noqa: E402

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
    from tslens._reference import answer_logprobs_naive
    from tslens.engine.scoring import answer_logprobs
    from tslens.prompts import build_mixture_prompts
    from tslens.sources.loader import load_model
    from tslens.tasks import resolve_tasks

    model = load_model(MODEL, device="cpu")
    _plain()  # the floor's plain copy, loaded before any clock starts
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
    t_floor, floor = timed(lambda: scoring_floor(_plain(), model, texts, answers))
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


@functools.cache
def _plain():
    """The plain Hugging Face copy of MODEL that the floors run on (loaded once)."""
    return plain_model(MODEL)


def bench_bridge_overhead(quick: bool) -> dict:
    """The same packed scoring forwards through the TransformerBridge and through the plain
    Hugging Face model it wraps (the scoring floor): ``ratio`` - 1 is what the bridge costs."""
    from tslens.engine.scoring import answer_logprobs
    from tslens.prompts import build_mixture_prompts
    from tslens.sources.loader import load_model
    from tslens.tasks import resolve_tasks

    model = load_model(MODEL, device="cpu")
    _plain()  # the floor's plain copy, loaded before any clock starts
    prompts = build_mixture_prompts(resolve_tasks("capital,continent,upper,currency"), None,
                                    8 if quick else 32, 30, seed=0)  # fmt: skip
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    scoring_floor(_plain(), model, texts[:2], answers[:2])  # warm-up
    t_bridge, ours = timed(lambda: answer_logprobs(model, texts, answers), repeats=2)
    t_plain, plain = timed(lambda: scoring_floor(_plain(), model, texts, answers), repeats=2)
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
    """Convex task-vector sweep, every layer x 11 lambdas, K=2: prefix-cached batched patch
    scoring, each variant entering at its own layer, vs one plain forward with a hook per
    prompt, variant and answer, and vs the floor (:func:`floors.residual_sweep_floor`).
    ``vs_clean_forward`` divides the sweep's time by one clean scoring forward of the same
    zero-shot query prompts."""
    from tslens._reference import patched_answer_logprobs_naive
    from tslens.analyses.layer.sweeps import lambda_points
    from tslens.engine.patching import patched_answer_logprobs
    from tslens.engine.scoring import answer_logprobs
    from tslens.hooks.patch import convex_combination
    from tslens.prompts import build_query_prompts
    from tslens.sources.loader import load_model
    from tslens.tasks import resolve_tasks

    model = load_model(MODEL, device="cpu")
    _plain()  # the floor's plain copy, loaded before any clock starts
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
    t_floor, floor = timed(
        lambda: residual_sweep_floor(_plain(), model, texts, answers, layers, flat)
    )
    t_clean, _ = timed(lambda: answer_logprobs(model, texts, answers), repeats=3)
    return {
        "metric": "patch_sweep",
        "speedup": t_naive / t_fast,
        "vs_floor": t_fast / t_floor,
        "vs_clean_forward": t_fast / t_clean,
        "max_abs_diff": (fast.exp() - naive.exp()).abs().max().item(),
        "max_abs_diff_logprob": (fast - naive).abs().max().item(),
        "floor_max_abs_diff_logprob": (floor - fast).abs().max().item(),
        "ours_s": t_fast,
        "naive_s": t_naive,
        "floor_s": t_floor,
        "clean_forward_s": t_clean,
        "n_prompts": n_prompts,
        "variants": len(layers),
        "goal_speedup": 40.0,
        "goal_vs_floor": 1.5,
    }


def bench_capture_memory(quick: bool) -> dict:
    """Peak memory of extracting task vectors (final-token resid_post, every layer) for 200
    in-context prompts (20 with --quick), relative to the model's weights. The baseline is
    taken after the libraries are imported (transformers and TransformerLens alone hold
    ~0.4 GB, whatever the model), so the ratio is the model, its tokenizer and the capture."""
    import transformer_lens.model_bridge  # noqa: F401 - imported before the baseline
    import transformers  # noqa: F401

    from tslens.analyses.layer.task_vectors import task_vectors
    from tslens.sources.loader import load_model

    before_model = _rss_bytes()
    model = load_model(MODEL, device="cpu")
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    n_prompts = 20 if quick else 200
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
        "goal_peak_over_weights": 1.5,
    }


def bench_head_patch(quick: bool) -> dict:
    """Per-head activation patching, all 144 heads of the GPT-2-small fixture: each head's
    final-position z from clean mixture prompts (capital/continent, 30 demonstrations) patched
    into the shuffled-label prompts. Ours: every head a row of one batch over the cached
    prefix; baseline: one hooked forward of all prompts per head (what TransformerLens
    ``patching`` and the function-vector code do), with the same exact packed scoring."""
    from tslens._reference import patched_answer_logprobs_loop
    from tslens.analyses.head.heads import all_heads, final_z
    from tslens.engine.patching import patched_answer_logprobs
    from tslens.prompts import build_mixture_prompts
    from tslens.sources.loader import load_model
    from tslens.tasks import resolve_tasks

    model = load_model(MODEL, device="cpu")
    _plain()  # the floor's plain copy, loaded before any clock starts
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
    t_floor, floor = timed(lambda: head_patch_floor(_plain(), *args[:4], heads, vectors))
    return {
        "metric": "head_patch",
        "speedup": t_loop / t_fast,
        "vs_floor": t_fast / t_floor,
        "floor_s": t_floor,
        "floor_max_abs_diff_logprob": (floor - fast).abs().max().item(),
        "max_abs_diff": (fast.exp() - loop.exp()).abs().max().item(),
        # the fixture's random weights give answers P ~ 1e-10; log-space is the real check
        "max_abs_diff_logprob": (fast - loop).abs().max().item(),
        "ours_s": t_fast,
        "per_head_loop_s": t_loop,
        "n_prompts": n_prompts,
        "heads": len(layers),
        "mean_prompt_tokens": sum(len(model.tokenizer(t)["input_ids"]) for t in texts) / n_prompts,
        "goal_speedup": 20.0,
        "goal_vs_floor": 1.5,
        "goal_max_abs_diff": 1e-4,
    }


def bench_ablate_rank(quick: bool) -> dict:
    """Ranking every head for ``tslens ablate`` (mean ablation at the final position, K=2
    mixture prompts, 30 demonstrations): ours, every head a row of one batch over the cached
    prefix (:func:`head_importance`), vs one packed forward of all prompts per head ablated
    (``ablated_answer_logprobs`` per head) and vs the floor."""
    from tslens.analyses.head.ablation_study import head_importance
    from tslens.analyses.head.heads import all_heads
    from tslens.engine.ablation import ablated_answer_logprobs, head_statistics
    from tslens.engine.scoring import answer_logprobs
    from tslens.prompts import build_mixture_prompts
    from tslens.sources.loader import load_model
    from tslens.tasks import resolve_tasks

    model = load_model(MODEL, device="cpu")
    _plain()  # the floor's plain copy, loaded before any clock starts
    n_prompts = 2 if quick else 4
    prompts = build_mixture_prompts(resolve_tasks("capital,continent"), None, n_prompts, 30, 0)
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    stats = head_statistics(model, texts)
    head_importance(model, texts[:1], answers[:1], "mean", stats)  # warm-up
    t_fast, fast = timed(lambda: head_importance(model, texts, answers, "mean", stats))

    def per_head_loop() -> torch.Tensor:
        base = answer_logprobs(model, texts, answers).exp()
        drops = [base - ablated_answer_logprobs(model, texts, answers, [(layer, head)], "mean",
                                                 "final", stats).exp()
                 for layer, head in zip(*map(torch.Tensor.tolist, all_heads(model)),
                                        strict=True)]  # fmt: skip
        return torch.stack(drops, -1).mean(0).view(-1, model.cfg.n_layers, model.cfg.n_heads)

    t_loop, loop = timed(per_head_loop)
    layers, heads = all_heads(model)
    vectors = stats.mean_final[layers, heads].expand(n_prompts, -1, -1)
    with_base = (torch.cat([torch.tensor([-1]), layers]), torch.cat([heads[:1], heads]))
    t_floor, floor = timed(lambda: head_patch_floor(
        _plain(), model, texts, answers, *with_base,
        torch.cat([vectors[:, :1], vectors], dim=1)))  # fmt: skip
    floor_drop = (floor[:, :1].exp() - floor[:, 1:].exp()).mean(0).T.reshape(fast.shape)
    return {
        "metric": "ablate_rank",
        "speedup": t_loop / t_fast,
        "vs_floor": t_fast / t_floor,
        "max_abs_diff": (fast - loop).abs().max().item(),
        "floor_max_abs_diff": (fast - floor_drop).abs().max().item(),
        "ours_s": t_fast,
        "per_head_loop_s": t_loop,
        "floor_s": t_floor,
        "n_prompts": n_prompts,
        "heads": len(layers),
        "goal_speedup": 20.0,
        "goal_vs_floor": 1.5,
    }


def bench_demos(quick: bool) -> dict:
    """Demonstration attribution (``tslens demos``): every demonstration and every task's
    demonstrations deleted, all answers scored. Ours, each prompt's deletions in one row that
    shares the tokens before each deletion (:func:`demonstration_effects`), vs the plain loop
    (one forward per deleted prompt and answer) and vs scoring every deleted prompt with the
    packed batched scorer (no sharing between a prompt's deletions)."""
    from tslens._reference import demonstration_effects_naive
    from tslens.analyses.prompt.demonstrations import (
        delete_tokens,
        deletion_sets,
        demonstration_effects,
    )
    from tslens.engine.lens import as_lens
    from tslens.engine.packing import forward_packed, pack_answers, read_packed
    from tslens.engine.scoring import answer_token_ids, prompt_token_ids
    from tslens.sources.loader import load_model
    from tslens.tasks import resolve_tasks

    model = load_model(MODEL, device="cpu")
    tasks = resolve_tasks("capital,continent")
    k = len(tasks)
    n_prompts = 2 if quick else 4
    demonstration_effects(model, tasks, 1, 20)  # warm-up
    t_fast, fast = timed(lambda: demonstration_effects(model, tasks, n_prompts, 20))
    t_loop, loop = timed(lambda: demonstration_effects_naive(model, fast))

    def batched() -> torch.Tensor:
        texts = [p.text for p in fast.prompts]
        ids = prompt_token_ids(model, texts)
        answers = answer_token_ids(model, texts, [p.answers for p in fast.prompts], ids)
        rows, row_answers = [], []
        for prompt, p_ids, spans, a_ids in zip(fast.prompts, ids, fast.spans, answers,
                                               strict=True):  # fmt: skip
            for deleted in [[], *deletion_sets(prompt, spans, len(tasks))]:
                rows.append(delete_tokens(p_ids, deleted))
                row_answers.append(a_ids)
        out = []
        for start in range(0, len(rows), 8):
            packed = pack_answers(rows[start : start + 8], row_answers[start : start + 8],
                                  as_lens(model).pad_id)  # fmt: skip
            logits = forward_packed(model, packed)
            out.append(read_packed(logits, packed.reads, len(packed.ids), k, greedy=False)[0])
        return torch.cat(out).exp().view(len(fast.prompts), -1, k)

    with torch.inference_mode():
        t_batched, plain = timed(batched)
    stacked = torch.cat([fast.base[:, None], fast.without_demo, fast.without_task], 1)
    return {
        "metric": "demos",
        "speedup": t_loop / t_fast,
        "vs_batched_scoring": t_fast / t_batched,
        "max_abs_diff_log": (stacked.log() - loop.log()).abs().max().item(),
        "batched_max_abs_diff_log": (plain.log() - loop.log()).abs().max().item(),
        "ours_s": t_fast,
        "loop_s": t_loop,
        "batched_scoring_s": t_batched,
        "n_prompts": n_prompts,
        "deleted_prompts": n_prompts * (20 + len(tasks)),
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
    from tslens.engine.decoders import branch_complete_answers, sample_complete_answers
    from tslens.prompts import build_mixture_prompts
    from tslens.sources.loader import load_model
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
def bench_reproduce(quick: bool) -> dict:
    """``tslens reproduce`` (the registry's quick sizes with --quick, else its full sizes over
    three prompt seeds, the pair chosen by the registry's rule): the wall time with every
    measurement run once for all the claims that read it, against the sum over claims of the
    measurements each reads, timed in the same run (what checking each claim on its own
    would cost). Goals (2 CPU cores): Gemma-3-270M quick <= 8 min and full <= 30 min; the
    random-weights GPT-2 fixture quick <= 5 min."""
    from tslens.claims.registry import load_registry
    from tslens.claims.reproduce import reproduce
    from tslens.sources.loader import load_model

    model = load_model(MODEL, device="cpu")
    shared_s, result = timed(lambda: reproduce(model, quick=quick))
    claims = load_registry().claims
    separate_s = sum(sum(result.seconds.get(m, 0.0) for m in c.measurements()) for c in claims)
    goal_s = (300 if MODEL == "gpt2-small-random" else 480) if quick else 1800
    return {
        "metric": "reproduce",
        "speedup": separate_s / shared_s,
        "shared_s": shared_s,
        "separate_s": separate_s,
        "measurements": len(result.seconds),
        "claims": len(claims),
        "pair": result.settings["pair"],
        "verdicts": result.counts(),
        # where the time goes: each measurement, and the rest (loading, the pair rule)
        "measurement_s": {name: round(t, 1) for name, t in sorted(result.seconds.items())},
        "outside_measurements_s": shared_s - sum(result.seconds.values()),
        "goal_s": goal_s,
        "goal_met": shared_s <= goal_s,
    }


def _own_pair() -> str:
    """The benchmark model's own task pair where one is known, else capital,continent."""
    from tslens.sources.loader import default_tasks

    return default_tasks(MODEL) or "capital,continent"


def bench_atp_heads(quick: bool) -> dict:
    """Attribution patching of every head x demonstration position (one forward and one
    backward per task for AtP, 8 of each for IG) against exact patching of the same variants
    (one cached-continuation row per variant), on mixture prompts of the model's pair with 20
    demonstrations. Goal on Gemma-3-270M: AtP >= 20x faster with Spearman rho >= 0.8 over
    heads (rho is reported whatever it is)."""
    from tslens.analyses.head.atp import agreement, exact_position_effects, gradient_estimates
    from tslens.analyses.prompt.demonstrations import build_demo_prompts
    from tslens.engine.ablation import head_statistics
    from tslens.prompts import PromptSpec
    from tslens.sources.loader import load_model
    from tslens.tasks import resolve_tasks

    model = load_model(MODEL, device="cpu")
    n_prompts = 1 if quick else 4
    spec = PromptSpec(n_prompts, 20, 0, "{x} -> {y}")
    prompts, _, spans = build_demo_prompts(model, resolve_tasks(_own_pair()), spec)
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    means = head_statistics(model, texts).mean_all
    args = (model, texts, answers, spans, means)
    gradient_estimates(*args[:2], *[a[:1] for a in args[2:4]], means)  # warm-up
    t_atp, atp = timed(lambda: gradient_estimates(*args, "atp"))
    t_ig, ig = timed(lambda: gradient_estimates(*args, "ig", steps=8))
    t_exact, exact = timed(lambda: exact_position_effects(*args))
    fit = {name: agreement(est.mean(0), exact.mean(0)) for name, est in (("atp", atp), ("ig", ig))}
    return {
        "metric": "atp_heads",
        "speedup": t_exact / t_atp,
        "ig_speedup": t_exact / t_ig,
        "spearman_heads": [a["spearman_heads"] for a in fit["atp"]],
        "spearman_variants": [a["spearman_variants"] for a in fit["atp"]],
        "top10_variants": [a["top10_variants"] for a in fit["atp"]],
        "ig_spearman_heads": [a["spearman_heads"] for a in fit["ig"]],
        "ig_spearman_variants": [a["spearman_variants"] for a in fit["ig"]],
        "ig_top10_variants": [a["top10_variants"] for a in fit["ig"]],
        "atp_s": t_atp,
        "ig_s": t_ig,
        "exact_s": t_exact,
        "variants_per_prompt": exact[0, 0].numel(),
        "n_prompts": n_prompts,
        "goal_speedup": 20,
        "goal_spearman": 0.8,
    }


def bench_head_types(quick: bool) -> dict:
    """Typing every head (induction probe, patching, AIE, ablation, attention evenness) on the
    model's pair, 20 prompts of 20 demonstrations (5 with --quick). Goal on Gemma-3-270M:
    <= 2 min."""
    from tslens.analyses.head.types import type_heads
    from tslens.prompts import PromptSpec
    from tslens.sources.loader import load_model
    from tslens.tasks import resolve_tasks

    model = load_model(MODEL, device="cpu")
    spec = PromptSpec(5 if quick else 20, 20, 0, "{x} -> {y}")
    seconds, types = timed(lambda: type_heads(model, resolve_tasks(_own_pair()), spec))
    return {
        "metric": "head_types",
        "seconds": seconds,
        "heads": types.induction.numel(),
        "n_prompts": spec.n_prompts,
        "goal_s": 120,
    }


BENCHMARKS: dict[str, Callable[[bool], dict]] = {
    "capture_memory": bench_capture_memory,
    "score_k4": bench_score_k4,
    "patch_sweep": bench_patch_sweep,
    "head_patch": bench_head_patch,
    "ablate_rank": bench_ablate_rank,
    "decode_branch": bench_decode,
    "demos": bench_demos,
    "bridge_overhead": bench_bridge_overhead,
    "probs_end_to_end": bench_probs_end_to_end,
    "reproduce": bench_reproduce,
    "atp_heads": bench_atp_heads,
    "head_types": bench_head_types,
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
    for name in names:  # a metric's own "model" wins over the --model default
        print(json.dumps({**env, **BENCHMARKS[name](args.quick)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
