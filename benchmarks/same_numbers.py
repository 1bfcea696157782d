"""Do two versions of tslens compute the same numbers? Runs one set of CLI commands with this
checkout's tslens and with another revision's (a git worktree), and compares every number of
their JSON results; one JSON line per command with the largest absolute difference.

    python benchmarks/same_numbers.py --against c24b4dd      # the commit before the redesign

Timings (``seconds``, ``cost_vs_greedy``) and the command line are not compared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {  # name -> arguments; the shipped char model unless --model says otherwise
    "probs": "probs --tasks plus2,plus5 --n-prompts 6",
    "probs_iid3": "probs --tasks plus1,plus2,plus5 --weights 0.5,0.25,0.25 --n-prompts 5 "
    "--sampling iid",
    "patch": "patch --tasks plus2,plus5 --n-prompts 6 --lambdas 0:1:3",
    "heads": "heads --tasks plus2,plus5 --n-prompts 4",
    "ablate": "ablate --tasks plus2,plus5 --n-prompts 4 --n-random 1",
    "demos": "demos --tasks plus2,plus5 --n-prompts 3",
    "decode": "decode --tasks plus2,plus5 --n-prompts 3 --n-samples 3",
    "gpt2_probs": "probs --model gpt2-small-random --tasks capital,continent --n-prompts 4 "
    "--n-examples 10",
    "gpt2_patch": "patch --model gpt2-small-random --tasks capital,continent --n-prompts 4 "
    "--n-examples 8 --lambdas 0,1 --no-geometry",
}
UNCOMPARED = {"seconds", "cost_vs_greedy", "command"}


def run_all(tree: Path, out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TSLENS_QUIET": "1"}
    for name, args in COMMANDS.items():
        argv = [sys.executable, "-m", "tslens", *args.split(), "--out", str(out / name)]
        done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{tree}: {args} failed:\n{done.stderr[-2000:]}")


def largest_difference(a, b, path: str = "") -> tuple[float, str]:
    """The largest |a - b| over the numbers of two JSON values, and where; inf where the
    structure or a non-number differs."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (set(a) | set(b)) - UNCOMPARED
        if set(a) - UNCOMPARED != set(b) - UNCOMPARED:
            return math.inf, f"{path}: keys {sorted(set(a) ^ set(b))}"
        return max((largest_difference(a[k], b[k], f"{path}/{k}") for k in keys), default=(0, ""))
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return math.inf, f"{path}: lengths {len(a)} != {len(b)}"
        pairs = (
            largest_difference(x, y, f"{path}[{i}]")
            for i, (x, y) in enumerate(zip(a, b, strict=True))
        )
        return max(pairs, default=(0, ""))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return (0.0 if a == b or (math.isnan(a) and math.isnan(b)) else abs(a - b)), path
    nan = (None, "NaN")  # JSON null for NaN is the same value
    if a == b or (a is None and isinstance(b, float) and math.isnan(b)) or (b in nan and a in nan):
        return 0.0, path
    return math.inf, f"{path}: {str(a)[:60]!r} != {str(b)[:60]!r}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(other), args.against],
                       cwd=ROOT, check=True)  # fmt: skip
        try:
            with ThreadPoolExecutor(2) as pool:  # the two versions side by side
                for job in [pool.submit(run_all, t, Path(tmp) / n)
                            for t, n in ((ROOT, "ours"), (other, "theirs"))]:  # fmt: skip
                    job.result()
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT)
        for name in COMMANDS:
            for ours in sorted((Path(tmp) / "ours" / name).glob("*.json")):
                theirs = Path(tmp) / "theirs" / name / ours.name
                diff, where = largest_difference(json.loads(ours.read_text()),
                                                 json.loads(theirs.read_text()))  # fmt: skip
                print(json.dumps({"metric": f"same_numbers/{name}/{ours.name}",
                                  "against": args.against, "max_abs_diff": diff,
                                  "where": where if diff else ""}))  # fmt: skip


if __name__ == "__main__":
    main()
