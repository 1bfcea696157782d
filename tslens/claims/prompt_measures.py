"""Prompt-level measurements (Xiong et al. Fig. 2, Findings 1-2, the rebuttal's (a)-(c),
generation collapse, Wang et al.): each runs the analyses on one seed's prompts and returns
their per-prompt data as a :class:`~tslens.claims.intervals.Sample`; the statistics are
functions of that data, so every one gets a bootstrap interval over prompts.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from tslens.analyses.prompt.collapse import generation_collapse
from tslens.analyses.prompt.curves import task_hits
from tslens.analyses.prompt.demonstrations import demonstration_effects
from tslens.analyses.prompt.mixture import complete_by, measure_mixture
from tslens.analyses.prompt.solved import longest_answer_tokens
from tslens.claims.intervals import Data, Sample, nan_mean
from tslens.claims.registry import Measurement
from tslens.claims.setting import Setting
from tslens.engine.batching import status
from tslens.engine.scoring import answer_logprobs
from tslens.engine.search import beam_search
from tslens.presets import get_preset
from tslens.prompts import MixturePrompt, PromptSpec
from tslens.tasks import resolve_tasks

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
BOTH = 0.1  # "substantial probability" on an answer (the paper's plots' scale)


def _mixture_prompts(
    s: Setting, m: Measurement, seed: int
) -> tuple[list[str], PromptSpec, list[MixturePrompt]]:
    """The task names, prompt settings and mixture prompts of one seed (a preset's own
    seed is shifted by the same offset)."""
    if "preset" in m.options:
        preset = get_preset(m.options["preset"])
        spec = preset.spec(s.per_seed(m), seed=preset.seed + seed - s.seed)
        return list(preset.tasks), spec, preset.prompts(spec)
    names, spec = s.tasks(m), s.spec(m, seed)
    return names, spec, spec.mixture(resolve_tasks(names))


def _single_task_hits(s: Setting, m: Measurement, seed: int) -> dict[str, torch.Tensor]:
    """``{task: hits[prompt]}`` on one seed's single-task prompts, measured once per run."""
    key = ("single_task_hits", m.name, seed)
    if key not in s.memo:
        names, spec, _ = _mixture_prompts(s, m, seed)
        status(f"{m.name}: single-task accuracy (seed {spec.seed})")
        s.memo[key] = task_hits(s.lens, names, spec.n_prompts, spec.n_examples, spec.seed,
                                spec.template, s.batch_size)  # fmt: skip
    return s.memo[key]


def mixture(s: Setting, m: Measurement, seed: int) -> Sample:
    """Equal-weight mixture prompts (a preset's, or ``$pair``'s): each task's exact P, the
    model's most likely complete answers by beam search (scored exactly), and single-task
    accuracy on single-task prompts of each task. Serves Fig. 2, Finding 1 and the
    rebuttal's (b) and (c).

    The beam search runs only when every task's accuracy alone, pooled over *all* seeds'
    single-task prompts (the same pooled accuracy the claims' gates read), reaches
    ``search_if_accuracy``: decided once for the run, never seed by seed (a 7-prompt seed
    can fall below the floor by chance and would leave the pooled statistic NaN)."""
    names, spec, prompts = _mixture_prompts(s, m, seed)
    hits = _single_task_hits(s, m, seed)
    every_seed = [_single_task_hits(s, m, other) for other in s.seeds]
    accuracy = {n: float(torch.cat([h[n] for h in every_seed]).double().mean()) for n in names}
    texts, answers = [p.text for p in prompts], [list(p.answers) for p in prompts]
    probs = answer_logprobs(s.lens, texts, answers, s.batch_size, labels=names,
                            progress=s.progress).exp().double().numpy()  # fmt: skip
    k = len(names)
    floor = float(m.options.get("search_if_accuracy", 0.0))
    searched = min(accuracy.values()) >= floor  # the beam search is the costly part
    found = _candidates(s, texts, answers) if searched else [{} for _ in texts]
    ranks = np.array([[sum(o > probs[i, j] for o in found[i].values())
                       + int((probs[i] > probs[i, j]).sum()) for j in range(k)]
                      for i in range(len(prompts))])  # fmt: skip
    best = np.array([max(f.values(), default=0.0) for f in found])
    topk = (ranks < k).astype(float)
    if not searched:
        topk, best = np.full_like(topk, math.nan), np.full_like(best, math.nan)
    data: Data = {"mixture": {"probs": probs, "topk": topk, "best": best,
                              "last": np.array([p.demo_tasks[-1] for p in prompts])}}  # fmt: skip
    for j, name in enumerate(names):
        data[f"single{j}"] = {"hits": hits[name].double().numpy()}
    written = [{a.strip().casefold() for a in p.answers} for p in prompts]
    variants = [sum(v for c, v in f.items() if c.strip().casefold() in w) for f, w in
                zip(found, written, strict=True)]  # fmt: skip
    detail = {"tasks": names, "accuracy": accuracy, "mean_p": probs.mean(0).tolist(),
              "other": float(1 - probs.sum(-1).mean()),
              "other_as_variants": float(np.mean(variants) / max(1 - probs.sum(-1).mean(), 1e-12)),
              "top_nontask_by_prompt": [[max(f, key=f.get), max(f.values())] if f else
                                        [None, 0.0] for f in found]}  # fmt: skip
    reasons = {"last_demo_gap": "no task is the last demonstration on some prompts and not on "
               "others"}  # fmt: skip
    if not searched:
        why = (
            f"no beam search: a task's accuracy alone (pooled over the seeds) is below {floor} "
            "(search_if_accuracy)"
        )
        reasons.update(
            dict.fromkeys(("solved_fraction", "top_nontask_over_task", "superposition_cost"), why)
        )
    return Sample(data, _mixture_statistics, reasons, detail)


