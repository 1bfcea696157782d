"""``tslens scale``: the same mixture prompts through a ladder of models (paper Finding 5)."""

from __future__ import annotations

import argparse

from tslens.cli.common import (
    TASKS_HELP,
    add_model_args,
    add_prompt_args,
    default_n_examples,
    model_from_args,
    positive_int,
)
from tslens.cli.outputs import add_out_args
from tslens.errors import TslensError
from tslens.io import write_json_atomic
from tslens.prompts import build_mixture_prompts, parse_weights
from tslens.tasks import resolve_tasks


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "scale",
        help="per-task probabilities, calibration, tasks solved and accuracy across models",
        description="Writes DIR/scale.json and DIR/scale.html (each metric vs model size).",
    )
    parser.add_argument("--models", required=True,
                        help="comma-separated hub ids, local directories or shipped names, "
                        "e.g. a size ladder smallest first")  # fmt: skip
    parser.add_argument(
        "--tasks", default=None, help=TASKS_HELP.format("comma-separated task names or files")
    )
    parser.add_argument("--weights", nargs="+", default=None,
                        help="one or more weight settings, e.g. 0.5,0.5 0.7,0.3 "
                        "(default: uniform)")  # fmt: skip
    add_prompt_args(parser, n_prompts=100)
    parser.add_argument("--accuracy-prompts", type=positive_int, default=None,
                        help="one-task prompts per task for accuracy "
                        "(default: --n-prompts)")  # fmt: skip
    parser.add_argument("--token-level", action=argparse.BooleanOptionalAction, default=None,
                        help="first-token probabilities too (default: when every model shares "
                        "a tokenizer; an error with different tokenizers)")  # fmt: skip
    add_model_args(parser, with_model=False)
    add_out_args(parser, ("scale.json", "scale.html"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tslens.analyses.prompt.scaling import scale_study
    from tslens.report.scale import weights_label, write_scale_html

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise TslensError("--models is empty; pass M1,M2,...")
    tasks = resolve_tasks(args.tasks)
    weights = [parse_weights(w, len(tasks)) for w in args.weights or [None]]
    n_examples = args.n_examples or default_n_examples(tasks)
    for w in weights:  # bad prompt settings fail before any model loads
        build_mixture_prompts(tasks, w, 1, n_examples, args.seed, args.template)
    study = scale_study(
        models,
        tasks,
        weights,
        args.n_prompts,
        n_examples,
        args.seed,
        args.template,
        args.accuracy_prompts,
        args.token_level,
        args.batch_size,
        load=lambda spec: model_from_args(args, spec),
        trust_remote_code=args.trust_remote_code,
    )
    result = {**study.to_json(), "command": "tslens " + " ".join(args.argv)}
    write_json_atomic(args.out / "scale.json", result)
    write_scale_html(result, args.out / "scale.html")
    print(f"{'model':<32} {'params':>10} {'weights':>9} {'P(tasks)':>20} {'other':>7} "
          f"{'KL':>7} {'solved':>6} {'acc':>5}")  # fmt: skip
    for row in study.rows:
        for mix in row["mixtures"]:
            probs = " ".join(f"{p:.3f}" for p in mix["mean_probs"])
            weights_text = weights_label(mix["weights"])
            print(
                f"{row['model'][-32:]:<32} {row['params']['total']:>10,} {weights_text:>9} "
                f"{probs:>20} {mix['other']:>7.3f} {mix['kl']:>7.3f} "
                f"{mix.get('mean_tasks_solved', float('nan')):>6.2f} {row['min_accuracy']:>5.2f}"
            )
    print(f"wrote {args.out}/scale.json, {args.out}/scale.html")
    return 0
