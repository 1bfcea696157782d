"""``tslens reproduce``: the claims registry (tslens/data/claims.toml) checked on one model."""

from __future__ import annotations

import argparse
import json

from tslens.cli.common import add_model_args, model_from_args, positive_int
from tslens.cli.outputs import add_out_args
from tslens.errors import TslensError
from tslens.io import write_json_atomic


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "reproduce",
        help="check the paper's, its rebuttal's and follow-up papers' claims on a model",
        description="Runs every measurement the chosen claims read once (shared between "
        "claims), then judges each claim by the rule in tslens/data/claims.toml. Writes "
        "DIR/claims.json, DIR/claims.md (the table) and DIR/report.html.",
    )
    parser.add_argument("--quick", action="store_true", help="the registry's quick sizes")
    parser.add_argument("--only", default=None, help="claim ids, comma-separated (default all)")
    parser.add_argument("--list", action="store_true", help="list the claims and exit")
    parser.add_argument("--pair", default=None,
                        help="the task pair of the pair-based claims, A,B (default: the first "
                        "candidate that passes the registry's pair rule, a character model's "
                        "training tasks tried first)")  # fmt: skip
    parser.add_argument("--n-examples", type=positive_int, default=None,
                        help="demonstrations per prompt of the pair-based measurements "
                        "(default: 20 for the char models' tasks, else 30)")  # fmt: skip
    parser.add_argument("--template", default=None, help="prompt template (default: the "
                        "model's own, else each task family's)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    add_model_args(parser)
    add_out_args(parser, ("claims.json", "claims.md", "report.html"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tslens.claims.registry import load_registry
    from tslens.claims.reproduce import reproduce
    from tslens.prompts import CHARACTER_FAMILIES
    from tslens.report.claims import write_claims
    from tslens.sources.loader import default_tasks
    from tslens.tasks import resolve_tasks

    registry = load_registry()
    only = [c.strip() for c in args.only.split(",") if c.strip()] if args.only else None
    claims = registry.select(only)  # an unknown id fails before the model loads
    if args.list:
        for claim in claims:
            print(f"{claim.id:<38} {claim.source}")
        return 0
    pair = None
    if args.pair:
        pair = [t.name for t in resolve_tasks(args.pair)]
        if len(pair) != 2:
            raise TslensError(f"--pair needs two tasks, A,B (got {len(pair)})")
    own = default_tasks(args.model)  # a character model's training tasks are its candidates
    own_pair = [t.name for t in resolve_tasks(own)] if own else None
    if own_pair and resolve_tasks(own_pair)[0].family.name not in CHARACTER_FAMILIES:
        own_pair = None
    model = model_from_args(args)
    result = reproduce(model, quick=args.quick, only=only, pair=pair, template=args.template,
                       n_examples=args.n_examples, seed=args.seed, registry=registry,
                       batch_size=args.batch_size, progress=True, own_pair=own_pair)  # fmt: skip
    record = {**result.to_json(), "command": "tslens " + " ".join(args.argv)}
    write_json_atomic(args.out / "claims.json", json.loads(json.dumps(record, default=str)))
    write_claims(record, args.out)
    chosen = result.settings["pair"]
    print(f"pair: {'/'.join(chosen) if chosen else 'none passes the rule'} "
          f"(chosen by {result.settings['pair_chosen_by']})")
    for row in result.verdicts:
        print(f"{row['id']:<38} {row['verdict']:<18} {format_value(row):>22}  "
              f"{row.get('rule') or row['why']}")
    counts = ", ".join(f"{n} {v}" for v, n in result.counts().items())
    print(f"{len(result.verdicts)} claims: {counts}; wrote {args.out}/claims.json, claims.md, "
          "report.html")  # fmt: skip
    return 0


def format_value(row: dict) -> str:
    """``0.123 [0.1, 0.15]``, or "" when the claim has no value."""
    if row["value"] is None:
        return ""
    bounds = row.get("interval")
    return f"{row['value']:.3g}" + (f" [{bounds[0]:.3g}, {bounds[1]:.3g}]" if bounds else "")
