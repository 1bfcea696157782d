"""``tslens train``: train a from-scratch superposition model (recipe file and/or flags)."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from tslens.errors import TslensError
from tslens.tasks import resolve_tasks
from tslens.training.recipe import Recipe


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
        elif f.name == "eval_pairs":
            parser.add_argument(flag, default=None, help="e.g. plus2/plus5,ret2/ret6")
        elif isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(flag, type=type(f.default), default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--no-eval", action="store_true", help="skip the final evaluation and model card"
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train over a model (or an interrupted run) of another recipe in --out (without "
        "it that directory is refused)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tslens.training.charlm import check_architecture
    from tslens.training.train import max_sequence_length, train

    try:
        recipe = Recipe.from_toml(args.recipe) if args.recipe else Recipe()
    except TslensError:
        raise
    except (OSError, ValueError, TypeError) as err:
        raise TslensError(f"cannot read recipe {args.recipe}: {err}") from err
    overrides = {
        f.name: getattr(args, f.name) for f in fields(Recipe) if getattr(args, f.name) is not None
    }
    if isinstance(overrides.get("tasks"), str):
        overrides["tasks"] = [t.strip() for t in overrides["tasks"].split(",") if t.strip()]
    if isinstance(overrides.get("eval_pairs"), str):
        overrides["eval_pairs"] = [p.split("/") for p in overrides["eval_pairs"].split(",")]
    recipe = replace(recipe, **overrides)
    try:
        recipe.task_groups()
    except ValueError as err:
        raise TslensError(str(err)) from err
    try:
        check_architecture(recipe.architecture, recipe.positions)
    except ValueError as err:
        raise TslensError(str(err)) from err
    if not (0 <= recipe.label_noise <= 1 and 0 <= recipe.tail_noise <= 1):
        raise TslensError("label_noise and tail_noise are probabilities in [0, 1]")
    if recipe.d_model % recipe.n_heads:
        raise TslensError(f"d_model {recipe.d_model} is not divisible by n_heads {recipe.n_heads}")
    if min(recipe.steps, recipe.batch_size, recipe.n_demos, recipe.n_layers) < 1:
        raise TslensError("steps, batch_size, n_demos and n_layers must be >= 1")
    if recipe.batch_size < len(recipe.task_groups()):
        raise TslensError("batch_size must hold at least one sequence of each task kind")
    if min(recipe.eval_prompts, 1 + recipe.n_ctx - max_sequence_length(recipe)) < 1:
        raise TslensError(
            f"n_ctx {recipe.n_ctx} is shorter than a training sequence "
            f"({max_sequence_length(recipe)} tokens), or eval_prompts < 1"
        )
    for pair in recipe.eval_pairs:
        resolve_tasks(pair)  # unknown or cross-family pairs fail now, not after training
        if len(pair) != 2:
            raise TslensError(f"an eval pair has two tasks, got {'/'.join(pair)}")
    out = train(recipe, args.out, device=args.device, overwrite=args.overwrite)
    print(f"trained {out} ({recipe.steps} steps); tasks: {', '.join(recipe.tasks)}")
    if args.no_eval:
        return 0
    evaluation = evaluate_trained(out, "tslens " + shlex.join(args.argv), device=args.device)
    print(f"min single-task accuracy {evaluation['min_accuracy']:.3f}")
    for curve in evaluation["curves"]:
        half = curve["at_half"]
        print(
            f"{'/'.join(curve['tasks'])}: max |P(task0) - d| = {curve['max_dev']:.3f}; at d=.5 "
            f"P = {half['p_task0']:.3f}, {half['p_task1']:.3f}, other {half['other']:.3f}"
        )
    print(f"wrote {out}/eval.json, {out}/eval.html, {out}/README.md")
    return 0


def evaluate_trained(out: str | Path, command: str, device: str = "cpu") -> dict[str, Any]:
    """Evaluate the model trained in ``out`` with its recipe's settings (accuracy on every
    trained task, mixture curves of ``recipe.eval_pairs`` with ``recipe.eval_prompts`` prompts
    per point), write the three files, and return the evaluation's JSON form."""
    import json

    from tslens.analyses.prompt.evaluation import evaluate_model
    from tslens.io import write_json_atomic, write_text_atomic
    from tslens.prompts import build_mixture_prompts
    from tslens.report.card import model_card
    from tslens.report.evaluation import write_evaluation_html
    from tslens.sources.loader import load_model
    from tslens.tasks import get_task
    from tslens.training.charlm import CHARS, SPECIAL

    out = Path(out)
    recipe = Recipe.from_toml(out / "recipe.toml")
    log = json.loads((out / "train_log.json").read_text())
    model = load_model(str(out), device=device)
    evaluation = evaluate_model(
        model,
        recipe.tasks,
        recipe.eval_pairs,
        n_prompts=recipe.eval_prompts,
        n_examples=recipe.n_demos,
        seed=recipe.seed,
    ).to_json()
    evaluation["model"] = out.name
    write_json_atomic(out / "eval.json", evaluation)
    write_evaluation_html([evaluation], out / "eval.html", f"{out.name}: evaluation")
    task = get_task(recipe.tasks[0])
    prompt = build_mixture_prompts([task], [1.0], 1, 3, seed=0)[0]
    vocabulary = f"{len(SPECIAL) + len(CHARS)} tokens including " + ", ".join(
        f"`{s}`" for s in SPECIAL
    )
    card = model_card(out.name, recipe, log, evaluation, command,
                      (task.name, prompt.text + prompt.answers[0]), vocabulary)  # fmt: skip
    write_text_atomic(out / "README.md", card)
    return evaluation
