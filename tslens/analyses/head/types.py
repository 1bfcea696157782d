"""What kind of head each attention head is: copying scores, function-vector score and its
role in superposition, for every head of a model (issue 25).

Per head ``(layer, head)``:

- ``induction``, ``previous_token``: attention on repeated random sequences
  (:mod:`tslens.analyses.head.induction`).
- ``fv``: the function-vector score, Todd et al.'s average indirect effect (AIE) averaged over
  the tasks (``aie[k]`` per task: the head's mean single-task output patched into
  shuffled-label prompts of task k), as Yin & Steinhardt rank FV heads.
- ``patch[k]``: change of P(task k's answer) when the head's clean output on K-task mixture
  prompts is patched into the same prompts with shuffled labels (the superposition ΔP).
- ``ablation[k]``: drop of P(task k's answer) on the mixture prompts when the head alone is
  mean-ablated at the final position.
- ``demo_mass``, ``evenness``: the attention mass from the answer position on the
  demonstrations, and how evenly it is spread over them (``exp(entropy) / n_demos`` of the
  mass normalised over demonstrations, mean over prompts: 1 = every demonstration alike).
- ``role``: ``shared`` if its patch ΔP is large (at least ``role_share`` of the largest ΔP of
  any head for that task, and positive) for two or more tasks, a task's name if for one,
  ``-`` if for none.

The scores are correlational descriptions of each head except ``patch``, ``aie`` and
``ablation``, which are interventions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from tslens.analyses.head.ablation_study import head_importance
from tslens.analyses.head.demo_attention import attention_to_demonstrations
from tslens.analyses.head.heads import attribute_heads
from tslens.analyses.head.induction import copying_scores
from tslens.analyses.prompt.demonstrations import build_demo_prompts
from tslens.engine.ablation import head_statistics
from tslens.engine.lens import as_lens
from tslens.prompts import PromptSpec
from tslens.tasks import Task


@dataclass
class HeadTypes:
    """Every head's scores (see the module docstring), ``[layer, head]`` or ``[k, layer, head]``."""

    tasks: list[str]
    induction: Float[Tensor, "layer head"]
    previous_token: Float[Tensor, "layer head"]
    aie: Float[Tensor, "k layer head"]
    patch: Float[Tensor, "k layer head"]
    ablation: Float[Tensor, "k layer head"]
    demo_mass: Float[Tensor, "layer head"]
    evenness: Float[Tensor, "layer head"]
    role_share: float = 0.25
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def fv(self) -> Float[Tensor, "layer head"]:
        """The function-vector score: the AIE averaged over the tasks."""
        return self.aie.mean(0)

    def carries(self) -> torch.Tensor:
        """``[k, layer, head]``: whether the head's patch ΔP for task k is positive and at
        least ``role_share`` of the largest ΔP of any head for task k."""
        top = self.patch.flatten(1).amax(1)[:, None, None]
        return (self.patch > 0) & (self.patch >= self.role_share * top)

    def roles(self) -> list[list[str]]:
        """``[layer][head]``: ``shared``, the one task's name, or ``-``."""
        carries = self.carries()
        out = []
        for layer in range(carries.shape[1]):
            row = []
            for head in range(carries.shape[2]):
                which = [t for k, t in enumerate(self.tasks) if carries[k, layer, head]]
                row.append("shared" if len(which) > 1 else which[0] if which else "-")
            out.append(row)
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One dict per head, ranked by FV score (the table's rows)."""
        roles = self.roles()
        fv_rank = _ranks(self.fv)
        induction_rank = _ranks(self.induction)
        out = []
        for layer in range(self.induction.shape[0]):
            for head in range(self.induction.shape[1]):
                out.append({
                    "layer": layer, "head": head, "role": roles[layer][head],
                    "induction": float(self.induction[layer, head]),
                    "previous_token": float(self.previous_token[layer, head]),
                    "fv": float(self.fv[layer, head]),
                    "fv_rank": fv_rank[layer][head],
                    "induction_rank": induction_rank[layer][head],
                    "aie": self.aie[:, layer, head].tolist(),
                    "patch": self.patch[:, layer, head].tolist(),
                    "ablation": self.ablation[:, layer, head].tolist(),
                    "demo_mass": float(self.demo_mass[layer, head]),
                    "evenness": float(self.evenness[layer, head]),
                })  # fmt: skip
        return sorted(out, key=lambda r: r["fv_rank"])

    def fv_induction_spearman(self) -> float:
        """How the FV and induction rankings relate over all heads (correlational)."""
        return spearman(self.fv.flatten(), self.induction.flatten())

    def to_json(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "heads": self.rows(),
            "roles": self.roles(),
            "role_share": self.role_share,
            "fv_induction_spearman": self.fv_induction_spearman(),
            "settings": self.settings,
        }


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors (average ranks for ties)."""
    from scipy.stats import spearmanr

    value = spearmanr(a.double().numpy(), b.double().numpy()).statistic
    return float(value)


def _ranks(scores: Float[Tensor, "layer head"]) -> list[list[int]]:
    """Each head's rank by score, 1 = highest."""
    order = scores.flatten().argsort(descending=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(1, len(order) + 1)
    return ranks.view(scores.shape).tolist()


def evenness(
    mass: Float[Tensor, "prompt layer head demo"],
) -> tuple[Float[Tensor, "layer head"], Float[Tensor, "layer head"]]:
    """Mean attention mass on the demonstrations, and its evenness over them (see the module
    docstring), per head."""
    total = mass.sum(-1)
    share = mass / total[..., None].clamp(min=1e-12)
    entropy = -(share * share.clamp(min=1e-12).log()).sum(-1)
    return total.mean(0), (entropy.exp() / mass.shape[-1]).mean(0)


def type_heads(
    model,
    tasks: Sequence[Task],
    spec: PromptSpec,
    n_sequences: int = 20,
    length: int = 25,
    role_share: float = 0.25,
    batch_size: int | None = None,
    progress: bool = False,
) -> HeadTypes:
    """Every score of every head (see the module docstring): the copying probe
    (``n_sequences`` random sequences of ``length`` tokens, repeated), then patching, AIE,
    ablation and attention on the mixture prompts ``spec`` draws from ``tasks``."""
    lens = as_lens(model)
    copying = copying_scores(lens, n_sequences, length, spec.seed, batch_size, progress)
    attribution = attribute_heads(
        lens, tasks, ("patch", "aie"), **spec.arguments(), batch_size=batch_size,
        progress=progress, evaluate_vectors=False,
    )  # fmt: skip
    prompts, _, spans = build_demo_prompts(lens, tasks, spec)
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    stats = head_statistics(lens, texts, batch_size)
    ablation = head_importance(lens, texts, answers, "mean", stats, spec.seed, batch_size,
                               progress)  # fmt: skip
    mass = attention_to_demonstrations(lens, texts, spans, batch_size, progress)
    demo_mass, even = evenness(mass)
    return HeadTypes(
        tasks=[t.name for t in tasks],
        induction=copying.induction,
        previous_token=copying.previous_token,
        aie=attribution.scores["aie"],
        patch=attribution.scores["patch"],
        ablation=ablation.float(),
        demo_mass=demo_mass,
        evenness=even,
        role_share=role_share,
        settings={
            **spec.settings(),
            "n_sequences": n_sequences,
            "length": length,
            "mixture": attribution.mixture,
        },  # fmt: skip
    )
