"""Scaling and calibration across models (Xiong et al. 2024, Finding 5: larger models solve more
tasks in parallel and calibrate better to the in-context task distribution).

Every model sees the same mixture prompts (same tasks, weights, seed, hence the same texts; for
models that share a tokenizer, the same tokens) and is measured with the same exact scorer:

- per weight setting (:func:`tslens.analyses.prompt.mixture.measure_mixture`): each task's mean
  answer probability, ``other``, the normalised probabilities, KL(in-context proportions || model)
  and the tasks solved (answers among the model's top-K complete answers, by beam search);
- single-task accuracy (:func:`tslens.analyses.prompt.curves.task_accuracy`): greedy decoding
  reproduces the answer on one-task prompts;
- ``first_token`` (token-level, optional): each task's probability of its answer's first token.
  It depends on how the tokenizer splits the answers, so it is only compared between models that
  share a tokenizer.

Models are loaded one at a time and released before the next, so a ladder of large checkpoints
needs the memory of the largest only.
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tslens.analyses.prompt.curves import task_accuracy
from tslens.analyses.prompt.mixture import measure_mixture
from tslens.engine.scoring import answer_token_logprobs
from tslens.errors import TslensError
from tslens.io import record
from tslens.prompts import build_mixture_prompts
from tslens.sources.loader import load_model, load_tokenizer
from tslens.tasks import Task, resolve_tasks

TOKEN_LEVEL = ("first_token",)


def parameter_count(model) -> dict[str, int]:
    """``{"total", "non_embedding"}`` parameters of the checkpoint behind a bridge.

    Counted on a weightless (meta-device) copy of the Hugging Face model built from its config,
    because the bridge keeps extra split copies of fused weights (GPT-2's ``c_attn`` also as
    q/k/v). Tied weights count once. Non-embedding leaves out every ``nn.Embedding`` (token and
    learned positions) and an untied unembedding (Kaplan et al. 2020's count).
    """
    from transformers import AutoModelForCausalLM

    config = getattr(model, "original_model", model).config
    with torch.device("meta"):
        module = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in module.parameters())  # parameters() yields tied ones once
    embedding = {
        id(p) for m in module.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
    }
    output = module.get_output_embeddings()
    if output is not None:
        embedding |= {id(p) for p in output.parameters()}
    skipped = sum(p.numel() for p in module.parameters() if id(p) in embedding)
    return {"total": total, "non_embedding": total - skipped}


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of everything that decides how text becomes tokens (vocabulary, merges,
    normalisation, special tokens): equal fingerprints tokenize every text the same way."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items())) + type(tokenizer).__name__
    text += json.dumps(tokenizer.all_special_tokens)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ScaleStudy:
    """One row per model (see the module docstring), in the order given."""

    tasks: list[str]
    weights: list[list[float]]
    rows: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return record(self, skip=("rows", "settings"), **self.settings, models=self.rows)


def first_token_probs(
    model, prompts: Sequence[str], answers: Sequence[Sequence[str]], batch_size: int | None = None
) -> list[float]:
    """Mean over prompts of each answer's first-token probability (``[k]``), the first of the
    per-token terms :func:`tslens.engine.scoring.answer_token_logprobs` reads."""
    tokens = answer_token_logprobs(model, prompts, answers, batch_size)
    return torch.tensor([[lp[0].item() for lp in row] for row in tokens]).exp().mean(0).tolist()


def check_tokenizers(models: Sequence[str], trust_remote_code: bool = False) -> list[str]:
    """Each model's tokenizer fingerprint (loads tokenizers only, not weights)."""
    if not models:
        raise TslensError("no models given; pass --models M1,M2,...")
    return [
        tokenizer_fingerprint(load_tokenizer(m, trust_remote_code=trust_remote_code))
        for m in models
    ]


def scale_study(
    models: Sequence[str],
    tasks: str | Sequence[str] | Sequence[Task],
    weights: Sequence[Sequence[float]] | None = None,
    n_prompts: int = 100,
    n_examples: int = 20,
    seed: int = 0,
    template: str | None = None,
    accuracy_prompts: int | None = None,
    token_level: bool | None = None,
    batch_size: int | None = None,
    load: Callable[[str], Any] = load_model,
    trust_remote_code: bool = False,
) -> ScaleStudy:
    """Measure the same mixture prompts on every model of ``models``.

    Args:
        models: model specs as :func:`tslens.sources.loader.load_model` takes them (hub ids, local
            directories, shipped names), e.g. a size ladder, smallest first.
        tasks: the K tasks of the mixture.
        weights: weight settings to measure, each K shares (default: uniform only); an uneven
            setting such as ``[0.7, 0.3]`` shows calibration (the probabilities track it).
        n_prompts, n_examples, seed, template: the mixture prompts, shared by every model.
        accuracy_prompts: one-task prompts per task for single-task accuracy (default
            ``n_prompts``).
        token_level: also report ``first_token`` probabilities. ``None`` = when every model has
            the same tokenizer; ``True`` with different tokenizers raises :class:`TslensError`.
        load: how a spec becomes a model (``load_model`` with the caller's device/dtype).

    Returns:
        A :class:`ScaleStudy`; each row has ``model``, ``params`` (total, non-embedding),
        ``tokenizer`` (fingerprint), ``mixtures`` (one summary per weight setting: weights,
        mean_probs, other, normalized, kl, solved, mean_tasks_solved), ``accuracy`` per task
        and ``min_accuracy``, and ``first_token`` per weight setting when token-level.
    """
    task_list = resolve_tasks(tasks)
    k = len(task_list)
    weights = [list(w) for w in (weights or [[1.0 / k] * k])]
    for w in weights:
        if len(w) != k:
            raise TslensError(f"weights {w} do not match the {k} tasks")
    fingerprints = check_tokenizers(models, trust_remote_code)
    shared = len(set(fingerprints)) == 1
    if token_level and not shared:
        groups = ", ".join(f"{m}={f[:8]}" for m, f in zip(models, fingerprints, strict=True))
        raise TslensError(
            f"token-level metrics ({', '.join(TOKEN_LEVEL)}) compare models only when they "
            f"share a tokenizer; these differ ({groups})"
        )
    token_level = shared if token_level is None else token_level
    rows = []
    for spec, fingerprint in zip(models, fingerprints, strict=True):
        model = load(spec)
        row: dict[str, Any] = {
            "model": spec,
            "params": parameter_count(model),
            "tokenizer": fingerprint,
            "mixtures": [],
        }
        for w in weights:
            result = measure_mixture(
                model, task_list, w, n_prompts, n_examples, seed, template,
                batch_size=batch_size,
            )  # fmt: skip
            entry = {"weights": w, **result.summary()}
            entry["complete_by"] = result.settings["complete_by"]
            if token_level:
                texts = [p.text for p in result.prompts]
                entry["first_token"] = first_token_probs(
                    model, texts, [p.answers for p in result.prompts], batch_size
                )
            row["mixtures"].append(entry)
        row["accuracy"] = task_accuracy(
            model, task_list, accuracy_prompts or n_prompts, n_examples, seed, template,
            batch_size,
        )  # fmt: skip
        row["min_accuracy"] = min(row["accuracy"].values())
        rows.append(row)
        del model
        gc.collect()
    # The prompts are the same texts for every model; keep one example for the record.
    example = build_mixture_prompts(task_list, weights[0], 1, n_examples, seed, template)[0]
    return ScaleStudy(
        tasks=[t.name for t in task_list],
        weights=weights,
        rows=rows,
        settings={
            "n_prompts": n_prompts,
            "n_examples": n_examples,
            "seed": seed,
            "template": template or "default",
            "shared_tokenizer": shared,
            "token_level": token_level,
            "example_prompt": example.text,
        },
    )
