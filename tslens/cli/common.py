"""Options shared by subcommands and the model loading they imply."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

from tslens.errors import TslensError
from tslens.prompts import PromptSpec, default_n_examples, parse_weights
from tslens.sources.loader import DEFAULT_MODEL, DTYPES, default_tasks, load_model
from tslens.sources.pretrained import default_template
from tslens.tasks import Task

DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
log = logging.getLogger("tslens.cli")
TEMPLATE_HELP = (
    "arrow, spaced, qa, example, gt, or '{x}->{y}' (default: the model's own, else the tasks')"
)


def add_model_args(parser: argparse.ArgumentParser, with_model: bool = True) -> None:
    """``--model`` (unless ``with_model`` is false), ``--device``, ``--dtype``,
    ``--batch-size``, ``--trust-remote-code``."""
    if with_model:
        parser.add_argument(
            "--model",
            default=None,
            help="shipped or pretrained model name (tslens models), hub id, local HF directory or "
            f".gguf file (default: {DEFAULT_MODEL})",
        )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument(
        "--device-map",
        default=None,
        help="multi-GPU placement as transformers takes it: auto, balanced, sequential, or a "
        "JSON module->device map such as '{\"\": 0}' (excludes --device)",
    )
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument(
        "--batch-size", type=int, default=None, help="prompts per forward pass (default: auto)"
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="run the checkpoint's own code"
    )


def model_from_args(args: argparse.Namespace, spec: str | None = None):
    """Load the model named by ``--model`` (or ``spec``) with ``--device/--dtype`` (see
    :func:`load_model`). The first analysis in an environment whose library versions were
    never checked runs the quick exactness checks first (:func:`tslens.doctor.ensure_checked`)."""
    from tslens.doctor import ensure_checked

    ensure_checked(args.device)
    log.info("loading %s", spec or args.model or DEFAULT_MODEL)
    return load_model(
        spec or args.model,
        device=args.device,
        dtype=args.dtype,
        device_map=parse_device_map(args.device_map, args.device),
        trust_remote_code=args.trust_remote_code,
    )


def parse_device_map(text: str | None, device: str | None) -> str | dict | None:
    """``--device-map`` as ``boot_transformers`` takes it: a strategy name or a JSON map."""
    if text is None:
        return None
    if device is not None:
        raise TslensError("--device-map places the model itself; drop --device")
    if text.lstrip().startswith("{"):
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as err:
            raise TslensError(f"--device-map is not valid JSON: {err}") from err
        if not isinstance(mapping, dict):
            raise TslensError("--device-map JSON must be an object of module -> device")
        return mapping
    if text not in DEVICE_MAP_STRATEGIES:
        raise TslensError(
            f"unknown --device-map {text!r}; use {', '.join(DEVICE_MAP_STRATEGIES)} or JSON"
        )
    return text


TASKS_HELP = "{} (default: the model's own pair, see tslens models)"
# Commands whose --tasks default to the model's own pair.
TASKS_FROM_MODEL = ("probs", "patch", "heads", "types", "atp", "ablate", "demos", "scale")


def apply_preset(args: argparse.Namespace) -> None:
    """For a command with ``--preset``: the preset fills ``--tasks``, ``--template``,
    ``--n-examples`` and ``--seed`` not given; without one they default to 60 and 0."""
    from tslens.presets import get_preset

    if not hasattr(args, "preset"):
        return
    preset = get_preset(args.preset) if args.preset else None
    if preset is not None:
        if args.tasks is not None:
            raise TslensError("--preset names its tasks; give --preset or --tasks, not both")
        args.tasks = ",".join(preset.tasks)
        args.template = args.template or preset.template
    if args.n_examples is None:  # 0 stays, for the >= 1 check to refuse
        args.n_examples = preset.n_examples if preset else 60
    args.seed = args.seed if args.seed is not None else (preset.seed if preset else 0)


def apply_model_defaults(args: argparse.Namespace) -> None:
    """What a run takes from its model(s) when not given: without ``--template``, a named
    pretrained model's template (``tslens.sources.pretrained``) when every model of the run agrees
    on one, else the tasks' default; without ``--tasks`` (where a command takes them), the
    model's own task pair (:func:`tslens.sources.loader.default_tasks`). A ``--preset``
    comes first (:func:`apply_preset`)."""
    apply_preset(args)
    specs = [getattr(args, "model", None)]
    if getattr(args, "models", None):
        specs = [m.strip() for m in args.models.split(",") if m.strip()]
    if getattr(args, "template", "unset") is None:
        templates = {default_template(spec) for spec in specs}
        if len(templates) == 1:
            args.template = templates.pop()
    if getattr(args, "command", None) in TASKS_FROM_MODEL and args.tasks is None:
        pairs = {default_tasks(spec) for spec in specs}
        if len(pairs) != 1 or None in pairs:
            names = ", ".join(str(s or DEFAULT_MODEL) for s in specs)
            raise TslensError(f"--tasks is required: no default task pair is known for {names}")
        args.tasks = pairs.pop()


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_prompt_args(parser: argparse.ArgumentParser, n_prompts: int) -> None:
    """``--n-prompts/--n-examples/--seed/--template`` for commands built on mixture prompts."""
    parser.add_argument("--n-prompts", type=positive_int, default=n_prompts,
                        help=f"prompts per measurement (default: {n_prompts})")  # fmt: skip
    parser.add_argument("--n-examples", type=positive_int, default=None,
                        help="demonstrations per in-context prompt (default: 20 for the shipped "
                        "model's tasks, else 30)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--template", default=None, help=TEMPLATE_HELP)


def prompt_spec(args: argparse.Namespace, tasks: Sequence[Task]) -> PromptSpec:
    """The prompt settings of a subcommand's ``--n-prompts``, ``--n-examples`` (default
    :func:`default_n_examples`), ``--seed``, ``--template`` and ``--weights`` (when it has it)."""
    weights = getattr(args, "weights", None)
    return PromptSpec(
        n_prompts=args.n_prompts,
        n_examples=args.n_examples or default_n_examples(tasks),
        seed=args.seed,
        template=args.template,
        weights=parse_weights(weights, len(tasks)) if weights is not None else None,
    )


