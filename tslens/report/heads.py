"""The ``tslens heads`` and ``tslens ablate`` dashboards, drawn from their JSON forms (so a
saved ``heads.json`` / ``ablate.json`` can be redrawn)."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tslens.report.evaluation import COLORS
from tslens.report.html import table_html, write_dashboard

METHOD_TITLES = {
    "dla": "direct logit attribution (centered logit of the answer's first token)",
    "patch": "activation patching: change of P(answer), clean head into shuffled-label prompt",
    "aie": "average indirect effect (Todd et al.): change of P(answer)",
}


def score_heatmaps(result: dict[str, Any], method: str) -> go.Figure:
    """One layer x head heatmap per task, diverging around 0."""
    tasks, scores = result["tasks"], result["scores"][method]
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks)
    bound = max(abs(v) for task in scores for layer in task for v in layer) or 1.0
    for k, task in enumerate(tasks):
        fig.add_trace(
            go.Heatmap(
                z=scores[k], zmin=-bound, zmax=bound, colorscale="RdBu", reversescale=True,
                showscale=k == len(tasks) - 1,
                hovertemplate=f"L%{{y}}.H%{{x}}: {method} for {task} = %{{z:.4f}}<extra></extra>",
            ),
            row=1, col=k + 1,
        )  # fmt: skip
    fig.update_xaxes(title_text="head", dtick=1)
    fig.update_yaxes(autorange="reversed", dtick=1)  # layer 0 at the top, in every panel
    fig.update_yaxes(title_text="layer", col=1)
    fig.update_layout(title=f"{method}: {METHOD_TITLES[method]}")
    return fig


def shares_figure(result: dict[str, Any], method: str, n: int = 16) -> go.Figure:
    """Each of the ``n`` heads with the largest positive scores: its share of each task."""
    tasks, scores = result["tasks"], result["scores"][method]
    n_layers, n_heads = len(scores[0]), len(scores[0][0])
    strength = {
        (layer, head): sum(max(scores[k][layer][head], 0.0) for k in range(len(tasks)))
        for layer in range(n_layers)
        for head in range(n_heads)
    }
    top = [h for h in sorted(strength, key=strength.get, reverse=True)[:n] if strength[h] > 0]
    labels = [f"L{layer}.H{head}" for layer, head in top]
    shares = result["shares"][method]
    served = result["n_tasks_served"][method]
    fig = go.Figure()
    for k, task in enumerate(tasks):
        fig.add_trace(
            go.Bar(
                x=labels, y=[shares[layer][head][k] for layer, head in top], name=task,
                marker_color=COLORS[k % len(COLORS)],
                customdata=[[scores[k][layer][head], served[layer][head]] for layer, head in top],
                hovertemplate=f"%{{x}}: share of {task} %{{y:.2f}} (score %{{customdata[0]:.4f}}"
                ", serves %{customdata[1]:.2f} tasks)<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(
        barmode="stack",
        title=f"{method}: each head's share of each task (heads by summed positive score)",
        xaxis_title="head (layer.head), by summed positive score",
        yaxis_title="share of the head's positive score",
    )
    return fig


def function_vector_figure(result: dict[str, Any]) -> go.Figure:
    """P(answer) on zero-shot queries with each task's function vector added after a layer."""
    fig = go.Figure()
    for k, (task, fv) in enumerate(result["function_vectors"].items()):
        color = COLORS[k % len(COLORS)]
        layers = list(range(len(fv["probs_by_layer"])))
        fig.add_trace(go.Scatter(x=layers, y=[p[k] for p in fv["probs_by_layer"]],
                                 name=f"FV({task}): P({task})", line={"color": color}))  # fmt: skip
        fig.add_hline(y=fv["zero_shot"][k], line={"color": color, "dash": "dot"})
    fig.update_layout(
        title="Function vectors added to zero-shot queries (dotted: no vector)",
        xaxis_title="layer the vector is added after", yaxis_title="P(answer)",
    )  # fmt: skip
    return fig


def top_rows(result: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for method, by_task in result["top_heads"].items():
        for task, heads in by_task.items():
            rows.append([method, task] + [f"L{h['layer']}.H{h['head']} ({h['score']:.3g})"
                                          for h in heads])  # fmt: skip
    return rows


def write_heads_html(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The ``heads.html`` dashboard from the ``heads.json`` content."""
    mixture = result["mixture"]
    intro = (
        f"<p class=note>model <b>{html.escape(result['model'])}</b>; mixture of "
        f"{html.escape(', '.join(result['tasks']))}: P = "
        + ", ".join(f"{p:.3f}" for p in mixture["probs"])
        + f", other {mixture['other']:.3f} ({result['settings']['n_prompts']} prompts).</p>"
        + table_html(["method", "task"] + [f"#{i + 1}" for i in range(5)], top_rows(result))
    )
    figures = []
    for method in result["methods"]:
        figures += [score_heatmaps(result, method), shares_figure(result, method)]
    if "function_vectors" in result:
        figures.append(function_vector_figure(result))
    return write_dashboard(path, "tslens heads: which heads carry which task", figures, intro)


CONDITIONS = ("baseline", "one_head", "k_heads", "random")


def ablation_bars(study: dict[str, Any]) -> go.Figure:
    """Each task's answer probability and ``other`` under every ablation condition."""
    fig = go.Figure()
    names = [*study["tasks"], "other"]
    for k, name in enumerate(names):
        values = [
            study[c]["other"] if name == "other" else study[c]["probs"][k] for c in CONDITIONS
        ]
        color = "#999" if name == "other" else COLORS[k % len(COLORS)]
        fig.add_trace(go.Bar(x=list(CONDITIONS), y=values, name=name, marker_color=color))
    fig.update_layout(
        barmode="group", xaxis_title="heads ablated", yaxis_title="mean probability",
        title=f"{study['kind']} ablation ({study['scope']} position) of "
        f"{', '.join(study['tasks'])}",
    )  # fmt: skip
    return fig


def sweep_figure(by_k: list[dict[str, Any]]) -> go.Figure:
    """Mean task probability per condition against the number of tasks K."""
    fig = go.Figure()
    for i, condition in enumerate(CONDITIONS):
        fig.add_trace(
            go.Scatter(
                x=[len(s["tasks"]) for s in by_k],
                y=[sum(s[condition]["probs"]) / len(s["tasks"]) for s in by_k],
                name=condition, line={"color": COLORS[i % len(COLORS)]},
            )
        )  # fmt: skip
    fig.update_layout(
        title="One head vs K heads vs K random heads, K = 1..4",
        xaxis_title="K tasks in the prompt", yaxis_title="mean P(task answer)",
    )  # fmt: skip
    return fig


def write_ablate_html(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The ``ablate.html`` dashboard from the ``ablate.json`` content."""
    rows = [
        [c, " ".join(f"L{a}.H{b}" for a, b in result[c].get("heads", [])) or "-",
         *result[c]["probs"], result[c]["other"]]
        for c in CONDITIONS
    ]  # fmt: skip
    intro = (
        f"<p class=note>model <b>{html.escape(result['model'])}</b>; heads: "
        f"{html.escape(result['heads_from'])}; {result['n_prompts']} prompts; random = mean "
        f"of {len(result['random']['draws'])} draws.</p>"
        + table_html(["condition", "heads", *result["tasks"], "other"], rows)
    )
    figures = [ablation_bars(result)]
    if len(result.get("by_k", [])) > 1:
        figures.append(sweep_figure(result["by_k"]))
    return write_dashboard(path, "tslens ablate: one head vs K heads", figures, intro)
