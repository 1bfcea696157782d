"""Train a small character-level superposition model from scratch (Xiong et al. 2024, Sec. 4).

The whole loop, nanoGPT style: a Llama-style decoder (:func:`tslens.charlm.build_char_model`),
batches of single-task sequences generated on the fly (:mod:`tslens.synthetic`), AdamW with a
warmup-stable-decay schedule, and loss on answer tokens only. Every ``checkpoint_every`` steps
the model and optimizer state go to ``out/checkpoint`` (safetensors + JSON); a run started
again with the same ``out`` resumes from there and produces the same weights, because the batch
of step s is drawn from a generator seeded with ``(seed, s)``.
"""

from __future__ import annotations

import json
import shutil
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from tslens.charlm import build_char_model
from tslens.synthetic import parse_task, synthetic_batch


@dataclass
class Recipe:
    """Everything that determines a training run (saved as ``recipe.toml`` beside the model)."""

    tasks: list[str] = field(default_factory=lambda: [f"plus{b}" for b in range(10)])
    n_demos: int = 20
    n_layers: int = 3
    d_model: int = 96
    n_heads: int = 4
    n_ctx: int = 512
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    decay_fraction: float = 0.2
    weight_decay: float = 0.01
    seed: int = 0
    checkpoint_every: int = 250

    @classmethod
    def from_toml(cls, path: str | Path) -> Recipe:
        data = tomllib.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown recipe keys: {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_toml(self) -> str:
        def value(v: object) -> str:
            return json.dumps(v)  # JSON scalars and string lists are valid TOML

        return "".join(f"{k} = {value(v)}\n" for k, v in asdict(self).items())

    def task_groups(self) -> dict[str, list[int]]:
        """``{"plus": [b, ...], "ret": [i, ...]}`` for the recipe's tasks."""
        groups: dict[str, list[int]] = {}
        for name in self.tasks:
            kind, param = parse_task(name)
            groups.setdefault(kind, []).append(param)
        return groups


def learning_rate(recipe: Recipe, step: int) -> float:
    """Warmup-stable-decay: linear warmup, constant, linear decay to 0 over the last part."""
    decay_start = int(recipe.steps * (1 - recipe.decay_fraction))
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    if step < decay_start:
        return recipe.lr
    return recipe.lr * max(0.0, (recipe.steps - step) / max(1, recipe.steps - decay_start))


def make_batch(recipe: Recipe, tokenizer, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of ``step``: an equal share of sequences per task kind, padded on the right."""
    generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
    groups = recipe.task_groups()
    shares = [recipe.batch_size // len(groups)] * len(groups)
    shares[0] += recipe.batch_size - sum(shares)
    parts = [
        synthetic_batch(tokenizer, kind, params, n, recipe.n_demos, generator)
        for (kind, params), n in zip(groups.items(), shares, strict=True)
    ]
    width = max(ids.shape[1] for ids, _ in parts)
    pad = tokenizer.pad_token_id
    ids = torch.cat(
        [torch.nn.functional.pad(i, (0, width - i.shape[1]), value=pad) for i, _ in parts]
    )
    labels = torch.cat(
        [torch.nn.functional.pad(lab, (0, width - lab.shape[1]), value=-100) for _, lab in parts]
    )
    return ids, labels


def _save_checkpoint(out: Path, model, optimizer, step: int, losses: list[float]) -> None:
    tmp = out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    state = optimizer.state_dict()
    tensors = {f"{i}.{name}": t for i, s in state["state"].items() for name, t in s.items()}
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "trainer.json").write_text(json.dumps({"step": step, "losses": losses}))
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    tmp.rename(out / "checkpoint")  # the checkpoint appears complete or not at all


def _load_checkpoint(out: Path, model, optimizer) -> tuple[int, list[float]]:
    ckpt = out / "checkpoint"
    if not (ckpt / "trainer.json").exists():
        return 0, []
    model.load_state_dict(load_file(ckpt / "model.safetensors"))
    tensors = load_file(ckpt / "optimizer.safetensors")
    state = optimizer.state_dict()
    for key, tensor in tensors.items():
        idx, name = key.split(".", 1)
        state["state"].setdefault(int(idx), {})[name] = tensor
    optimizer.load_state_dict(state)
    trainer = json.loads((ckpt / "trainer.json").read_text())
    return trainer["step"], trainer["losses"]


def train(recipe: Recipe, out: str | Path, device: str = "cpu", progress: bool = True) -> Path:
    """Train (or resume) and write a Hugging Face checkpoint directory to ``out``.

    Returns ``out``, holding ``config.json``, ``model.safetensors``, tokenizer files,
    ``recipe.toml`` and ``train_log.json`` (loss per step, wall time, device).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = build_char_model(
        None, recipe.n_layers, recipe.d_model, recipe.n_heads, recipe.n_ctx, recipe.seed
    )
    model.to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, betas=(0.9, 0.98), weight_decay=recipe.weight_decay
    )
    start, losses = _load_checkpoint(out, model, optimizer)
    began = time.perf_counter()
    bar = tqdm(range(start, recipe.steps), initial=start, total=recipe.steps, disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, step)
        ids, labels = make_batch(recipe, tokenizer, step)
        loss = model(input_ids=ids.to(device), labels=labels.to(device)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if (step + 1) % recipe.checkpoint_every == 0 and step + 1 < recipe.steps:
            _save_checkpoint(out, model, optimizer, step + 1, losses)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.eval().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "recipe.toml").write_text(recipe.to_toml())
    log = {
        "losses": losses,
        "wall_s": time.perf_counter() - began,
        "device": device,
        "steps": recipe.steps,
    }
    (out / "train_log.json").write_text(json.dumps(log))
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    return out
