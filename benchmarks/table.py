"""The README's speed table from benchmark runs: one row per (model, metric).

python benchmarks/run.py --quick --model gemma-3-270m > gemma.jsonl
python benchmarks/run.py --quick > gpt2.jsonl
python benchmarks/table.py gemma.jsonl gpt2.jsonl     # markdown on stdout
"""

from __future__ import annotations

import json
import sys


def cell(row: dict, key: str, spec: str = ".2f", suffix: str = "") -> str:
    value = row.get(key)
    if value is None:
        return "—"
    goal = row.get(f"goal_{key}")
    text = f"{value:{spec}}{suffix}"
    if goal is None:
        return text
    goal_text = f"{goal:{spec}}" if spec.endswith("%") else f"{goal:g}"
    return f"{text} (goal {goal_text}{suffix})"


def main(paths: list[str]) -> int:
    print("| model | metric | speedup vs naive | vs floor | max abs diff vs naive | ours (s) |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if row["metric"] == "capture_memory":
                    speed = f"peak {cell(row, 'peak_over_weights', suffix='x')} of weights"
                elif row["metric"] == "bridge_overhead":
                    speed = f"bridge +{cell(row, 'overhead', '.1%')}"
                elif row["metric"] == "decode_branch":
                    greedy = row["cost_vs_greedy"]
                    speed = f"{cell(row, 'speedup', '.1f', 'x')}; {greedy:.2f}x greedy"
                else:
                    speed = cell(row, "speedup", ".1f", "x")
                # vs the naive loop: in log-probability, or for ablate_rank in probability
                diff = row.get("max_abs_diff_logprob", row.get("max_abs_diff"))
                seconds = row.get("ours_s", row.get("bridge_s", row.get("seconds")))
                print(f"| {row['model']} | {row['metric']} | {speed} | "
                      f"{cell(row, 'vs_floor', '.2f', 'x')} | "
                      f"{'—' if diff is None else f'{diff:.1e}'} | "
                      f"{'—' if seconds is None else f'{seconds:.1f}'} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
