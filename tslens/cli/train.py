"""``tslens train``: train a from-scratch superposition model (recipe file and/or flags)."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

from tslens.errors import TslensError
from tslens.train import Recipe, train


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a small char-level model on plus-b / retrieval tasks",
        description="Writes an HF checkpoint directory; re-running with the same --out resumes.",
    )
    parser.add_argument("--recipe", type=Path, default=None, help="TOML file of Recipe fields")
    for f in fields(Recipe):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "tasks":
            parser.add_argument(flag, default=None, help="comma-separated, e.g. plus2,plus5,ret2")
        else:
            parser.add_argument(flag, type=type(f.default), default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        recipe = Recipe.from_toml(args.recipe) if args.recipe else Recipe()
    except (OSError, ValueError, TypeError) as err:
        raise TslensError(f"cannot read recipe {args.recipe}: {err}") from err
    overrides = {
        f.name: getattr(args, f.name) for f in fields(Recipe) if getattr(args, f.name) is not None
    }
    if isinstance(overrides.get("tasks"), str):
        overrides["tasks"] = [t.strip() for t in overrides["tasks"].split(",") if t.strip()]
    recipe = replace(recipe, **overrides)
    try:
        recipe.task_groups()
    except ValueError as err:
        raise TslensError(str(err)) from err
    if recipe.d_model % recipe.n_heads:
        raise TslensError(f"d_model {recipe.d_model} is not divisible by n_heads {recipe.n_heads}")
    if min(recipe.steps, recipe.batch_size, recipe.n_demos, recipe.n_layers) < 1:
        raise TslensError("steps, batch_size, n_demos and n_layers must be >= 1")
    out = train(recipe, args.out, device=args.device)
    print(f"wrote {out} ({recipe.steps} steps); tasks: {', '.join(recipe.tasks)}")
    return 0
