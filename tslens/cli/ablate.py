"""``tslens ablate``: the one-head vs K-head ablation with K random heads as the control, on
K-task mixture prompts, for K = 1..4 where the tasks exist."""

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


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "ablate",
        help="ablate the top head, the top head of each task, or random heads",
        description="Writes DIR/ablate.json (baseline, one_head, k_heads, random: each task's "
        "probability and other, with the heads used; by_k for K = 1..4) and DIR/ablate.html.",
    )
    parser.add_argument(
        "--tasks", default=None, help=TASKS_HELP.format("one or more tasks of one family: A,B")
    )
    parser.add_argument("--kind", default="mean", help="zero, mean or resample")
    parser.add_argument("--scope", default="final", help="final (the answer position) or all")
    parser.add_argument(
        "--heads", default="auto", help="auto (ranked by single-head ablation) or L.H,... (0.1,2.3)"
    )
    parser.add_argument("--n-random", type=positive_int, default=5, help="random-head draws")
    add_prompt_args(parser, 50)
    add_model_args(parser)
    add_out_args(parser, ("ablate.json", "ablate.html"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tslens.analyses.head.ablation_study import ablation_study
    from tslens.cli.specs import parse_heads
    from tslens.engine.ablation import check_ablation
    from tslens.report.heads import CONDITIONS, write_ablate_html

    check_ablation(args.kind, args.scope)
    tasks = resolve_tasks(args.tasks)
    model = model_from_args(args)
    heads = None
    if args.heads != "auto":
        heads = parse_heads(args.heads, model)
    options = dict(
        kind=args.kind, scope=args.scope, **prompt_spec(args, tasks).arguments(),
        n_random=args.n_random, batch_size=args.batch_size, progress=True,
    )  # fmt: skip
    study = ablation_study(model, tasks, heads=heads, **options).to_json()
    by_k = []
    if heads is None:  # K = 1..4: the first K tasks, each ranked on its own mixture
        by_k = [
            study if k == len(tasks) else ablation_study(model, tasks[:k], **options).to_json()
            for k in range(1, min(4, len(tasks)) + 1)
        ]
    result = {"model": model.tslens_name, "command": "tslens " + " ".join(args.argv), **study,
              "by_k": by_k}  # fmt: skip
    write_json_atomic(args.out / "ablate.json", result)
    write_ablate_html(result, args.out / "ablate.html")
    for condition in CONDITIONS:
        entry = result[condition]
        heads_text = " ".join(f"L{a}.H{b}" for a, b in entry.get("heads", [])) or "-"
        probs = ", ".join(
            f"{t} {p:.3f}" for t, p in zip(result["tasks"], entry["probs"], strict=True)
        )
        print(f"{condition:>9} [{heads_text}]: {probs}, other {entry['other']:.3f}")
    print(f"wrote {args.out}/ablate.json, {args.out}/ablate.html")
    return 0