def _mixture_statistics(d: Data) -> dict[str, float]:
    mix = d["mixture"]
    probs, topk, last = mix["probs"], mix["topk"], mix["last"]
    k = probs.shape[1]
    accuracy = np.array([d[f"single{j}"]["hits"].mean() for j in range(k)])
    gaps = [probs[last == j, j].mean() - probs[last != j, j].mean()
            for j in range(k) if (last == j).any() and (last != j).any()]  # fmt: skip
    ratio = mix["best"] / np.maximum(probs.mean(-1), 1e-12)
    return {
        "solved_fraction": float(topk.mean()),
        "all_answers_share": float((probs >= BOTH).all(-1).mean()),
        "last_demo_gap": float(np.mean(gaps)) if gaps else math.nan,
        "top_nontask_over_task": float(np.median(ratio)),
        "superposition_cost": float((accuracy - topk.mean(0)).mean()),
        "min_accuracy": float(accuracy.min()),
        "mean_accuracy": float(accuracy.mean()),
    }


def _candidates(s: Setting, texts: list[str], answers: list[list[str]]) -> list[dict[str, float]]:
    """Per prompt: every complete answer the beam found that is no task's answer, with its
    exact probability."""
    k = len(answers[0])
    mode = complete_by(s.lens, texts, answers, s.batch_size)
    longest = longest_answer_tokens(s.lens, answers)
    beams = beam_search(s.lens, texts, width=max(8, 2 * k),
                        max_new_tokens=longest if mode == "length" else max(8, longest + 2),
                        batch_size=s.batch_size, finish_at_max=mode == "length",
                        progress=s.progress)  # fmt: skip
    pairs = zip(beams, answers, strict=True)
    extra = [[c.text for c in row if c.text not in ans] for row, ans in pairs]
    if not any(extra):
        return [{} for _ in texts]
    p = answer_logprobs(s.lens, texts, extra, s.batch_size, boundary="drop").exp()
    return [{c: float(p[i, j]) for j, c in enumerate(row) if p[i, j] > 0}
            for i, row in enumerate(extra)]  # fmt: skip


def curve(s: Setting, m: Measurement, seed: int) -> Sample:
    """P of a task pair's answers as the share of task 0 goes 0 -> 1, prompt by prompt
    (Finding 2, rebuttal a)."""
    spec, pair = s.spec(m, seed), resolve_tasks(s.tasks(m))
    data: Data = {}
    for i, share in enumerate(SHARES):
        got = measure_mixture(s.lens, pair, [share, 1 - share], spec.n_prompts,
                              spec.n_examples, spec.seed, spec.template,
                              batch_size=s.batch_size, solved=False,
                              progress=s.progress)  # fmt: skip
        data[f"share{i}"] = {"probs": got.probs.double().numpy()}
    return Sample(data, _curve_statistics, detail={"shares": list(SHARES)}, describe=_curve_detail)


