"""Which attention heads carry which task's answer: per task, per layer, per head.

Three attributions at the prompt's final position, each a score ``[task, layer, head]``:

- ``dla``: direct logit attribution of the head's output to the first token of each task's
  answer on K-task mixture prompts (:mod:`tslens.analyses.head.logit_attribution`).
- ``patch``: activation patching. Each head's ``z`` from the clean mixture prompt is patched
  into the same prompt with its demonstrations' labels shuffled; score = mean change of
  P(task answer) (exact, all answer tokens). All heads run as rows of one batch over the
  shared, cached prefix of the shuffled prompt.
- ``aie``: average indirect effect (Todd et al. 2024): the head's mean ``z`` over clean
  single-task prompts of task T, patched into shuffled-label prompts of T; score = mean change
  of P(T's answer). The top heads' mean outputs through ``W_O`` sum to T's function vector,
  which is then added to zero-shot queries at every layer.

``task_shares`` turns any score into each head's share of each task: which heads serve one
task and which serve several.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from einops import einsum, rearrange
from jaxtyping import Float, Int
from torch import Tensor

from tslens.analyses.head.logit_attribution import answer_first_tokens, direct_logit_attribution
from tslens.analyses.layer.task_vectors import prompt_vectors
from tslens.engine.capture import capture_activations
from tslens.engine.patching import patched_answer_logprobs
from tslens.engine.scoring import answer_logprobs
from tslens.errors import TslensError
from tslens.prompts import PromptSpec
from tslens.tasks import Task

METHODS = ("dla", "patch", "aie")


def check_methods(methods: Sequence[str]) -> list[str]:
    """The attribution methods, deduplicated; raise on an unknown one."""
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise TslensError(f"unknown method {bad[0] if bad else '(none)'!r}; use dla, patch, aie")
    return list(dict.fromkeys(methods))


def all_heads(model) -> tuple[Int[Tensor, " variant"], Int[Tensor, " variant"]]:
    """``(layers, heads)`` of every attention head, layer-major (variant ``l * H + h``)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    return torch.arange(n_layers).repeat_interleave(n_heads), torch.arange(n_heads).repeat(n_layers)


def per_head_effects(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    vectors: Float[Tensor, "layer head d_head"] | Float[Tensor, "prompt layer head d_head"],
    batch_size: int | None = None,
    progress: bool = False,
) -> tuple[Float[Tensor, "k layer head"], Float[Tensor, "prompt k"]]:
    """Patch each head's final-position ``z`` with its vector (one for all prompts, or one per
    prompt), every head in its own batch row over the shared prefix. Returns the mean change
    of each answer's probability per head and the unpatched probabilities."""
    layers, heads = all_heads(model)
    per_prompt = vectors.ndim == 4
    flat = vectors[:, layers, heads] if per_prompt else vectors[layers, heads]
    # variant 0 is the unpatched reference (layer -1)
    base = torch.zeros_like(flat[..., :1, :]) if per_prompt else torch.zeros_like(flat[:1])
    logprobs = patched_answer_logprobs(
        model, prompts, answers, torch.cat([torch.tensor([-1]), layers]),
        torch.cat([base, flat], dim=-2), kind="z", heads=torch.cat([torch.tensor([0]), heads]),
        per_prompt=per_prompt, batch_size=batch_size, progress=progress,
    )  # fmt: skip
    probs = logprobs.exp()
    delta = (probs[:, 1:] - probs[:, :1]).mean(0)  # [variant, k]
    return rearrange(delta, "(l h) k -> k l h", l=model.cfg.n_layers), probs[:, 0]


def final_z(model, texts: Sequence[str], batch_size=None) -> Float[Tensor, "prompt layer head d"]:
    """Every head's output z (before W_O) at each prompt's final position."""
    return capture_activations(model, texts, ("z",), batch_size=batch_size)["z"]


