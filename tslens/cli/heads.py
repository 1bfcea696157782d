"""``tslens heads``: attribute every task's answer to every attention head (DLA, activation
patching, AIE with function vectors) and each head's share of each task."""

from __future__ import annotations

import argparse

from tslens.cli.common import (
    TASKS_HELP,
    add_model_args,
    add_prompt_args,
    model_from_args,
    positive_int,
    prompt_spec,
)
from tslens.cli.outputs import add_out_args
from tslens.io import write_json_atomic
from tslens.tasks import resolve_tasks

# tslens.analyses.head.heads.METHODS, written out so that building the parser imports no torch
# (tests/test_cli.py checks that they agree).
METHODS = ("dla", "patch", "aie")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "heads",
        help="which attention heads carry which task's answer",
        description="Writes DIR/heads.json (scores[method][task][layer][head], shares, top "
        "heads, function vectors) and DIR/heads.html. Methods: dla (direct logit "
        "attribution), patch (clean head patched into shuffled-label prompts), aie (Todd et "
        "al.'s average indirect effect, with each task's function vector).",
    )
    parser.add_argument(
        "--tasks", default=None, help=TASKS_HELP.format("one or more tasks of one family: A,B")
    )
    parser.add_argument("--method", default=",".join(METHODS), help=f"any of {','.join(METHODS)}")
    parser.add_argument(
        "--fv-heads", type=positive_int, default=None,
        help="heads in a function vector (default: min(10, all heads / 4))",
    )  # fmt: skip
    add_prompt_args(parser, 20)
    add_model_args(parser)
    add_out_args(parser, ("heads.json", "heads.html"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tslens.analyses.head.heads import attribute_heads, check_methods
    from tslens.report.heads import write_heads_html

    methods = check_methods([m.strip() for m in args.method.split(",") if m.strip()])
    tasks = resolve_tasks(args.tasks)
    model = model_from_args(args)
    result = attribute_heads(
        model, tasks, methods, **prompt_spec(args, tasks).arguments(), fv_heads=args.fv_heads,
        batch_size=args.batch_size, progress=True,
    ).to_json()  # fmt: skip
    result = {"model": model.tslens_name, "command": "tslens " + " ".join(args.argv), **result}
    write_json_atomic(args.out / "heads.json", result)
    write_heads_html(result, args.out / "heads.html")
    for method in methods:
        for task, top in result["top_heads"][method].items():
            best = top[0]
            print(
                f"{method} {task}: top head L{best['layer']}.H{best['head']} ({best['score']:.4f})"
            )
    for task, fv in result.get("function_vectors", {}).items():
        k = result["tasks"].index(task)
        print(f"function vector {task}: P({task}) {fv['best_prob']:.3f} after layer "
              f"{fv['best_layer']} vs zero-shot {fv['zero_shot'][k]:.3f}")  # fmt: skip
    print(f"wrote {args.out}/heads.json, {args.out}/heads.html")
    return 0
