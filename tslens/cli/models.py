"""``tslens models``: every model tslens can load here, and how to get the ones it cannot."""

from __future__ import annotations

import argparse
import json

from tslens.sources.loader import DEFAULT_MODEL, list_models


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "models",
        help="list the shipped, fixture and pretrained models (installed or not)",
        description="Shipped models load at once; pretrained GGUF models are converted into the "
        "cache ($TSLENS_CACHE, default ~/.cache/tslens) on first use. Any local HF directory, "
        ".gguf file or (with network) hub id works with --model too.",
    )
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.set_defaults(run=run)


def _status(row: dict) -> str:
    if not row["installed"]:
        return "not installed"
    if row["kind"] == "pretrained":
        return "ready (converted)" if row["converted"] else "installed (converts on first use)"
    return "ready" if row["converted"] else "builds on first use"


def run(args: argparse.Namespace) -> int:
    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<22} {'kind':<10} {'status':<34} {'default --tasks':<32} shape")
    for row in rows:
        name = row["name"] + (" *" if row["name"] == DEFAULT_MODEL else "")
        print(f"{name:<22} {row['kind']:<10} {_status(row):<34} {row['tasks']:<32} "
              f"{row['shape']}")  # fmt: skip
    print("\n* the default model. Pretrained models:")
    for row in rows:
        if row["kind"] == "pretrained":
            print(f"  {row['name']}: {row['size']}; {row['source']}; licence: {row['licence']}")
            if not row["installed"]:
                print(f"    install: {row['install']}")
    return 0
