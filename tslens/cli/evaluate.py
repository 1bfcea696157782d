"""``tslens evaluate``: single-task accuracy and mixture curves of any model; and
``tslens compare``: several saved evaluations side by side (e.g. the head-count study)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from tslens.cli.common import TEMPLATE_HELP, add_model_args, model_from_args, positive_int
from tslens.cli.outputs import add_out_args
from tslens.errors import TslensError
from tslens.io import read_json, write_json_atomic, write_text_atomic
from tslens.sources.loader import resolve_model
from tslens.tasks import resolve_tasks
from tslens.training.recipe import Recipe


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="single-task accuracy and two-task mixture curves of a model",
        description="Writes DIR/eval.json and DIR/eval.html. For a model trained by tslens "
        "train, tasks, pairs and demonstrations default to its recipe.",
    )
    parser.add_argument("--tasks", default=None, help="tasks for accuracy, comma-separated")
    parser.add_argument("--pairs", default=None, help="mixture-curve pairs: plus2/plus5,ret2/ret6")
    parser.add_argument("--n-prompts", type=positive_int, default=500, help="per task and share")
    parser.add_argument("--n-examples", type=positive_int, default=None, help="demos per prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--template", default=None, help=TEMPLATE_HELP)
    add_model_args(parser)
    add_out_args(parser, ("eval.json", "eval.html"))
    parser.set_defaults(run=run)

    compare = sub.add_parser(
        "compare",
        help="overlay the mixture curves of saved evaluations (eval.json files)",
        description="Writes DIR/compare.html and DIR/compare.json; prints the summary table.",
    )
    compare.add_argument("evaluations", nargs="+", type=Path, help="eval.json files")
    compare.add_argument("--title", default="Model comparison")
    add_out_args(compare, ("compare.json", "compare.html"))
    compare.add_argument(
        "--card",
        type=Path,
        default=None,
        help="a trained model directory whose README.md gets (or updates) a section with the "
        "comparison table, titled --title",
    )
    compare.add_argument("--note", default="", help="a reading of the results for the card")
    compare.set_defaults(run=run_compare)


def _recipe_of(spec: str | None) -> Recipe | None:
    path, local = resolve_model(spec)
    recipe = Path(path) / "recipe.toml"
    return Recipe.from_toml(recipe) if local and recipe.exists() else None


def run(args: argparse.Namespace) -> int:
    from tslens.analyses.prompt.curves import SHARES
    from tslens.analyses.prompt.evaluation import evaluate_model
    from tslens.report.evaluation import write_evaluation_html

    recipe = _recipe_of(args.model)
    tasks = args.tasks or (",".join(recipe.tasks) if recipe else None)
    if args.pairs:
        pairs = [p.split("/") for p in args.pairs.split(",")]
    else:
        pairs = recipe.eval_pairs if recipe else []
    if not tasks and not pairs:
        raise TslensError("name --tasks and/or --pairs (this model has no tslens recipe)")
    for pair in pairs:
        if len(resolve_tasks(pair)) != 2:
            raise TslensError(f"a pair has two tasks, got {'/'.join(pair)}")
    task_list = [t.name for t in resolve_tasks(tasks, same_family=False)] if tasks else []
    n_examples = args.n_examples or (recipe.n_demos if recipe else 20)
    model = model_from_args(args)
    evaluation = evaluate_model(
        model,
        task_list,
        pairs,
        args.n_prompts,
        n_examples,
        args.seed,
        args.template,
        SHARES,
        args.batch_size,
    ).to_json()
    write_json_atomic(args.out / "eval.json", evaluation)
    write_evaluation_html([evaluation], args.out / "eval.html", f"{model.tslens_name}: evaluation")
    _print_table([evaluation])
    print(f"wrote {args.out}/eval.json, {args.out}/eval.html")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from tslens.report.card import markdown_table, set_card_section
    from tslens.report.evaluation import curve_table_markdown, summary_rows, write_evaluation_html

    evaluations = []
    for path in args.evaluations:
        evaluations.append(read_json(path, "evaluation", "pass eval.json files of tslens evaluate"))
        if not isinstance(evaluations[-1], dict) or "curves" not in evaluations[-1]:
            raise TslensError(f"{path} is not an eval.json of tslens evaluate / train")
    pairs = {tuple(tuple(c["tasks"]) for c in ev["curves"]) for ev in evaluations}
    if len(pairs) > 1:
        raise TslensError("the evaluations have different task pairs; compare like with like")
    header, rows = summary_rows(evaluations)
    write_json_atomic(
        args.out / "compare.json",
        {"sources": [str(p) for p in args.evaluations], "header": header, "rows": rows},
    )
    write_evaluation_html(evaluations, args.out / "compare.html", args.title)
    if args.card:
        card = args.card / "README.md"  # checked before any work (tslens.cli.outputs)
        body = (
            f"`{'tslens ' + shlex.join(args.argv)}`\n\n" + (args.note + "\n\n" if args.note else "")
            + markdown_table(header, rows) + "\n\n"
            + "\n\n".join(
                f"**{ev['model']}**, {' vs '.join(c['tasks'])}:\n\n" + curve_table_markdown(c)
                for ev in evaluations for c in ev["curves"]
            )
        )  # fmt: skip
        write_text_atomic(card, set_card_section(card.read_text(), args.title, body))
    _print_table(evaluations)
    print(f"wrote {args.out}/compare.json, {args.out}/compare.html")
    return 0


def _print_table(evaluations: list[dict]) -> None:
    from tslens.report.evaluation import summary_rows

    header, rows = summary_rows(evaluations)
    print("  ".join(header))
    for row in rows:
        print("  ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
