"""``tslens patch``: task vectors at every layer, patched alone and in convex combinations into
zero-shot queries, against real in-context mixtures (paper Sec. 6)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tslens.cli.common import (
    TASKS_HELP,
    add_model_args,
    add_prompt_args,
    model_from_args,
    prompt_spec,
)
from tslens.cli.outputs import add_out_args
from tslens.cli.specs import parse_lambdas, parse_layers
from tslens.errors import TslensError
from tslens.io import write_json_atomic
from tslens.tasks import resolve_tasks

if TYPE_CHECKING:
    import torch


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "patch",
        help="patch task vectors and their convex combinations, layer by layer",
        description="Writes DIR/patch.json and DIR/patch.html. With K=2 tasks lambda weights "
        "the first task's vector (lambda*v_A + (1-lambda)*v_B); with K>=3 lambda walks from "
        "the uniform mix (0) to the midpoint of tasks 2..K (1), as in the paper.",
    )
    parser.add_argument(
        "--tasks", default=None, help=TASKS_HELP.format("two or more tasks of one family: A,B[,C]")
    )
    parser.add_argument("--layers", default="all", help="all, a:b (layers a..b-1) or l1,l2,...")
    parser.add_argument("--lambdas", default="0:1:11", help="start:stop:count or a list 0,0.5,1")
    parser.add_argument("--mode", default="replace", choices=["replace", "add"])
    add_prompt_args(parser, 50)
    parser.add_argument(
        "--vectors",
        type=Path,
        default=None,
        help="task-vector file (safetensors): loaded if it exists, else computed and saved there",
    )
    parser.add_argument(
        "--multi-layer",
        action="store_true",
        help="patch each layer's vector at layer l AND every later layer (weak single layers)",
    )
    parser.add_argument("--no-geometry", action="store_true", help="skip LDA/PCA/t-SNE")
    add_model_args(parser)
    add_out_args(parser, ("patch.json", "patch.html"))
    parser.set_defaults(run=run)


def sweep_points(lambdas: list[float], k: int) -> torch.Tensor:
    from tslens.analyses.layer.sweeps import lambda_points, simplex_path

    if k == 2:
        return lambda_points(lambdas)
    return simplex_path([1 / k] * k, [0.0] + [1 / (k - 1)] * (k - 1), lambdas)


def run(args: argparse.Namespace) -> int:
    from tslens.analyses.layer.geometry import vector_geometry
    from tslens.analyses.layer.sweeps import patch_sweep
    from tslens.analyses.layer.task_vectors import TaskVectors, task_vectors
    from tslens.hooks.names import check_layers
    from tslens.report.patch import write_patch_html

    tasks = resolve_tasks(args.tasks)
    if len(tasks) < 2:
        raise TslensError("a patch sweep needs at least two tasks (--tasks A,B)")
    names = [t.name for t in tasks]
    lambdas = parse_lambdas(args.lambdas)
    model = model_from_args(args)
    layers = check_layers(model, parse_layers(args.layers, model.cfg.n_layers))
    spec = prompt_spec(args, tasks)
    if args.vectors and args.vectors.exists():
        vectors = TaskVectors.load(args.vectors, model)
        vectors.select(names)
    else:
        vectors = task_vectors(
            model, tasks, **spec.arguments(), batch_size=args.batch_size, progress=True
        )
        if args.vectors:
            vectors.save(args.vectors)
    common = dict(
        layers=layers, n_prompts=spec.n_prompts, seed=spec.seed + 1, mode=args.mode,
        template=args.template, onward=args.multi_layer, batch_size=args.batch_size,
    )  # fmt: skip
    sweep = patch_sweep(
        model, vectors, names, sweep_points(lambdas, len(names)), icl_examples=spec.n_examples,
        progress=True, **common,
    )  # fmt: skip
    # the layer sweep of pure vectors is the sweep's corners when it has them (K = 2 with
    # lambda 0 and 1), on the same queries; else its own sweep
    layer_sweep = sweep.corners() or patch_sweep(model, vectors, names, progress=True, **common)
    result = {
        "model": model.tslens_name,
        **sweep.to_json(),
        "lambdas": lambdas,
        "best_layer": layer_sweep.best_layer(),
        "layer_sweep": layer_sweep.to_json(),
        "n_examples": spec.n_examples,
        "vectors": vectors.settings,
    }
    if not args.no_geometry:
        result["geometry"] = vector_geometry(
            model, tasks, **spec.arguments(), layers=layers, batch_size=args.batch_size,
            progress=True,
        ).to_json()  # fmt: skip
    write_json_atomic(args.out / "patch.json", result)
    write_patch_html(result, args.out / "patch.html")
    for k, name in enumerate(names):
        layer = result["best_layer"][name]
        i = layers.index(layer)
        print(
            f"{name}: best layer {layer}, P({name}) with its vector "
            f"{layer_sweep.probs[i, k, k]:.3f} vs zero-shot {layer_sweep.baseline[k]:.3f}"
        )
    print(f"wrote {args.out}/patch.json, {args.out}/patch.html")
    return 0
