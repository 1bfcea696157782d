"""The final step of ``tslens train``: evaluate the trained directory and write ``eval.json``,
``eval.html`` and the model card ``README.md`` beside the weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tslens.analyses.evaluation import evaluate_model
from tslens.io import write_json_atomic, write_text_atomic
from tslens.models import load_model
from tslens.recipe import Recipe
from tslens.report.card import model_card
from tslens.report.evaluation import write_evaluation_html


def evaluate_trained(out: str | Path, command: str, device: str = "cpu") -> dict[str, Any]:
    """Evaluate the model trained in ``out`` with its recipe's settings (accuracy on every
    trained task, mixture curves of ``recipe.eval_pairs`` with ``recipe.eval_prompts`` prompts
    per point), write the three files, and return the evaluation's JSON form."""
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
    write_text_atomic(out / "README.md", model_card(out.name, recipe, log, evaluation, command))
    return evaluation