def function_vector(
    model, mean_z: Float[Tensor, "layer head d_head"], scores: Float[Tensor, "layer head"], n: int
) -> tuple[Float[Tensor, " d_model"], list[tuple[int, int]]]:
    """Todd et al.'s function vector: the sum of the ``n`` top-scoring heads' mean outputs,
    each through its ``W_O`` (float32, CPU); and those heads as ``(layer, head)``."""
    top = scores.flatten().topk(min(n, scores.numel())).indices
    chosen = [divmod(int(i), scores.shape[1]) for i in top]
    w_o = model.W_O.detach().float().cpu()
    outputs = [einsum(mean_z[lay, head], w_o[lay, head], "e, e d -> d") for lay, head in chosen]
    return torch.stack(outputs).sum(0), chosen


def top_heads(scores: Float[Tensor, "layer head"], n: int = 5) -> list[dict]:
    """The ``n`` highest-scoring heads as ``{"layer", "head", "score"}``, best first."""
    top = scores.flatten().topk(min(n, scores.numel()))
    n_heads = scores.shape[1]
    return [
        {"layer": int(i) // n_heads, "head": int(i) % n_heads, "score": float(v)}
        for v, i in zip(top.values, top.indices, strict=True)
    ]


def task_shares(
    scores: Float[Tensor, "k layer head"],
) -> tuple[Float[Tensor, "layer head k"], Float[Tensor, "layer head"]]:
    """Each head's share of each task: its positive score for the task over its positive
    scores summed over tasks (zeros for a head that helps no task), and the effective number
    of tasks it serves, ``exp(entropy)`` of the shares (1 = one task, K = all alike)."""
    positive = rearrange(scores.clamp(min=0), "k l h -> l h k")
    total = positive.sum(-1, keepdim=True)
    shares = torch.where(total > 0, positive / total.clamp(min=1e-30), 0.0)
    entropy = -(shares * shares.clamp(min=1e-30).log()).sum(-1)
    served = torch.where(total[..., 0] > 0, entropy.exp(), 0.0)
    return shares, served


@dataclass
class HeadAttribution:
    """Scores ``[task, layer, head]`` per method and what they came from."""

    tasks: list[str]
    scores: dict[str, Float[Tensor, "k layer head"]]
    mixture: dict  # baseline answer probabilities of the mixture prompts
    extras: dict = field(default_factory=dict)  # per method: references, function vectors
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        shares = {m: task_shares(s) for m, s in self.scores.items()}
        return {
            "tasks": self.tasks,
            "methods": list(self.scores),
            "scores": {m: s.tolist() for m, s in self.scores.items()},
            "shares": {m: sh.tolist() for m, (sh, _) in shares.items()},
            "n_tasks_served": {m: n.tolist() for m, (_, n) in shares.items()},
            # per layer: the layer's heads together (positive scores summed over its heads)
            "layer_shares": {
                m: task_shares(s.clamp(min=0).sum(-1, keepdim=True))[0][:, 0].tolist()
                for m, s in self.scores.items()
            },
            "top_heads": {
                m: {t: top_heads(s[k]) for k, t in enumerate(self.tasks)}
                for m, s in self.scores.items()
            },
            "mixture": self.mixture,
            **self.extras,
            "settings": self.settings,
        }


def attribute_heads(
    model,
    tasks: Sequence[Task],
    methods: Sequence[str] = METHODS,
    n_prompts: int = 20,
    n_examples: int = 20,
    seed: int = 0,
    template: str | None = None,
    fv_heads: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    evaluate_vectors: bool = True,
) -> HeadAttribution:
    """Attribute every task's answer to every head with each method (see the module doc).

    The mixture prompts mix ``tasks`` uniformly; ``aie`` uses single-task prompts of each task
    and evaluates each task's function vector (``fv_heads`` top heads, default
    ``min(10, n_heads_total // 4)``) on zero-shot queries, unless ``evaluate_vectors`` is
    False (the AIE scores alone).
    """
    methods = check_methods(methods)
    names = [t.name for t in tasks]
    spec = PromptSpec(n_prompts, n_examples, seed, template)
    mixture = spec.mixture(tasks)
    texts, answers = [p.text for p in mixture], [p.answers for p in mixture]
    probs = answer_logprobs(model, texts, answers, batch_size=batch_size).exp()
    result = HeadAttribution(
        names, {}, {"probs": probs.mean(0).tolist(), "other": float(1 - probs.sum(-1).mean())}
    )
    result.settings = {"n_prompts": n_prompts, "n_examples": n_examples, "seed": seed,
                       "template": template}  # fmt: skip
    if "dla" in methods:
        dla = direct_logit_attribution(
            model, texts, answer_first_tokens(model, texts, answers), batch_size=batch_size
        ).heads  # [prompt, k, layer, head]
        result.scores["dla"] = dla.mean(0).float()
        if len(tasks) > 1:  # each task's logit over the mean of the other tasks' logits
            others = (dla.sum(1, keepdim=True) - dla) / (len(tasks) - 1)
            result.extras["dla_diff"] = (dla - others).mean(0).tolist()
    if "patch" in methods:
        corrupt = spec.mixture(tasks, shuffle_labels=True)
        clean_z = final_z(model, texts, batch_size)
        delta, corrupted = per_head_effects(
            model, [p.text for p in corrupt], answers, clean_z, batch_size, progress
        )
        result.scores["patch"] = delta.float()
        result.extras["patch"] = {"clean": probs.mean(0).tolist(),
                                  "corrupted": corrupted.mean(0).tolist()}  # fmt: skip
    if "aie" in methods:
        total_heads = model.cfg.n_layers * model.cfg.n_heads
        n_top = fv_heads or max(1, min(10, total_heads // 4))
        aie, vectors = [], {}
        for k, task in enumerate(tasks):
            score, info = _task_aie(model, task, tasks, k, spec, n_top, batch_size, progress,
                                    evaluate_vectors)  # fmt: skip
            aie.append(score)
            vectors[task.name] = info
        result.scores["aie"] = torch.stack(aie).float()
        if evaluate_vectors:
            result.extras["function_vectors"] = vectors
    return result


def _task_aie(model, task: Task, tasks: Sequence[Task], k: int, spec: PromptSpec, n_top: int,
              batch_size: int | None, progress: bool, evaluate: bool = True):  # fmt: skip
    """AIE of every head for one task, and that task's function vector evaluated layer by
    layer on zero-shot queries (P of every task's answer, so leakage to the others shows)."""
    shuffled = spec.mixture([task], shuffle_labels=True)
    clean_z = prompt_vectors(model, [task], spec.but(weights=[1.0]), "z", batch_size)
    mean_z = clean_z.mean(0)
    aie, base = per_head_effects(
        model, [p.text for p in shuffled], [p.answers for p in shuffled], mean_z, batch_size,
        progress,
    )  # fmt: skip
    if not evaluate:
        return aie[0], {}
    fv, chosen = function_vector(model, mean_z, aie[0], n_top)
    queries = spec.but(seed=spec.seed + 1).queries(tasks)
    n_layers = model.cfg.n_layers
    logprobs = patched_answer_logprobs(
        model, [q.text for q in queries], [q.answers for q in queries],
        torch.arange(-1, n_layers), fv.expand(n_layers + 1, -1), mode="add",
        batch_size=batch_size,
    )  # fmt: skip
    probs = logprobs.exp()  # [query, 1 + layer, task]
    mean = probs.mean(0)
    best = int(mean[1:, k].argmax())
    return (
        aie[0],
        {
            "heads": [list(h) for h in chosen],
            "shuffled_baseline": float(base.mean()),
            "zero_shot": mean[0].tolist(),
            "probs_by_layer": mean[1:].tolist(),  # [layer][task]: FV added after that layer
            "accuracy_by_layer": (probs[:, 1:, k] >= 0.5).double().mean(0).tolist(),
            "best_layer": best,
            "best_prob": float(mean[1 + best, k]),
            # [query][1 + layer]: P(this task's answer), zero-shot first (intervals over queries)
            "query_p": probs[:, :, k].tolist(),
            "norm": float(fv.norm()),
        },
    )
