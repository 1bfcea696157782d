"""Train a small character-level superposition model from scratch (Xiong et al. 2024, Sec. 4).

The whole loop, nanoGPT style: a Llama-style decoder
(:func:`tslens.training.charlm.build_char_model`), batches of single-task sequences generated on
the fly (:mod:`tslens.training.synthetic`), AdamW with a warmup-stable-decay schedule, and loss on
answer tokens only. Every ``checkpoint_every`` steps the model and optimizer state go to
``out/checkpoint`` (safetensors + JSON); a run started again with the same ``out`` resumes from
there and produces the same weights, because the batch of step s is drawn from a generator seeded
with ``(seed, s)``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from jaxtyping import Int
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from tslens.errors import TslensError, differing
from tslens.io import json_form, reading, write_json_atomic
from tslens.training.charlm import build_char_model
from tslens.training.recipe import Recipe
from tslens.training.synthetic import IGNORE, Corruption, sequence_length, synthetic_batch


def max_sequence_length(recipe: Recipe) -> int:
    """Tokens in the recipe's longest training sequence (BOS + demonstrations + query)."""
    return max(sequence_length(kind, recipe.n_demos) for kind in recipe.task_groups())


def learning_rate(recipe: Recipe, step: int) -> float:
    """Warmup-stable-decay: linear warmup, constant, linear decay to 0 over the last part."""
    decay_start = int(recipe.steps * (1 - recipe.decay_fraction))
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    if step < decay_start:
        return recipe.lr
    return recipe.lr * max(0.0, (recipe.steps - step) / max(1, recipe.steps - decay_start))


def make_batch(
    recipe: Recipe, tokenizer, step: int
) -> list[tuple[Int[Tensor, "seq pos"], Int[Tensor, "seq pos"]]]:
    """The batch of ``step``: an equal share of sequences per task kind, one ``(input_ids,
    labels)`` part per kind. Kinds are kept apart because their lines differ in length
    (4 vs 11 characters): padding plus-b sequences to retrieval length would waste ~40% of
    every step."""
    generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
    groups = recipe.task_groups()
    shares = [recipe.batch_size // len(groups)] * len(groups)
    shares[0] += recipe.batch_size - sum(shares)
    return [
        synthetic_batch(
            tokenizer,
            kind,
            params,
            n,
            recipe.n_demos,
            generator,
            recipe.separator_loss,
            Corruption(recipe.label_noise, recipe.tail_noise, recipe.mix_tasks),
        )
        for (kind, params), n in zip(groups.items(), shares, strict=True)
    ]


def batch_loss(model, parts, device: str) -> tuple[Tensor, list[float]]:
    """Mean cross-entropy over all answer tokens of all parts (one forward per part), and
    each part's own mean (logged per task kind, since the kinds are learned at different
    times)."""
    total = torch.zeros((), device=device)
    n_answers = sum(int((labels != IGNORE).sum()) for _, labels in parts)
    per_part = []
    for ids, labels in parts:
        logits = model(input_ids=ids.to(device)).logits[:, :-1]
        part = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), labels[:, 1:].flatten().to(device), reduction="sum"
        )
        per_part.append(part.item() / int((labels != IGNORE).sum()))
        total = total + part
    return total / n_answers, per_part


def _save_checkpoint(out: Path, model, optimizer, log: dict) -> None:
    tmp = out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    state = optimizer.state_dict()
    tensors = {f"{i}.{name}": t for i, s in state["state"].items() for name, t in s.items()}
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "trainer.json").write_text(json.dumps(log))
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    tmp.rename(out / "checkpoint")  # the checkpoint appears complete or not at all


def _load_checkpoint(out: Path, model, optimizer) -> dict | None:
    ckpt = out / "checkpoint"
    if not (ckpt / "trainer.json").exists():
        return None
    hint = f"delete {ckpt} to start the run over"
    with reading(ckpt, "checkpoint", hint):
        model.load_state_dict(load_file(ckpt / "model.safetensors"))
        tensors = load_file(ckpt / "optimizer.safetensors")
        state = optimizer.state_dict()
        for key, tensor in tensors.items():
            idx, name = key.split(".", 1)
            state["state"].setdefault(int(idx), {})[name] = tensor
        optimizer.load_state_dict(state)
        log = json.loads((ckpt / "trainer.json").read_text())
        log.pop("recipe", None)  # what _refuse_another_run compared; not part of the log
        return log


