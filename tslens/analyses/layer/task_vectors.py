"""Task vectors (Hendel et al. 2023; Xiong et al. 2024, Sec. 6): the mean activation at the
final token of in-context prompts (the separator ``->`` / ``>`` right before the answer), at
every layer at once, for pure tasks and for mixtures.

Saved as safetensors with JSON metadata (model, shape, settings), so a sweep can reuse them and
a file from a different model is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from tslens.engine.capture import capture_activations
from tslens.errors import TslensError
from tslens.io import atomic_path, reading
from tslens.prompts import PromptSpec, parse_weights
from tslens.tasks import Task, resolve_tasks


@dataclass
class TaskVectors:
    """One vector per task and layer: ``vectors[task, layer]`` (mean over prompts)."""

    model: str
    tasks: list[str]
    vectors: Float[Tensor, "task layer d"]
    kind: str = "resid_post"
    settings: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a safetensors file (atomically) with the metadata in its header."""
        meta = {
            "model": self.model,
            "tasks": self.tasks,
            "kind": self.kind,
            "settings": self.settings,
        }
        with atomic_path(path) as tmp:
            save_file(
                {"vectors": self.vectors.contiguous()},
                tmp,
                metadata={"tslens": json.dumps(meta)},
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str], model=None) -> TaskVectors:
        """Read a file written by :meth:`save`; with ``model``, check that it fits it."""
        hint = "pass a file written by tslens patch --vectors, or a new path to write one"
        with reading(path, "task vectors", hint) as file, safe_open(str(file), "pt") as f:
            meta = json.loads((f.metadata() or {})["tslens"])
            vectors = f.get_tensor("vectors")
            out = cls(meta["model"], meta["tasks"], vectors, meta["kind"], meta["settings"])
            if vectors.ndim != 3 or len(out.tasks) != len(vectors):
                raise ValueError(f"vectors of shape {tuple(vectors.shape)} for {out.tasks}")
        if model is not None:
            _, n_layers, d = vectors.shape
            if (n_layers, d) != (model.cfg.n_layers, model.cfg.d_model):
                raise TslensError(
                    f"vectors in {path} are from a model with {n_layers} layers x d_model {d} "
                    f"({meta['model']}), not {model.cfg.n_layers} x {model.cfg.d_model}"
                )
        return out

    def select(self, tasks: Sequence[str]) -> Float[Tensor, "task layer d"]:
        """The vectors of ``tasks``, in that order."""
        missing = [t for t in tasks if t not in self.tasks]
        if missing:
            raise TslensError(f"no vector for {', '.join(missing)}; have {', '.join(self.tasks)}")
        return self.vectors[[self.tasks.index(t) for t in tasks]]


def prompt_vectors(
    model,
    tasks: Sequence[Task],
    spec: PromptSpec,
    kind: str = "resid_post",
    batch_size: int | None = None,
    progress: bool = False,
) -> Float[Tensor, "prompt layer *d"]:
    """Final-token activations at every layer of the mixture prompts ``spec`` draws from
    ``tasks`` (one task with weight 1 = pure prompts)."""
    prompts = spec.mixture(tasks)
    acts = capture_activations(model, [p.text for p in prompts], [kind], batch_size=batch_size,
                               progress=progress)  # fmt: skip
    return acts[kind]


def task_vectors(
    model,
    tasks: str | Sequence[str] | Sequence[Task],
    n_prompts: int = 50,
    n_examples: int = 20,
    seed: int = 0,
    template: str | None = None,
    kind: str = "resid_post",
    batch_size: int | None = None,
    progress: bool = False,
) -> TaskVectors:
    """Task vector of each task at every layer: the mean final-token activation over
    ``n_prompts`` pure in-context prompts of ``n_examples`` demonstrations."""
    task_list = resolve_tasks(tasks)
    spec = PromptSpec(n_prompts, n_examples, seed, template, weights=[1.0])
    vectors = torch.stack(
        [prompt_vectors(model, [t], spec, kind, batch_size, progress).mean(0) for t in task_list]
    )
    return TaskVectors(
        model=getattr(model, "tslens_name", type(model).__name__),
        tasks=[t.name for t in task_list],
        vectors=vectors,
        kind=kind,
        settings=spec.settings(),
    )


def mixture_vector(
    model,
    tasks: str | Sequence[str] | Sequence[Task],
    weights: str | Sequence[float] | None = None,
    n_prompts: int = 50,
    n_examples: int = 20,
    seed: int = 0,
    template: str | None = None,
    kind: str = "resid_post",
    batch_size: int | None = None,
) -> Float[Tensor, "layer d"]:
    """The task vector of mixture prompts (mean final-token activation at every layer)."""
    task_list = resolve_tasks(tasks)
    spec = PromptSpec(n_prompts, n_examples, seed, template, parse_weights(weights, len(task_list)))
    return prompt_vectors(model, task_list, spec, kind, batch_size).mean(0)
