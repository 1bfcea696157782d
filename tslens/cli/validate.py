"""Every path and size a command asks for, checked *before* any prompt set is built, any
weights are loaded or any forward runs.

:func:`validate` is called by ``tslens.cli.main`` for every subcommand. It checks every path
the run writes (:mod:`tslens.cli.outputs`); it reads only the model's config and tokenizer
(never its weights), builds the longest prompt the run will build and checks it against the
model's context; layers, heads, beam widths and function-vector sizes against the model's
shape. Each failure is one :class:`TslensError` line saying the limit."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from safetensors import safe_open

from tslens.cli.outputs import check_outputs
from tslens.cli.specs import SHAPE_CHECKS
from tslens.errors import TslensError
from tslens.io import read_json, reading

log = logging.getLogger("tslens.cli")

# Numeric options and the least value each accepts (checked whatever the model).
MINIMUMS = {
    "n_prompts": 1, "n_examples": 1, "batch_size": 1, "width": 1, "max_new_tokens": 1,
    "n_samples": 0, "seed": 0, "n_random": 0, "fv_heads": 1, "accuracy_prompts": 1,
}  # fmt: skip


@dataclass(frozen=True)
class ModelShape:
    """What a model directory's config says, read without loading any weights."""

    name: str
    n_layers: int
    n_heads: int
    n_ctx: int | None
    vocab: int

    @property
    def cfg(self) -> SimpleNamespace:  # so hooks' layer/head checks accept it as a model
        return SimpleNamespace(n_layers=self.n_layers, n_heads=self.n_heads)


def model_shape(spec: str | None) -> ModelShape | None:
    """The shape of a local or named model (``None`` for a hub id: its config is remote)."""
    from tslens.sources.loader import DEFAULT_MODEL, resolve_model

    target, local = resolve_model(spec)
    if not local:
        return None
    config = read_json(Path(target) / "config.json", "model config", "restore the directory")
    config = config.get("text_config", config)
    for weights in sorted(Path(target).glob("*.safetensors")):  # headers only: fast
        with reading(weights, "model weights", "restore or re-create the model directory"):
            with safe_open(str(weights), framework="numpy"):  # "pt" would import torch
                pass

    def first(*keys: str) -> int | None:
        return next((int(config[k]) for k in keys if config.get(k) is not None), None)

    layers, heads = first("num_hidden_layers", "n_layer"), first("num_attention_heads", "n_head")
    vocab = first("vocab_size")
    if layers is None or heads is None or vocab is None:
        raise TslensError(f"model config {target}/config.json lacks layers, heads or vocab_size")
    n_ctx = first("max_position_embeddings", "n_positions", "n_ctx")
    return ModelShape(spec or DEFAULT_MODEL, layers, heads, n_ctx, vocab)


def _check_minimums(args: argparse.Namespace) -> None:
    for name, least in MINIMUMS.items():
        value = getattr(args, name, None)
        if value is not None and value < least:
            flag = "--" + name.replace("_", "-")
            raise TslensError(f"{flag} must be >= {least} (got {value})")


def _longest_prompt_tokens(args: argparse.Namespace, tokenizer, tasks) -> int:
    """Tokens of the longest prompt + answer the run builds (its first prompt: every prompt
    of a run has the same number of demonstrations)."""
    from tslens.cli.common import default_n_examples
    from tslens.prompts import PromptSpec

    weights = getattr(args, "weights", None)
    if isinstance(weights, list):  # scale: several settings of the same size
        weights = weights[0]
    n_examples = getattr(args, "n_examples", None) or default_n_examples(tasks)
    spec = PromptSpec(1, n_examples, args.seed, getattr(args, "template", None), weights)
    prompt = spec.mixture(tasks)[0]
    ids = tokenizer(prompt.text + max(prompt.answers, key=len), add_special_tokens=False)
    return 1 + len(ids["input_ids"])  # + BOS


def _check_context(shape: ModelShape, tokens: int, what: str) -> None:
    if shape.n_ctx is not None and tokens > shape.n_ctx:
        raise TslensError(
            f"{what} is {tokens} tokens, longer than {shape.name}'s context of {shape.n_ctx}; "
            "use fewer --n-examples (or shorter prompts)"
        )


def _check_model_sizes(args: argparse.Namespace, spec: str | None) -> None:
    from tslens.sources.loader import load_tokenizer
    from tslens.tasks import resolve_tasks

    tasks = resolve_tasks(args.tasks) if getattr(args, "tasks", None) else None
    shape = model_shape(spec)
    if shape is None:
        return
    tokenizer = None
    if shape.n_ctx is not None:
        log.info("checking the sizes with %s's tokenizer", shape.name)
        tokenizer = load_tokenizer(spec)
    if tasks is not None and tokenizer is not None and hasattr(args, "seed"):
        tokens = _longest_prompt_tokens(args, tokenizer, tasks)
        longest = tokens + (getattr(args, "max_new_tokens", 0) or 0)
        _check_context(shape, longest, "a prompt with its answer")
    if getattr(args, "prompt_file", None) and tokenizer is not None:
        from tslens.prompts import load_prompt_file

        prompts, _ = load_prompt_file(args.prompt_file)
        tokens = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
        _check_context(shape, 1 + tokens + args.max_new_tokens, f"a prompt of {args.prompt_file}")
    options = {**vars(args), "task_list": tasks}
    for name, check in SHAPE_CHECKS.items():  # each option's limit, whichever command has it
        if options.get(name):
            check(options[name], shape, options)


def validate(args: argparse.Namespace, arguments: dict) -> None:
    """Check ``args`` (see the module docstring; ``arguments``: what a run's results record,
    see :func:`tslens.cli.outputs.check_outputs`); raise :class:`TslensError` on the first
    path or size that cannot work."""
    check_outputs(args, arguments)
    _check_minimums(args)
    if getattr(args, "device", None) is not None:
        from tslens.sources.loader import check_device

        check_device(args.device)
    if getattr(args, "device_map", None) is not None:
        from tslens.cli.common import parse_device_map

        parse_device_map(args.device_map, args.device)
    if hasattr(args, "models") and args.models:
        for spec in [m.strip() for m in args.models.split(",") if m.strip()]:
            _check_model_sizes(args, spec)
    elif hasattr(args, "model") and hasattr(args, "device"):
        _check_model_sizes(args, args.model)