def _curve_detail(d: Data) -> dict[str, list[float]]:
    """Mean P of each task's answer per share (the figure)."""
    probs = [d[f"share{i}"]["probs"].mean(0) for i in range(len(SHARES))]
    return {"p_task0": [float(p[0]) for p in probs], "p_task1": [float(p[1]) for p in probs]}


def _curve_statistics(d: Data) -> dict[str, float]:
    probs = [d[f"share{i}"]["probs"] for i in range(len(SHARES))]  # each [prompt, 2]
    p0 = [float(p[:, 0].mean()) for p in probs]
    inner = [i for i, share in enumerate(SHARES) if 0 < share < 1]
    absent = (probs[0][:, 0].mean() + probs[-1][:, 1].mean()) / 2  # no demonstration of it
    present = probs[SHARES.index(0.5)].mean()
    return {
        "max_deviation": max(abs(p0[i] - SHARES[i]) for i in inner),
        "within_prompt_deviation": max(
            float(np.abs(probs[i][:, 0] - SHARES[i]).mean()) for i in inner
        ),
        "monotone_steps": float(np.mean([b > a for a, b in zip(p0, p0[1:], strict=False)])),
        "absent_over_present": float(absent / present) if present > 0 else math.nan,
        "present_p": float(present),
    }


def collapse(s: Setting, m: Measurement, seed: int) -> Sample:
    """Exact per-token answer probabilities and sampled decodes of mixture prompts
    (the paper's "generation collapse")."""
    spec = s.spec(m, seed)
    got = generation_collapse(s.lens, s.tasks(m), None, spec.n_prompts, spec.n_examples,
                              spec.seed, spec.template, m.size("samples", s.quick) or 4,
                              batch_size=s.batch_size)  # fmt: skip
    k = len(got.tasks)
    longest = max(len(lp) for row in got.token_logprobs for lp in row)
    # [prompt, task, token]: P of the answer's first t+1 tokens, NaN past the answer's end
    prefix = np.full((len(got.prompts), k, longest), math.nan)
    for i, row in enumerate(got.token_logprobs):
        for j, lp in enumerate(row):
            prefix[i, j, : len(lp)] = lp.double().cumsum(0).exp().numpy()
    hits = np.stack([(got.sampled == j).any(-1).numpy() for j in range(k)], -1)
    data: Data = {"prompts": {"prefix": prefix, "tasks_sampled": hits.sum(-1).astype(float)}}
    reasons = {"continue_after_first": "every task's answer is one token here: no token "
               "follows the first"}  # fmt: skip
    return Sample(data, _collapse_statistics, reasons, {"tasks": got.tasks})


def _collapse_statistics(d: Data) -> dict[str, float]:
    prefix = d["prompts"]["prefix"]  # [prompt, task, token]
    later = []
    for j in range(prefix.shape[1]):
        mean = [nan_mean(prefix[:, j, t]) for t in range(prefix.shape[2])]
        later += [b / a for a, b in zip(mean, mean[1:], strict=False)
                  if a > 0 and not math.isnan(b)]  # fmt: skip
    return {"continue_after_first": float(np.mean(later)) if later else math.nan,
            "tasks_per_prompt_sampled": float(d["prompts"]["tasks_sampled"].mean())}  # fmt: skip


def demos(s: Setting, m: Measurement, seed: int) -> Sample:
    """Every demonstration deleted in turn and each task's all at once (Wang et al.)."""
    spec = s.spec(m, seed)
    got = demonstration_effects(s.lens, resolve_tasks(s.tasks(m)), spec.n_prompts,
                                spec.n_examples, spec.seed, spec.template, s.batch_size,
                                s.progress)  # fmt: skip
    k = len(got.tasks)
    own = (got.demo_tasks[..., None] == torch.arange(k)).double()  # [prompt, demo, k]
    singles = (got.effects() * own).sum(1).double().numpy()  # [prompt, k]
    data: Data = {"prompts": {"singles": singles, "group": got.group_effects().double().numpy()}}
    reasons = {"additivity": "deleting a task's demonstrations all at once changes nothing"}
    return Sample(data, _demos_statistics, reasons, {"nearest_share": got.nearest_share()})


def _demos_statistics(d: Data) -> dict[str, float]:
    singles, group = d["prompts"]["singles"].mean(0), d["prompts"]["group"].mean(0)
    ratios = [a / g for a, g in zip(singles, group, strict=True) if g != 0]
    return {"additivity": float(np.mean(ratios)) if ratios else math.nan}
