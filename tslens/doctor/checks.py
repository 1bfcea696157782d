"""Every fast path of tslens against its plain-forward reference, on one model.

Each check runs a fast path and the slow computation it replaces on the same few mixture
prompts and returns the largest |Δ log p| between them:

- ``packed scoring``: answers packed behind their prompt vs one forward per prompt+answer;
- ``cached continuation``: a prompt run once, its cache forked row by row and continued over
  two steps vs a forward of the whole sequence;
- ``staggered patch entry``: the residual patch sweep (segments entering at their own layer)
  vs one hooked forward per prompt, variant and answer;
- ``batched head patching``: per-head ``z`` patches, all variants in one continuation vs one
  hooked forward per variant;
- ``deletion rows``: prompts with tokens deleted, continued from the cache vs rebuilt;
- ``beam search``: the beam's score of every complete answer it returns vs a forward of the
  prompt and that answer's tokens;
- ``tasks solved``: one packed forward per prompt feeding the scores and the beam (caches of
  several forwards stacked) vs the three passes (score, search, score the candidates): the
  answers' log-probs, and the solved flags, which must be equal.

:func:`run_checks` gives one :class:`Check` per path; ``tslens doctor`` prints them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

TOLERANCE = 1e-4  # float32 forwards of tiny models agree to ~1e-6; real ones to ~1e-5


@dataclass
class Check:
    """One fast path on one model: its largest |Δ log p| against the reference."""

    model: str
    path: str
    max_delta: float
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.max_delta <= TOLERANCE

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        delta = "n/a" if self.error else f"{self.max_delta:.1e}"
        tail = f"  {self.error}" if self.error else ""
        return f"{status} {self.model:<18} {self.path:<22} max |Δ log p| {delta:>8}  " \
               f"({self.seconds:.1f} s){tail}"  # fmt: skip


def _prompts(model, n_prompts: int):
    from tslens.prompts import build_mixture_prompts
    from tslens.sources.loader import default_tasks
    from tslens.tasks import resolve_tasks

    tasks = resolve_tasks(default_tasks(getattr(model, "tslens_name", None)) or "plus2,plus5")
    prompts = build_mixture_prompts(tasks, None, n_prompts, 6, seed=0, template="spaced")
    return [p.text for p in prompts], [list(p.answers) for p in prompts]


def _delta(fast, slow) -> float:
    """max |fast - slow| over entries finite in both (and inf if only one is finite)."""
    fast, slow = (
        torch.as_tensor(fast, dtype=torch.float64),
        torch.as_tensor(slow, dtype=torch.float64),
    )
    both = torch.isfinite(fast) & torch.isfinite(slow)
    if not torch.equal(torch.isfinite(fast), torch.isfinite(slow)):
        return math.inf
    return float((fast - slow)[both].abs().max()) if both.any() else 0.0


@torch.inference_mode()
def check_scoring(model, texts, answers) -> float:
    from tslens._reference import answer_logprobs_naive
    from tslens.engine.scoring import answer_logprobs

    return _delta(answer_logprobs(model, texts, answers, batch_size=2),
                  answer_logprobs_naive(model, texts, answers))  # fmt: skip


@torch.inference_mode()
def check_continuation(model, texts, answers) -> float:
    from tslens.engine.continuation import continue_prefix, fork, left_pad, run_prefix
    from tslens.engine.lens import as_lens
    from tslens.engine.scoring import prompt_token_ids

    ids = prompt_token_ids(model, texts)
    batch = left_pad(ids, as_lens(model).pad_id, model.cfg.device)
    first, cache = run_prefix(model, batch)
    rows = torch.arange(len(ids), device=batch.ids.device).repeat_interleave(2)  # forked rows
    steps = torch.tensor([[5, 6], [7, 8]], device=batch.ids.device).repeat(len(ids), 1)
    row_cache = fork(cache, rows)
    one = continue_prefix(model, row_cache, batch, rows, steps[:, :1])
    two = continue_prefix(model, row_cache, batch, rows, steps[:, 1:], offset=1)
    again = continue_prefix(model, fork(cache, rows), batch, rows, steps)  # the cache is intact
    worst = 0.0
    for r, p in enumerate(rows.tolist()):
        full = torch.tensor([ids[p] + steps[r].tolist()], device=batch.ids.device)
        plain = torch.log_softmax(model(full)[0, -3:].float(), -1)
        fast = torch.stack([first[p], one[r, 0], two[r, 0]])
        worst = max(worst, _delta(fast, plain), _delta(again[r], plain[1:]))
    return worst


def _patch_inputs(model, n_variants: int):
    layers = torch.arange(-1, model.cfg.n_layers).repeat(2)[:n_variants]
    generator = torch.Generator().manual_seed(1)
    return layers, 3 * torch.randn(len(layers), model.cfg.d_model, generator=generator)


@torch.inference_mode()
def check_patch_entry(model, texts, answers) -> float:
    from tslens._reference import patched_answer_logprobs_naive
    from tslens.engine.patching import patched_answer_logprobs

    layers, vectors = _patch_inputs(model, model.cfg.n_layers + 2)
    fast = patched_answer_logprobs(model, texts, answers, layers, vectors)
    return _delta(fast, patched_answer_logprobs_naive(model, texts, answers, layers, vectors))


@torch.inference_mode()
def check_head_patching(model, texts, answers) -> float:
    from tslens._reference import patched_answer_logprobs_loop
    from tslens.engine.patching import patched_answer_logprobs

    cfg = model.cfg
    variants = [(layer, head) for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]
    variants = variants[:: max(1, len(variants) // 6)]
    layers = torch.tensor([layer for layer, _ in variants])
    heads = torch.tensor([head for _, head in variants])
    generator = torch.Generator().manual_seed(2)
    vectors = torch.randn(len(texts), len(variants), cfg.d_head, generator=generator)
    args = (model, texts, answers, layers, 3 * vectors)
    fast = patched_answer_logprobs(*args, kind="z", heads=heads, per_prompt=True, batch_size=2)
    slow = patched_answer_logprobs_loop(*args, kind="z", heads=heads, per_prompt=True)
    return _delta(fast, slow)


@torch.inference_mode()
def check_deletions(model, texts, answers) -> float:
    from tslens._reference import plain_answer_logprob
    from tslens.analyses.prompt.demonstrations import delete_tokens, deletion_logprobs
    from tslens.engine.lens import as_lens
    from tslens.engine.scoring import prompt_token_ids
    from tslens.engine.tokens import answer_token_ids

    ids = prompt_token_ids(model, texts)
    answer_ids = answer_token_ids(as_lens(model), texts, answers, ids)
    deletions = [[[3, 4, 5], [len(p) // 2], list(range(len(p) - 4, len(p) - 1))] for p in ids]
    fast = deletion_logprobs(model, ids, deletions, answer_ids)
    worst = 0.0
    for p, (p_ids, rows) in enumerate(zip(ids, deletions, strict=True)):
        for v, deleted in enumerate([[], *rows]):
            kept = delete_tokens(p_ids, deleted)
            slow = [plain_answer_logprob(model, kept, a) for a in answer_ids[p]]
            worst = max(worst, _delta(fast[p, v], slow))
    return worst


@torch.inference_mode()
def check_beam(model, texts, answers) -> float:
    from tslens._reference import plain_answer_logprob
    from tslens.engine.scoring import prompt_token_ids
    from tslens.engine.search import beam_search

    ids = prompt_token_ids(model, texts)
    found = beam_search(model, texts, width=4, max_new_tokens=3, finish_at_max=True)
    fast, slow = [], []
    for p_ids, completions in zip(ids, found, strict=True):
        for completion in completions:
            fast.append(completion.logprob)
            slow.append(plain_answer_logprob(model, p_ids, list(completion.tokens)))
    return _delta(fast, slow) if fast else math.inf


@torch.inference_mode()
def check_solved(model, texts, answers) -> float:
    from tslens._reference import answer_logprobs_naive
    from tslens.analyses.prompt.mixture import tasks_solved
    from tslens.analyses.prompt.solved import score_and_solve

    slow = answer_logprobs_naive(model, texts, answers)
    worst = 0.0
    for mode in ("stop", "length"):
        fast, _, solved = score_and_solve(model, texts, answers, batch_size=len(texts),
                                          complete_by=mode, forward_batch=1)  # fmt: skip
        if not torch.equal(solved, tasks_solved(model, texts, answers, slow, complete_by=mode)):
            return math.inf
        worst = max(worst, _delta(fast.flatten().tolist(), slow.flatten().tolist()))
    return worst


CHECKS: dict[str, Callable] = {
    "packed scoring": check_scoring,
    "cached continuation": check_continuation,
    "staggered patch entry": check_patch_entry,
    "batched head patching": check_head_patching,
    "deletion rows": check_deletions,
    "beam search": check_beam,
    "tasks solved": check_solved,
}


def run_checks(model, name: str, n_prompts: int = 3, paths=None) -> list[Check]:
    """Run every check (or those named in ``paths``) on ``model``; a check that raises is a
    failed :class:`Check` whose ``error`` is the exception's first line."""
    texts, answers = _prompts(model, n_prompts)
    out = []
    for path, check in CHECKS.items():
        if paths is not None and path not in paths:
            continue
        start = time.perf_counter()
        try:
            delta, error = check(model, texts, answers), None
        except Exception as err:  # noqa: BLE001 - a broken fast path is reported, not raised
            delta, error = math.inf, f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
        out.append(Check(name, path, delta, time.perf_counter() - start, error))
    return out
