"""``tslens demos``: which demonstrations of a mixture prompt feed each task's answer, and
which heads read them (deletion of each demonstration and of each task's demonstrations,
attention from the answer position per head)."""

from __future__ import annotations

import argparse

from tslens.cli.common import (
    TASKS_HELP,
    add_model_args,
    add_prompt_args,
    model_from_args,
    prompt_spec,
)
from tslens.cli.outputs import add_out_args
from tslens.io import write_json_atomic
from tslens.tasks import resolve_tasks


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demos",
        help="attribute each answer to the demonstrations (deletion) and heads (attention)",
        description="Writes DIR/demos.json (tasks, per_prompt, by_task, by_distance, "
        "last_demo_gap, nearest_share, additivity, heads; with --ablate, averaging_test) and "
        "DIR/demos.html.",
    )
    parser.add_argument(
        "--tasks", default=None, help=TASKS_HELP.format("two or more tasks of one family: A,B")
    )
    parser.add_argument(
        "--heads", default="", help="heads to list first, L.H,... (e.g. tslens heads' top ones)"
    )
    parser.add_argument("--no-attention", action="store_true", help="skip the heads' attention")
    parser.add_argument(
        "--ablate", default="",
        help="heads L.H,... to mean-ablate (every position) and measure again, with a control "
        "head ablated the same way: the causal test of an averaging head (demos.json "
        "averaging_test)",
    )  # fmt: skip
    add_prompt_args(parser, 50)
    add_model_args(parser)
    add_out_args(parser, ("demos.json", "demos.html"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tslens.analyses.head.demo_attention import attention_to_demonstrations, head_summary
    from tslens.analyses.prompt.demonstrations import demonstration_effects, demos_json
    from tslens.cli.specs import parse_heads
    from tslens.report.demos import write_demos_html

    tasks = resolve_tasks(args.tasks)
    model = model_from_args(args)
    top = parse_heads(args.heads, model)
    effects = demonstration_effects(
        model, tasks, **prompt_spec(args, tasks).arguments(), batch_size=args.batch_size,
        progress=True,
    )  # fmt: skip
    heads = None
    if not args.no_attention:
        mass = attention_to_demonstrations(
            model, [p.text for p in effects.prompts], effects.spans, args.batch_size, True
        )
        heads = head_summary(mass, effects.demo_tasks, effects.tasks, top)
    result = {"model": model.tslens_name, "command": "tslens " + " ".join(args.argv),
              **demos_json(effects, heads)}  # fmt: skip
    if args.ablate:
        from tslens.analyses.head.averaging import averaging_test

        result["averaging_test"] = averaging_test(
            model, tasks, parse_heads(args.ablate, model), prompt_spec(args, tasks), effects,
            batch_size=args.batch_size, progress=True,
        )  # fmt: skip
    write_json_atomic(args.out / "demos.json", result)
    write_demos_html(result, args.out / "demos.html")
    for k, task in enumerate(result["tasks"]):
        share, count = result["nearest_share"][k], result["mean_count"][k]
        additive = result["additivity"][k]
        removed = ", ".join(
            f"{result['by_task'][i][k]:+.3f} without {other}"
            for i, other in enumerate(result["tasks"])
        )
        print(f"{task}: P {result['p'][k]:.3f}; nearest share "
              f"{'n/a' if share is None else f'{share:.2f}'} (even average {1 / count:.2f}); "
              f"additivity {'n/a' if additive is None else f'{additive:.2f}'}; "
              f"{removed}")  # fmt: skip
    if heads:
        first = ", ".join(
            f"L{h['layer']}.H{h['head']} (mass {sum(h['mass']):.2f}, nearest share "
            f"{max(h['nearest_share']):.2f})"
            for h in heads["heads"][:3]
        )
        print(f"heads: {first}")
    if args.ablate:
        test = result["averaging_test"]
        for name in ("ablated", "control"):
            heads_named = test["heads"] if name == "ablated" else [test["control"]]
            which = ",".join(f"L{lay}.H{h}" for lay, h in heads_named)
            got = test["conditions"][name]
            print(f"{name} {which}: " + "; ".join(
                f"{task} P {got['p'][k]:.3f}, nearest share {_fmt(got['nearest_share'][k])}, "
                f"additivity {_fmt(got['additivity'][k])}"
                for k, task in enumerate(test["tasks"])
            ))  # fmt: skip
    print(f"wrote {args.out}/demos.json, {args.out}/demos.html")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
