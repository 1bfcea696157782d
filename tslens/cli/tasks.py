"""``tslens tasks``: list the task registry."""

from __future__ import annotations

import argparse

from tslens.tasks import list_tasks


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tasks", help="list the registered tasks and their input families")
    parser.add_argument("--family", default=None, help="only tasks of this input family")
    parser.add_argument("--presets", action="store_true",
                        help="list the named configurations (tslens probs --preset)")  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    if args.presets:
        from tslens.presets import presets

        print(f"{'preset':<10} {'demos':>5} {'template':<11} {'draws':<7} tasks (source)")
        for p in presets().values():
            print(f"{p.name:<10} {p.n_examples:>5} {p.template:<11} {p.generator:<7} "
                  f"{','.join(p.tasks)} ({p.source})")  # fmt: skip
        return 0
    rows = [t for t in list_tasks() if args.family in (None, t.family.name)]
    print(f"{'task':<20} {'family':<9} {'example':<34} description")
    for task in rows:
        x = task.family.sample(np.random.default_rng(0), 1)[0]
        example = f"{x} -> {task.answer(x)}"
        print(f"{task.name:<20} {task.family.name:<9} {example[:34]:<34} {task.description}")
    print("\nAny JSON/JSONL/CSV file of input,output pairs is a task too: --tasks my_task.csv")
    return 0
