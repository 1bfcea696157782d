"""Generation collapse (the paper's stated limitation, Xiong et al. 2024, Sec. 8): before the
first generated token a mixture prompt spreads probability over every task's answer, but one
generation can only complete one of them.

Measured on mixture prompts, per task k (answer a_k = tokens a_k1 .. a_kn):

- ``step1_mass[k]``: P(a_k | prompt), the whole answer's probability before decoding starts
  (chain rule); ``first_token_mass[k]``: P(a_k1 | prompt);
- ``completed``: the share of decodes that end with exactly a_k (else ``other``, or
  ``unfinished`` when no stop came within the token budget), for greedy decoding and for
  ``n_samples`` ancestral samples per prompt. Greedy completes one task per prompt by
  construction; the sampled shares are unbiased estimates of ``step1_mass`` at temperature 1,
  so the gap between them measures the sampler, not the model;
- ``tasks_per_prompt``: distinct task answers completed per prompt (1 greedy decode; all
  samples) - what a user of plain decoding recovers of the superposition;
- ``conditional[k][t]``: mean P(a_k,t+1 | prompt, a_k1..a_kt), the probability that a decode
  that has followed task k for t tokens continues to follow it; ``consistent[k][t]``: mean
  P(a_k1..a_k,t+1 | prompt), the probability that a sample is still consistent with task k
  after t+1 tokens (exact, no sampling); ``followed[k][t] = consistent[k][t] /
  consistent[k][t-1]``: the same continuation probability weighted by how often samples reach
  that prefix (``conditional`` weighs every prompt alike, including prompts that almost never
  start task k). Collapse shows as ``followed`` near 1 after the first token: once a task is
  started it is finished; ``continue_after_first`` is its mean over tasks and later tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tslens.engine.decoders import sample_complete_answers
from tslens.engine.scoring import answer_token_logprobs
from tslens.prompts import MixturePrompt, build_mixture_prompts, parse_weights
from tslens.tasks import Task, resolve_tasks

OTHER, UNFINISHED = -1, -2  # completed-task codes besides 0..K-1


@dataclass
class CollapseResult:
    """Exact per-token answer probabilities and decoded outcomes (see the module docstring)."""

    tasks: list[str]
    prompts: list[MixturePrompt]
    token_logprobs: list[list[Float[Tensor, " _token"]]]  # [prompt][task] per-token log P
    greedy: Int[Tensor, " prompt"]  # completed task index, OTHER or UNFINISHED
    sampled: Int[Tensor, "prompt sample"]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def step1_mass(self) -> Float[Tensor, "prompt k"]:
        return torch.tensor([[lp.sum().exp().item() for lp in row] for row in self.token_logprobs])

    @property
    def first_token_mass(self) -> Float[Tensor, "prompt k"]:
        return torch.tensor([[lp[0].exp().item() for lp in row] for row in self.token_logprobs])

    def per_step(self, k: int) -> tuple[list[float], list[float]]:
        """``(conditional, consistent)`` of task ``k`` per answer token (module docstring),
        averaged over the prompts whose answer has that many tokens."""
        longest = max(len(row[k]) for row in self.token_logprobs)
        conditional, consistent = [], []
        for t in range(longest):
            rows = [row[k] for row in self.token_logprobs if len(row[k]) > t]
            conditional.append(torch.stack([r[t] for r in rows]).exp().mean().item())
            consistent.append(torch.stack([r[: t + 1].sum() for r in rows]).exp().mean().item())
        return conditional, consistent

    def summary(self) -> dict[str, Any]:
        k = len(self.tasks)
        out: dict[str, Any] = {
            "step1_mass": self.step1_mass.mean(0).tolist(),
            "first_token_mass": self.first_token_mass.mean(0).tolist(),
        }
        for name, codes in (("greedy", self.greedy[:, None]), ("sampled", self.sampled)):
            flat = codes.flatten()
            out[f"completed_{name}"] = {
                **{task: (flat == i).double().mean().item() for i, task in enumerate(self.tasks)},
                "other": (flat == OTHER).double().mean().item(),
                "unfinished": (flat == UNFINISHED).double().mean().item(),
            }
            hits = torch.stack([(codes == i).any(-1) for i in range(k)], -1)  # [prompt, k]
            out[f"tasks_per_prompt_{name}"] = hits.sum(-1).double().mean().item()
        steps = [self.per_step(i) for i in range(k)]
        out["conditional"] = {t: s[0] for t, s in zip(self.tasks, steps, strict=True)}
        out["consistent"] = {t: s[1] for t, s in zip(self.tasks, steps, strict=True)}
        followed = {
            t: [s[1][0]] + [b / a if a > 0 else 0.0 for a, b in zip(s[1], s[1][1:], strict=False)]
            for t, s in zip(self.tasks, steps, strict=True)
        }
        out["followed"] = followed
        later = [c for s in steps for c in s[0][1:]]
        out["conditional_after_first"] = sum(later) / len(later) if later else None
        later = [c for f in followed.values() for c in f[1:]]
        out["continue_after_first"] = sum(later) / len(later) if later else None
        return out

    def to_json(self) -> dict[str, Any]:
        names = {OTHER: "other", UNFINISHED: "unfinished", **dict(enumerate(self.tasks))}
        mass = self.step1_mass
        return {
            "tasks": self.tasks,
            **self.settings,
            **self.summary(),
            "per_prompt": [
                {
                    "answers": list(p.answers),
                    "step1_mass": mass[i].tolist(),
                    "greedy": names[int(self.greedy[i])],
                    "sampled": [names[int(c)] for c in self.sampled[i]],
                }
                for i, p in enumerate(self.prompts)
            ],
        }


def completed_task(text: str | None, answers: Sequence[str]) -> int:
    """Index of the answer ``text`` equals, else :data:`OTHER` (:data:`UNFINISHED` for None)."""
    if text is None:
        return UNFINISHED
    return answers.index(text) if text in answers else OTHER


def generation_collapse(
    model,
    tasks: str | Sequence[str] | Sequence[Task],
    weights: str | Sequence[float] | None = None,
    n_prompts: int = 50,
    n_examples: int = 20,
    seed: int = 0,
    template: str | None = None,
    n_samples: int = 20,
    temperature: float = 1.0,
    max_new_tokens: int | None = None,
    finish_at_max: bool = False,
    stop: str = "\n",
    batch_size: int | None = None,
) -> CollapseResult:
    """Decode mixture prompts greedily and by sampling, and score every task's answer token by
    token (see the module docstring).

    Args:
        model: a ``TransformerBridge``.
        tasks, weights, n_prompts, n_examples, seed, template: the mixture prompts
            (:func:`tslens.prompts.build_mixture_prompts`).
        n_samples, temperature: ancestral samples per prompt (seeded by ``seed``).
        max_new_tokens: decoding budget (default: the longest answer's tokens + 4).
        finish_at_max: count a decode that reaches ``max_new_tokens`` as complete (for models
            never trained to end an answer; then set ``max_new_tokens`` to the answer length).
        stop: the string that ends an answer.

    Returns:
        A :class:`CollapseResult`.
    """
    task_list = resolve_tasks(tasks)
    w = parse_weights(weights, len(task_list))
    prompts = build_mixture_prompts(task_list, w, n_prompts, n_examples, seed, template)
    texts, answers = [p.text for p in prompts], [list(p.answers) for p in prompts]
    token_lps = answer_token_logprobs(model, texts, answers, batch_size)
    budget = max_new_tokens or max(len(t) for row in token_lps for t in row) + 4
    common = dict(max_new_tokens=budget, stop=stop, batch_size=batch_size,
                  finish_at_max=finish_at_max)  # fmt: skip
    # one result per prompt in prompt order, so zip(..., answers) below pairs them exactly
    greedy = sample_complete_answers(model, texts, 1, 0.0, **common)
    sampled = sample_complete_answers(model, texts, n_samples, temperature, seed=seed, **common)
    return CollapseResult(
        tasks=[t.name for t in task_list],
        prompts=prompts,
        token_logprobs=token_lps,
        greedy=torch.tensor(
            [completed_task(g[0][0], a) for g, a in zip(greedy, answers, strict=True)]
        ),
        sampled=torch.tensor(
            [
                [completed_task(text, a) for text, _ in s]
                for s, a in zip(sampled, answers, strict=True)
            ]
        ),
        settings={
            "weights": w,
            "n_prompts": n_prompts,
            "n_examples": n_examples,
            "seed": seed,
            "n_samples": n_samples,
            "temperature": temperature,
            "max_new_tokens": budget,
            "finish_at_max": finish_at_max,
        },
    )
