"""``tslens decode``: decoding that keeps the K task answers of a prompt, against greedy and
beam search, and (for mixture prompts) the measurement of generation collapse."""

from __future__ import annotations

import argparse
from pathlib import Path

from tslens.cli.common import (
    add_model_args,
    add_prompt_args,
    model_from_args,
    positive_int,
    prompt_spec,
)
from tslens.cli.outputs import add_out_args
from tslens.errors import TslensError
from tslens.io import write_json_atomic
from tslens.prompts import load_prompt_file
from tslens.tasks import resolve_tasks


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "decode",
        help="return the K task answers of a prompt in one call (vs greedy and beam search)",
        description="Writes DIR/decode.json and DIR/decode.html.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt-file", type=Path, default=None,
                        help=".txt (one prompt) or .json/.jsonl/.csv rows with 'prompt' and "
                        "optional 'answers'")  # fmt: skip
    source.add_argument("--tasks", default=None, help="build mixture prompts of these tasks")
    parser.add_argument("--weights", default=None, help="mixture weights (default even)")
    add_prompt_args(parser, n_prompts=50)
    parser.add_argument("--width", type=positive_int, default=4, help="branches and beams")
    parser.add_argument("--max-new-tokens", type=positive_int, default=12)
    parser.add_argument("--until", choices=["auto", "stop", "length"], default="auto",
                        help="an answer ends at a newline (stop), after the answers' token "
                        "length (length: models never trained to end answers), or auto: "
                        "length when the model rarely ends the task answers")  # fmt: skip
    parser.add_argument("--n-samples", type=positive_int, default=20,
                        help="sampled decodes per prompt for the collapse measurement")  # fmt: skip
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--no-collapse", action="store_true", help="skip greedy/sampled collapse")
    add_model_args(parser)
    add_out_args(parser, ("decode.json", "decode.html"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tslens.analyses.prompt.collapse import generation_collapse
    from tslens.analyses.prompt.decoding import check_width, compare_decoders
    from tslens.analyses.prompt.mixture import complete_by, longest_answer_tokens
    from tslens.report.decode import write_decode_html

    if args.temperature <= 0:
        raise TslensError(f"--temperature must be > 0, got {args.temperature}")
    tasks = None
    if args.tasks:
        tasks = resolve_tasks(args.tasks)
        spec = prompt_spec(args, tasks)
        built = spec.mixture(tasks)
        prompts, answers = [p.text for p in built], [list(p.answers) for p in built]
    else:
        prompts, answers = load_prompt_file(args.prompt_file)
    if answers is not None:  # before the model loads
        check_width(answers, args.width, "--width")
    model = model_from_args(args)
    until, budget = args.until, args.max_new_tokens
    if until == "auto":  # without known answers there is nothing to measure: stop at newline
        until = "stop" if answers is None else complete_by(model, prompts, answers, args.batch_size)
    if until == "length" and answers is not None:
        budget = longest_answer_tokens(model, answers)
    decoding = compare_decoders(
        model, prompts, answers, args.width, budget, finish_at_max=until == "length",
        batch_size=args.batch_size,
    )  # fmt: skip
    result = {
        "model": model.tslens_name,
        "until": until,
        "decoding": decoding,
        "command": "tslens " + " ".join(args.argv),
    }
    if tasks is not None and not args.no_collapse:
        collapse = generation_collapse(
            model, tasks, spec.weights, **spec.arguments(), n_samples=args.n_samples,
            temperature=args.temperature, max_new_tokens=budget,
            finish_at_max=until == "length", batch_size=args.batch_size,
        )  # fmt: skip
        result["collapse"] = collapse.to_json()
    write_json_atomic(args.out / "decode.json", result)
    write_decode_html(result, args.out / "decode.html")
    print(f"{'decoder':<8} {'recovered':>9} {'all K':>6} {'seconds':>8} {'vs greedy':>9}")
    for name, s in decoding["summary"].items():
        print(f"{name:<8} {s.get('mean_recovered', float('nan')):>9.2f} "
              f"{s.get('all_recovered', float('nan')):>6.2f} {s['seconds']:>8.3f} "
              f"{s['cost_vs_greedy']:>9.2f}")  # fmt: skip
    if "collapse" in result:
        c = result["collapse"]
        print("P(answer) before decoding: " + ", ".join(
            f"{t} {p:.3f}" for t, p in zip(c["tasks"], c["step1_mass"], strict=True)))  # fmt: skip
        after = c["continue_after_first"]
        # undefined when every answer is one token (starting a task is finishing it)
        after = "n/a" if after is None or after != after else f"{after:.3f}"
        print(f"tasks completed per prompt: greedy {c['tasks_per_prompt_greedy']:.2f}, "
              f"{args.n_samples} samples {c['tasks_per_prompt_sampled']:.2f}; P(a sample "
              f"that started a task finishes it) {after}")  # fmt: skip
    print(f"wrote {args.out}/decode.json, {args.out}/decode.html")
    return 0