def _refuse_another_run(out: Path, recipe: Recipe, overwrite: bool) -> None:
    """Refuse an ``out`` that holds another recipe's interrupted run or finished model (with
    ``overwrite``: start over, dropping the interrupted run)."""
    wanted = json_form(asdict(recipe))
    try:
        saved = json.loads((out / "checkpoint" / "trainer.json").read_text()).get("recipe")
    except (OSError, ValueError, AttributeError):
        saved = None  # no checkpoint, or one of a version that did not record its recipe
    if isinstance(saved, dict) and saved != wanted:
        if not overwrite:
            raise TslensError(
                f"{out} holds an interrupted training run of another recipe "
                f"({differing(saved, wanted)} differ); run that recipe again to finish "
                "it, use another --out, or add --overwrite to start over"
            )
        shutil.rmtree(out / "checkpoint")
    if overwrite or not (out / "model.safetensors").exists():
        return
    try:
        other = json_form(asdict(Recipe.from_toml(out / "recipe.toml")))
        what = f"a model trained with another recipe ({differing(other, wanted)} differ)"
    except TslensError:
        what = "a model that tslens train did not make (no readable recipe.toml)"
    raise TslensError(
        f"{out} already holds {what}; use another --out, or add --overwrite to train over it"
    )


def train(
    recipe: Recipe,
    out: str | Path,
    device: str = "cpu",
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Train (or resume) and write a Hugging Face checkpoint directory to ``out``.

    Returns ``out``, holding ``config.json``, ``model.safetensors``, tokenizer files,
    ``recipe.toml`` and ``train_log.json`` (loss per step overall and per task kind, wall time
    summed over resumed sessions, device). A directory whose run already finished with this
    recipe is returned as it is; one holding another recipe's model, or another recipe's
    interrupted run, is refused (:class:`TslensError`) unless ``overwrite``.
    """
    out = Path(out)
    if _finished(out, recipe):
        (out / "recipe.toml").write_text(recipe.to_toml())  # in this version's full form
        return out
    _refuse_another_run(out, recipe, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = build_char_model(
        None,
        recipe.n_layers,
        recipe.d_model,
        recipe.n_heads,
        recipe.n_ctx,
        recipe.seed,
        recipe.architecture,
        recipe.positions,
    )
    if recipe.init_from:
        with reading(Path(recipe.init_from) / "model.safetensors", "initial weights",
                     "init_from names a finished tslens train directory") as file:  # fmt: skip
            model.load_state_dict(load_file(file))
    model.to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, betas=(0.9, 0.98), weight_decay=recipe.weight_decay
    )
    kinds = list(recipe.task_groups())
    log = _load_checkpoint(out, model, optimizer) or {
        "step": 0,
        "losses": [],
        "kind_losses": {kind: [] for kind in kinds},
        "wall_s": 0.0,
    }
    began = time.perf_counter() - log["wall_s"]
    start = log["step"]
    bar = tqdm(range(start, recipe.steps), initial=start, total=recipe.steps, unit="step",
               disable=not progress)  # fmt: skip
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, step)
        loss, per_kind = batch_loss(model, make_batch(recipe, tokenizer, step), device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        log["losses"].append(round(loss.item(), 5))
        for kind, value in zip(kinds, per_kind, strict=True):
            log["kind_losses"][kind].append(round(value, 5))
        bar.set_postfix({k: f"{v[-1]:.3f}" for k, v in log["kind_losses"].items()})
        if (step + 1) % recipe.checkpoint_every == 0 and step + 1 < recipe.steps:
            log.update(step=step + 1, wall_s=time.perf_counter() - began)
            _save_checkpoint(out, model, optimizer, {**log, "recipe": json_form(asdict(recipe))})
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.eval().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "recipe.toml").write_text(recipe.to_toml())
    log.update(step=recipe.steps, wall_s=time.perf_counter() - began, device=_device_name(device))
    log["torch_threads"] = torch.get_num_threads()
    write_json_atomic(out / "train_log.json", log)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    return out


def _finished(out: Path, recipe: Recipe) -> bool:
    try:
        done = Recipe.from_toml(out / "recipe.toml") == recipe
        return done and json.loads((out / "train_log.json").read_text())["step"] == recipe.steps
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{device} ({os.cpu_count()} cores)"
