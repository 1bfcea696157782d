"""``tslens atp``: attribution patching of every head at every demonstration (AtP and
integrated gradients), checked against exact patching of the same variants."""

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

# tslens.analyses.head.atp.METHODS, written out so that building the parser imports no torch
METHODS = ("atp", "ig")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "atp",
        help="attribution patching of every head x demonstration, against exact patching",
        description="Each variant mean-ablates one head at one demonstration's tokens; its "
        "effect is the change of log P(each task's answer). Writes DIR/atp.json (estimates "
        "[method][task][layer][head][demo], exact, agreement: Spearman and top-10 overlap "
        "per task, seconds) and DIR/atp.html.",
    )
    parser.add_argument(
        "--tasks", default=None, help=TASKS_HELP.format("one or more tasks of one family: A,B")
    )
    parser.add_argument("--method", default=",".join(METHODS), help="any of atp,ig")
    parser.add_argument("--steps", type=positive_int, default=8,
                        help="integrated-gradient steps (default 8)")  # fmt: skip
    parser.add_argument(
        "--no-exact",
        action="store_true",
        help="skip the exact reference (for models too large to patch exactly)",
    )
    add_prompt_args(parser, 4)
    add_model_args(parser)
    add_out_args(parser, ("atp.json", "atp.html"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tslens.analyses.head.atp import attribute_positions
    from tslens.errors import TslensError
    from tslens.report.types import write_atp_html

    methods = list(dict.fromkeys(m.strip() for m in args.method.split(",") if m.strip()))
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise TslensError(f"unknown method {bad[0] if bad else '(none)'!r}; use atp, ig")
    tasks = resolve_tasks(args.tasks)
    model = model_from_args(args)
    result = attribute_positions(
        model, tasks, prompt_spec(args, tasks), methods, not args.no_exact, args.steps,
        args.batch_size, progress=True,
    )  # fmt: skip
    result = {"model": model.tslens_name, "command": "tslens " + " ".join(args.argv), **result}
    write_json_atomic(args.out / "atp.json", result)
    write_atp_html(result, args.out / "atp.html")
    seconds = result["seconds"]
    for method in methods:
        line = f"{method}: {seconds[method]:.1f} s"
        if "agreement" in result:
            line += f" (exact {seconds['exact']:.1f} s, {seconds['exact'] / seconds[method]:.0f}x)"
            for task, a in zip(result["tasks"], result["agreement"][method], strict=True):
                line += (
                    f"; {task}: spearman heads {a['spearman_heads']:.2f}, variants "
                    f"{a['spearman_variants']:.2f}, top-10 {a['top10_variants']:.1f}"
                )
        print(line)
    print(f"wrote {args.out}/atp.json, {args.out}/atp.html")
    return 0
