"""``tslens doctor``: versions, device, and every fast path against its plain reference."""

from __future__ import annotations

import argparse
import sys

from tslens.cli.common import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "doctor",
        help="check every fast path against its plain-forward reference (run after installing)",
        description="Prints the versions of the libraries tslens's exactness depends on, the "
        "device and dtype, then one line per fast path and model with its largest |Δ log p| "
        "against the plain-forward reference. Exit 0 when all agree within tolerance, 1 "
        "otherwise. Without --model it checks tiny models of every architecture tslens ships.",
    )
    parser.add_argument("--model", default=None,
                        help="run the checks on this model instead (a few prompts)")  # fmt: skip
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument(
        "--quick", action="store_true", help="only the subset every analysis runs once"
    )
    parser.add_argument("--n-prompts", type=positive_int, default=3,
                        help="prompts per check (default 3)")  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from tslens.doctor import QUICK, diagnose, versions
    from tslens.doctor.checks import TOLERANCE

    for name, value in versions().items():
        print(f"{name:<17} {value}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"{'device':<17} {device}\n{'dtype':<17} {args.dtype}\ntolerance        {TOLERANCE:g}")
    sys.stdout.flush()
    checks = diagnose(args.model, device=device, dtype=args.dtype, n_prompts=args.n_prompts,
                      plan=QUICK if args.quick else None,
                      on_check=lambda c: print(c.line(), flush=True))  # fmt: skip
    failed = [c for c in checks if not c.ok]
    if failed:
        print(
            f"{len(failed)} of {len(checks)} checks FAILED: tslens's numbers are not exact with "
            "these versions; install the tested set (pip install -c constraints.txt ...)"
        )
        return 1
    print(f"all {len(checks)} checks agree with their plain references")
    return 0
