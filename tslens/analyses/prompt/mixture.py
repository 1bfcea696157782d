"""The paper's first experiment: how much probability a model puts on each task's answer when
the in-context examples mix K tasks (Xiong et al. 2024, Fig. 1-2, calibration in Sec. 7).

Definitions (per prompt, then averaged over prompts):
- ``probs[k]`` = P(answer_k | prompt) by the chain rule (:mod:`tslens.engine.scoring`);
- ``other`` = 1 - sum_k probs[k];
- ``normalized[k]`` = probs[k] / sum_j probs[j];
- ``kl`` = sum_k p_k log(p_k / probs[k]) with p the prompt's in-context task proportions and the
  model's *unnormalised* answer probabilities (the paper's calibration metric), per prompt;
- ``kl_of_means``: the same between the mean proportions and the mean probabilities, i.e.
  calibration of the population (a model that follows one task per prompt, in the right
  proportions, is calibrated here but not per prompt);
- ``solved[k]``: answer k is among the K most likely complete answers (beam search up to a
  newline, :mod:`tslens.engine.search`), i.e. P(answer_k) >= p_K; :func:`measure_mixture`
  computes it over one forward of each prompt (:mod:`tslens.analyses.prompt.solved`),
  :func:`tasks_solved` is the same definition computed in three plain passes. A model that
  does not end its answers with the newline (the embedded character models were trained with
  loss on answers only) has no complete answers in that sense; for it the candidates are the
  continuations of the answers' token length (``complete_by="length"``, chosen automatically
  when the model's mean P(newline | prompt + answer) is below one half).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from tslens.analyses.prompt.solved import (
    longest_answer_tokens,
    mean_stop_probability,
    score_and_solve,
)
from tslens.engine.scoring import answer_logprobs
from tslens.engine.search import beam_complete_answers
from tslens.prompts import MixturePrompt, build_mixture_prompts, parse_weights
from tslens.tasks import Task, resolve_tasks


@dataclass
class MixtureResult:
    """Answer probabilities of K tasks over mixture prompts (see the module docstring)."""

    model: str
    tasks: list[str]
    weights: list[float]
    prompts: list[MixturePrompt]
    probs: Float[Tensor, "prompt k"]
    solved: Bool[Tensor, "prompt k"] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def proportions(self) -> Float[Tensor, "prompt k"]:
        """Each prompt's in-context task proportions (share of demonstrations per task)."""
        k = len(self.tasks)
        counts = torch.stack(
            [torch.bincount(torch.tensor(p.demo_tasks), minlength=k) for p in self.prompts]
        ).double()
        return counts / counts.sum(-1, keepdim=True)

    @property
    def other(self) -> Float[Tensor, " prompt"]:
        return 1.0 - self.probs.sum(-1)

    @property
    def normalized(self) -> Float[Tensor, "prompt k"]:
        return self.probs / self.probs.sum(-1, keepdim=True).clamp_min(1e-300)

    @property
    def kl(self) -> Float[Tensor, " prompt"]:
        """KL(in-context proportions || answer probabilities) per prompt, in nats."""
        return _kl(self.proportions, self.probs)

    def all_answers_share(self, threshold: float = 0.1) -> float:
        """Share of prompts whose every task answer has P >= ``threshold``: superposition
        *within* a prompt, which a model following one task per prompt never shows."""
        return (self.probs.min(-1).values >= threshold).double().mean().item()

    def last_demo_gap(self, task: int | None = None) -> float:
        """P(answer k | the last demonstration is task k) - P(answer k | it is another task),
        for ``task`` k, or averaged over the tasks where both groups exist (NaN if none): near
        0 when the model reads every demonstration, near 1 when it follows the last one."""
        last = torch.tensor([p.demo_tasks[-1] for p in self.prompts])
        gaps = []
        for k in range(len(self.tasks)) if task is None else [task]:
            hit = last == k
            if hit.any() and not hit.all():
                gaps.append(self.probs[hit, k].mean() - self.probs[~hit, k].mean())
        return torch.stack(gaps).mean().item() if gaps else float("nan")

    def summary(self) -> dict[str, Any]:
        """Means over prompts: ``mean_probs``, ``other``, ``normalized``, ``kl``,
        ``kl_of_means``, ``all_answers_share``, ``last_demo_gap`` and ``solved``."""
        gap = self.last_demo_gap()
        out: dict[str, Any] = {
            "mean_probs": self.probs.mean(0).tolist(),
            "other": self.other.mean().item(),
            "normalized": self.normalized.mean(0).tolist(),
            "kl": self.kl.mean().item(),
            "kl_of_means": _kl(self.proportions.mean(0), self.probs.mean(0)).item(),
            "all_answers_share": self.all_answers_share(),
            "last_demo_gap": None if gap != gap else gap,  # NaN is not JSON
        }
        if self.solved is not None:
            out["solved"] = self.solved.double().mean(0).tolist()
            out["mean_tasks_solved"] = self.solved.sum(-1).double().mean().item()
        return out

    def to_json(self) -> dict[str, Any]:
        """Everything, as plain JSON types (``probs.json`` of ``tslens probs``)."""
        per_prompt = []
        for i, prompt in enumerate(self.prompts):
            row = {
                "prompt": prompt.text,
                "answers": list(prompt.answers),
                "probs": self.probs[i].tolist(),
                "other": self.other[i].item(),
            }
            if self.solved is not None:
                row["solved"] = self.solved[i].tolist()
            per_prompt.append(row)
        return {
            "model": self.model,
            "tasks": self.tasks,
            "weights": self.weights,
            "n_prompts": len(self.prompts),
            **self.settings,
            **self.summary(),
            "per_prompt": per_prompt,
        }


