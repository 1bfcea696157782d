"""``tslens types``: what kind of head every attention head is (induction, previous-token and
function-vector scores, its role in superposition) and Yin & Steinhardt's ablation of the top
FV heads against the top induction heads."""

from __future__ import annotations

import argparse
import time

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
        "types",
        help="type every head (induction, previous-token, FV, superposition role) and ablate "
        "the top FV vs the top induction heads",
        description="Writes DIR/types.json (one row per head: induction, previous_token, fv, "
        "aie, patch, ablation, demo_mass, evenness, role; fv_vs_induction: the ablation) and "
        "DIR/types.html (induction vs FV score, coloured by role; the ablation's curves).",
    )
    parser.add_argument(
        "--tasks", default=None, help=TASKS_HELP.format("two or more tasks of one family: A,B")
    )
    parser.add_argument(
        "--ns",
        default="1,2,4,8",
        help="head counts n of the FV vs induction ablation (default 1,2,4,8)",
    )
    parser.add_argument("--no-ablation", action="store_true", help="type the heads only")
    parser.add_argument(
        "--sequences",
        type=positive_int,
        default=20,
        help="repeated random sequences of the induction probe (default 20)",
    )
    parser.add_argument("--length", type=positive_int, default=25,
                        help="tokens repeated in each probe sequence (default 25)")  # fmt: skip
    add_prompt_args(parser, 20)
    add_model_args(parser)
    add_out_args(parser, ("types.json", "types.html"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tslens.analyses.head.fv_vs_induction import fv_vs_induction
    from tslens.analyses.head.types import type_heads
    from tslens.cli.specs import parse_counts
    from tslens.report.types import write_types_html

    ns = parse_counts(args.ns, "--ns")
    tasks = resolve_tasks(args.tasks)
    model = model_from_args(args)
    spec = prompt_spec(args, tasks)
    start = time.perf_counter()
    types = type_heads(model, tasks, spec, args.sequences, args.length,
                       batch_size=args.batch_size, progress=True)  # fmt: skip
    result = {"model": model.tslens_name, "command": "tslens " + " ".join(args.argv),
              **types.to_json(), "seconds": {"typing": time.perf_counter() - start}}  # fmt: skip
    if not args.no_ablation:
        start = time.perf_counter()
        result["fv_vs_induction"] = fv_vs_induction(model, tasks, types, spec, ns,
                                                    args.batch_size, progress=True)  # fmt: skip
        result["seconds"]["ablation"] = time.perf_counter() - start
    write_json_atomic(args.out / "types.json", result)
    write_types_html(result, args.out / "types.html")
    for row in result["heads"][:5]:
        print(f"L{row['layer']}.H{row['head']}: FV {row['fv']:.4f} (rank {row['fv_rank']}), "
              f"induction {row['induction']:.3f} (rank {row['induction_rank']}), "
              f"previous-token {row['previous_token']:.3f}, role {row['role']}")  # fmt: skip
    print(f"Spearman(FV, induction) over heads: {result['fv_induction_spearman']:.3f}; typing "
          f"took {result['seconds']['typing']:.0f} s")  # fmt: skip
    if "fv_vs_induction" in result:
        ablation = result["fv_vs_induction"]
        base = ablation["baseline"]
        print(f"FV vs induction ablation: baseline accuracy "
              f"{', '.join(f'{a:.2f}' for a in base['accuracy'])}, all-answers share "
              f"{base['all_answers_share']:.2f}")  # fmt: skip
        for n in ablation["conditions"]["fv"]:
            parts = [
                f"{name} accuracy drop {ablation['conditions'][name][n]['accuracy_drop']:+.2f}, "
                f"share drop {ablation['conditions'][name][n]['share_drop']:+.2f}"
                for name in ("fv", "induction", "random")
            ]
            print(f"  n={n}: " + "; ".join(parts))
    print(f"wrote {args.out}/types.json, {args.out}/types.html")
    return 0
