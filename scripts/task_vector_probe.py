"""Where does the embedded model keep the task at the final token? Reproduces docs/findings.md.

    python scripts/task_vector_probe.py [--n-prompts 30]

For each task pair it prints (1) the zero-shot baseline, (2) P(answers) when the *mean* task
vector (one per task, over in-context prompts) is patched at each layer, replace and add, single
layer and from that layer onward, and (3) P(answers) when each query's *own* in-context final
residual is patched into its zero-shot prompt at each layer.
"""

from __future__ import annotations

import argparse
import json

import torch

from tslens.analyses.layer.sweeps import patch_sweep
from tslens.analyses.layer.task_vectors import task_vectors
from tslens.engine.capture import capture_activations
from tslens.engine.patching import patched_answer_logprobs
from tslens.prompts import build_mixture_prompts, build_query_prompts
from tslens.sources.loader import load_model
from tslens.tasks import resolve_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompts", type=int, default=30)
    args = parser.parse_args()
    model = load_model(device="cpu")
    n = args.n_prompts
    for pair in ("plus2,plus5", "ret2,ret6"):
        tasks = resolve_tasks(pair)
        vectors = task_vectors(model, tasks, n_prompts=n, n_examples=20)
        out: dict = {"pair": pair}
        for mode in ("replace", "add"):
            for onward in (False, True):
                sweep = patch_sweep(model, vectors, n_prompts=n, mode=mode, onward=onward)
                out["baseline"] = [round(p, 3) for p in sweep.baseline.tolist()]
                key = f"mean_vector_{mode}{'_onward' if onward else ''}"
                # [layer][vector of task t][P(answer of task k)]
                out[key] = sweep.probs.round(decimals=3).tolist()
        icl = build_mixture_prompts(tasks, [1.0, 0.0], n, 20, seed=1)
        queries = build_query_prompts(tasks, n, seed=1)
        own = capture_activations(model, [p.text for p in icl])["resid_post"]
        layers = torch.arange(model.cfg.n_layers)
        probs = torch.cat(
            [
                patched_answer_logprobs(model, [q.text], [q.answers], layers, own[i]).exp()
                for i, q in enumerate(queries)
            ]
        ).mean(0)  # [layer, answer]
        out["own_icl_residual_task0"] = probs.round(decimals=3).tolist()
        print(json.dumps(out))


if __name__ == "__main__":
    main()