def _kl(p: Float[Tensor, "... k"], q: Float[Tensor, "... k"]) -> Tensor:
    """sum_k p_k log(p_k / q_k), with 0 log 0 = 0 and q floored at 1e-300."""
    return torch.where(p > 0, p * (p.clamp_min(1e-300) / q.clamp_min(1e-300)).log(), 0.0).sum(-1)


def tasks_solved(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    answer_logps: Float[Tensor, "prompt k"],
    width: int | None = None,
    batch_size: int | None = None,
    complete_by: str = "stop",
    progress: bool = False,
) -> Bool[Tensor, "prompt k"]:
    """Whether each answer is among the K most likely complete answers of its prompt.

    Complete answers are found by beam search (``width`` beams, default 2K) and scored with the
    same exact scorer as the task answers; the task answers themselves are complete answers
    too, so they join the candidates. p_K is the K-th highest candidate probability.
    ``complete_by="length"`` also counts continuations as long as the longest answer (for
    models that never end an answer; see :func:`stop_probability`).
    """
    k = answer_logps.shape[1]
    longest = longest_answer_tokens(model, answers)
    found = beam_complete_answers(
        model,
        prompts,
        width=width or 2 * k,
        batch_size=batch_size,
        max_new_tokens=longest if complete_by == "length" else max(8, longest + 2),
        finish_at_max=complete_by == "length",
        progress=progress,
    )
    extra = [[c for c in cands if c not in ans] for cands, ans in zip(found, answers, strict=True)]
    extra_logps = answer_logprobs(model, prompts, extra, batch_size=batch_size, boundary="drop")
    everything = torch.cat([answer_logps, extra_logps], dim=1)
    kth = everything.topk(k, dim=1).values[:, -1:]
    return answer_logps >= kth


def stop_probability(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    stop: str = "\n",
    batch_size: int | None = None,
) -> float:
    """Mean over prompts and answers of P(stop | prompt + answer): whether the model ends its
    answers, which decides how complete answers are found (:func:`tasks_solved`)."""
    with_stop = [[a + stop for a in ans] for ans in answers]
    plain = answer_logprobs(model, prompts, answers, batch_size, boundary="drop")
    ended = answer_logprobs(model, prompts, with_stop, batch_size, boundary="drop")
    return mean_stop_probability(plain, ended)


def complete_by(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    batch_size: int | None = None,
) -> str:
    """``"stop"`` when the model ends these answers with the newline (mean
    :func:`stop_probability` at least 1/2), else ``"length"``: complete answers are then the
    continuations as long as the answers."""
    return (
        "stop"
        if stop_probability(model, prompts, answers, batch_size=batch_size) >= 0.5
        else "length"
    )


def measure_mixture(
    model,
    tasks: str | Sequence[str] | Sequence[Task],
    weights: str | Sequence[float] | None = None,
    n_prompts: int = 100,
    n_examples: int = 60,
    seed: int = 0,
    template: str | None = None,
    sampling: str = "exact",
    batch_size: int | None = None,
    solved: bool = True,
    beam_width: int | None = None,
    progress: bool = False,
    prompts: Sequence[MixturePrompt] | None = None,
) -> MixtureResult:
    """Build mixture prompts of ``tasks`` and measure each task's answer probability.

    Args:
        model: a ``TransformerBridge`` (:func:`tslens.sources.loader.load_model`).
        tasks: task names (``"capital,continent"``), a list of names, or :class:`Task` objects.
        weights: share of demonstrations per task (``"1/3,2/3"``); default uniform.
        n_prompts, n_examples, seed, template, sampling: see
            :func:`tslens.prompts.build_mixture_prompts`.
        batch_size: prompts per forward pass (default: device-dependent).
        solved: also compute top-K membership by beam search ("tasks solved").
        beam_width: beams for ``solved`` (default 2K).
        progress: show progress bars.
        prompts: measure these prompts (e.g. a preset's, :mod:`tslens.presets`) instead of
            building them; the prompt settings then only label the result.

    Returns:
        A :class:`MixtureResult`.
    """
    task_list = resolve_tasks(tasks)
    w = parse_weights(weights, len(task_list))
    if prompts is None:
        prompts = build_mixture_prompts(task_list, w, n_prompts, n_examples, seed, template,
                                        sampling)  # fmt: skip
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    names = [t.name for t in task_list]
    ends_by = solved_mask = None
    if solved:  # the answers, the beam search and its candidates over one forward of each prompt
        logps, ends_by, solved_mask = score_and_solve(model, texts, answers, names, beam_width,
                                                      batch_size, progress)  # fmt: skip
    else:
        logps = answer_logprobs(model, texts, answers, batch_size, labels=names,
                                progress=progress)  # fmt: skip
    return MixtureResult(
        model=getattr(model, "tslens_name", type(model).__name__),
        tasks=names,
        weights=w,
        prompts=prompts,
        probs=logps.exp(),
        solved=solved_mask,
        settings={
            "n_examples": n_examples,
            "seed": seed,
            "template": template or "default",
            "sampling": sampling,
            "complete_by": ends_by,
        },
    )
