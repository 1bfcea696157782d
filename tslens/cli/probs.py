"""``tslens probs``: each task's answer probability on mixture prompts (paper Fig. 1-2)."""

from __future__ import annotations

import argparse

from tslens.cli.common import (
    TASKS_HELP,
    TEMPLATE_HELP,
    add_model_args,
    model_from_args,
    positive_int,
)
from tslens.cli.outputs import add_out_args
from tslens.io import write_json_atomic
from tslens.presets import get_preset
from tslens.prompts import PromptSpec, parse_weights
from tslens.tasks import resolve_tasks


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "probs",
        help="answer probability of every task on mixture prompts",
        description="Writes DIR/probs.json and DIR/probs.html.",
    )
    parser.add_argument(
        "--tasks", default=None, help=TASKS_HELP.format("comma-separated task names or files")
    )
    parser.add_argument("--weights", default=None, help="e.g. 0.5,0.5 or 1/3,2/3 (default even)")
    parser.add_argument("--n-prompts", type=positive_int, default=100)
    parser.add_argument(
        "--n-examples",
        type=int,
        default=None,
        help="demonstrations per prompt (default: the preset's, else 60)",
    )
    parser.add_argument("--seed", type=int, default=None,
                        help="(default: the preset's, else 0)")  # fmt: skip
    parser.add_argument("--preset", default=None,
                        help="a named task configuration instead of --tasks: ops, countries, "
                        "words, add (Xiong et al. Fig. 2; `tslens tasks --presets`)")  # fmt: skip
    parser.add_argument("--template", default=None, help=TEMPLATE_HELP)
    parser.add_argument("--sampling", default="exact", choices=["exact", "iid"])
    parser.add_argument("--no-solved", action="store_true", help="skip the top-K beam search")
    add_model_args(parser)
    add_out_args(parser, ("probs.json", "probs.html"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tslens.analyses.prompt.mixture import measure_mixture
    from tslens.report.mixture import write_mixture_html

    tasks = resolve_tasks(args.tasks)
    weights = parse_weights(args.weights, len(tasks))
    spec = PromptSpec(args.n_prompts, args.n_examples, args.seed, args.template, weights,
                      args.sampling)  # fmt: skip
    # Build the prompts (and so check their settings) before spending time on the model.
    prompts = get_preset(args.preset).prompts(spec) if args.preset else spec.mixture(tasks)
    model = model_from_args(args)
    result = measure_mixture(
        model,
        tasks,
        weights,
        args.n_prompts,
        args.n_examples,
        args.seed,
        args.template,
        args.sampling,
        args.batch_size,
        solved=not args.no_solved,
        progress=True,
        prompts=prompts,
    )
    write_json_atomic(args.out / "probs.json", result.to_json())
    write_mixture_html(result, args.out / "probs.html")
    summary = result.summary()
    k_top = len(result.tasks)
    solved = summary.get("solved")
    print(f"{'task':<20} {'weight':>7} {'P(answer)':>10} {'normalised':>10}"
          + (f" {f'solved (top-{k_top})':>16}" if solved else ""))  # fmt: skip
    for k, name in enumerate(result.tasks):
        print(
            f"{name:<20} {weights[k]:>7.3f} {summary['mean_probs'][k]:>10.4f} "
            f"{summary['normalized'][k]:>10.4f}" + (f" {solved[k]:>16.2f}" if solved else "")
        )
    print(f"{'other':<20} {'':>7} {summary['other']:>10.4f}")
    if solved:
        print(
            f"tasks solved per prompt: {summary['mean_tasks_solved']:.2f} of {k_top} (a task is "
            f"solved when its answer is among the {k_top} most likely complete answers)"
        )
    else:
        print("tasks solved: not computed (--no-solved skips its beam search)")
    n_all = round(summary["all_answers_share"] * len(result.prompts))
    gap = summary["last_demo_gap"]
    print(
        f"prompts holding every answer (each P >= 0.1): {n_all} of {len(result.prompts)}"
        + ("" if gap is None else f";  last-demonstration gap {gap:+.3f}")
    )
    print(
        f"KL(in-context || model) = {summary['kl']:.4f} nats;  wrote {args.out}/probs.json, "
        f"{args.out}/probs.html"
    )
    return 0
