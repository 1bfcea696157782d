"""The real-model part of docs/results.md (``python scripts/results_page.py --real``): the
paper's findings on the pretrained LLMs tslens installs (Gemma-3-270M and SmolLM2-135M),
computed here: Finding 1 at 200 prompts, task vectors at 50 queries, the rest at sizes that
keep the whole part near 20 minutes on 2 CPU cores (each section names its size). The larger
runs and their interpretation are in docs/findings.md, each with its command.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import plotly.graph_objects as go
import torch

from tslens.analyses.head.ablation_study import ablation_study
from tslens.analyses.head.demo_attention import attention_to_demonstrations, head_summary
from tslens.analyses.head.heads import attribute_heads
from tslens.analyses.layer.sweeps import lambda_points, patch_sweep
from tslens.analyses.layer.task_vectors import task_vectors
from tslens.analyses.prompt.curves import mixture_curve
from tslens.analyses.prompt.decoding import compare_decoders
from tslens.analyses.prompt.demonstrations import demonstration_effects, demos_json
from tslens.analyses.prompt.mixture import measure_mixture
from tslens.prompts import build_mixture_prompts
from tslens.report.demos import distance_figure
from tslens.report.heads import ablation_bars
from tslens.report.patch import heatmaps
from tslens.sources.loader import load_model
from tslens.tasks import resolve_tasks

MODELS = ("gemma-3-270m", "smollm2-135m")
GROUPS = ("copy_op1,copy_op2", "first_letter,first_letter_upper")
PAIR = "first_letter,first_letter_upper"
TEMPLATE = "spaced"  # both models' own template, `{x} -> {y}`
SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
PATCH_LAYERS = {"gemma-3-270m": range(8, 13), "smollm2-135m": range(18, 24)}  # where they peak


def real_sections(table: Callable, figure: Callable) -> str:
    began = time.perf_counter()
    out = ["# Results on pretrained LLMs (Gemma-3-270M, SmolLM2-135M)\n\n",
           "Template `{x} -> {y}`, 20 demonstrations, equal weights unless stated.\n"]  # fmt: skip
    models = {name: load_model(name, device="cpu") for name in MODELS}

    out.append("\n## Superposition within a prompt (Finding 1), 200 prompts per row\n\n")
    rows, boxes = [], go.Figure()
    for name, model in models.items():
        for group in GROUPS:
            result = measure_mixture(model, group, None, 200, 20, template=TEMPLATE, solved=False)
            s = result.summary()
            probs = " / ".join(f"{p:.3f}" for p in s["mean_probs"])
            rows.append([name, group.replace(",", ", "), probs, s["other"], s["kl"],
                         s["all_answers_share"], s["last_demo_gap"]])  # fmt: skip
            for k, task in enumerate(result.tasks):
                boxes.add_trace(go.Box(y=result.probs[:, k].tolist(), name=f"{name} {task}"))
    out.append(table(["model", "tasks", "mean P per task", "other", "KL", "every answer >= 0.1",
                      "last-demo gap"], rows))  # fmt: skip
    boxes.update_layout(yaxis_title="P(answer | mixture prompt)", showlegend=False)
    out.append("\n" + figure(boxes, "real_finding1_boxes"))

    out.append(f"\n## Calibration ({PAIR}, 50 prompts per share)\n\n")
    rows = []
    for name, model in models.items():
        curve = mixture_curve(model, PAIR, SHARES, n_prompts=50, template=TEMPLATE)
        rows += [[f"{name} P(first_letter)", *curve.probs[:, 0].tolist()],
                 [f"{name} P(first_letter_upper)", *curve.probs[:, 1].tolist()],
                 [f"{name} every answer >= 0.1", *curve.both_share.tolist()]]  # fmt: skip
    out.append(table(["d = share of first_letter", *[f"{d:.1f}" for d in curve.shares]], rows))

    out.append(f"\n## Task vectors and their convex combinations ({PAIR}, 50 queries, the "
               "layers where each model's vectors peak)\n\n")  # fmt: skip
    for name, model in models.items():
        vectors = task_vectors(model, PAIR, n_prompts=50, template=TEMPLATE)
        sweep = patch_sweep(model, vectors, points=lambda_points(torch.linspace(0, 1, 11)),
                            layers=list(PATCH_LAYERS[name]), n_prompts=50,
                            template=TEMPLATE)  # fmt: skip
        result = sweep.to_json()
        probs = torch.tensor(result["probs"])  # [layer, point, task]
        # λ = 0 is first_letter_upper's pure vector, λ = 1 first_letter's: each on its answer
        best = int((probs[:, 0, 1] + probs[:, -1, 0]).argmax())
        rows = [[f"λ = {lam:.1f}", *probs[best, j].tolist(), result["other"][best][j]]
                for j, lam in enumerate(torch.linspace(0, 1, 11).tolist())]  # fmt: skip
        out.append(f"{name}: best layer {result['layers'][best]} (pure vectors' summed lift); "
                   "replace at resid_post, λ = weight of first_letter's vector:\n\n")  # fmt: skip
        out.append(table(["", "P(first_letter)", "P(first_letter_upper)", "other"], rows))
        out.append("\n" + figure(heatmaps(result), f"real_patch_{name}") + "\n")

    gemma = models["gemma-3-270m"]
    pair = resolve_tasks(PAIR)
    out.append(f"\n## Heads on Gemma-3-270M ({PAIR}, 10 prompts)\n\n")
    heads = attribute_heads(gemma, pair, ("dla", "patch"), 10, template=TEMPLATE).to_json()
    rows = [[m, t, ", ".join(f"L{h['layer']}.H{h['head']} {h['score']:.3f}" for h in hs[:3])]
            for m, by_task in heads["top_heads"].items() for t, hs in by_task.items()]  # fmt: skip
    out.append(table(["method", "task", "top 3 heads (score)"], rows))
    study = ablation_study(gemma, pair, n_prompts=20, template=TEMPLATE, n_random=3).to_json()
    rows = [[c, " ".join(f"L{a}.H{b}" for a, b in study[c].get("heads", [])) or "-",
             *study[c]["probs"], study[c]["other"]]
            for c in ("baseline", "one_head", "k_heads", "random")]  # fmt: skip
    out.append("\nMean ablation at the answer position, 20 prompts, 3 random draws:\n\n")
    out.append(table(["condition", "heads", "first_letter", "first_letter_upper", "other"], rows))
    out.append("\n" + figure(ablation_bars(study), "real_ablation_gemma"))

    out.append(f"\n## Decoding ({PAIR}, 30 prompts, width 2)\n\n")
    rows = []
    prompts = build_mixture_prompts(pair, None, 30, 20, 0, TEMPLATE)
    for name, model in models.items():
        decoding = compare_decoders(model, [p.text for p in prompts], [p.answers for p in prompts],
                                    width=2, max_new_tokens=3)  # fmt: skip
        rows += [[name, d, s["mean_recovered"], s["all_recovered"], s["cost_vs_greedy"]]
                 for d, s in decoding["summary"].items()]  # fmt: skip
    out.append(table(["model", "decoder", "answers recovered", "both", "time vs greedy"], rows))

    out.append(f"\n## Which demonstrations feed each answer ({PAIR}, 20 prompts of 20)\n\n")
    rows = []
    for name, model in models.items():
        effects = demonstration_effects(model, pair, 20, 20, template=TEMPLATE)
        mass = attention_to_demonstrations(model, [p.text for p in effects.prompts], effects.spans)
        result = demos_json(effects, head_summary(mass, effects.demo_tasks, effects.tasks))
        for k, task in enumerate(result["tasks"]):
            changes = [r[k] for r in result["by_task"]]
            share, additive = result["nearest_share"][k], result["additivity"][k]
            rows.append([name, task, result["p"][k], share, 1 / result["mean_count"][k],
                         additive, *changes])  # fmt: skip
        out.append(figure(distance_figure(result), f"real_demos_{name}"))
    out.append("\n" + table(["model", "answer", "P", "nearest share", "even average",
                             "additivity", *[f"change without {t.name}" for t in pair]],
                            rows))  # fmt: skip
    out.append(f"\n_Generated in {time.perf_counter() - began:.0f} s on "
               f"{torch.get_num_threads()} CPU threads._\n")  # fmt: skip
    return "".join(out)
