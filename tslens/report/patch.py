"""The ``tslens patch`` dashboard: probability heatmaps over layer x lambda, the lambda curve at
the best layer against real in-context mixtures, the pure vectors' per-layer accuracy, and the
task-vector geometry. Reads the JSON forms, so a saved ``patch.json`` can be redrawn."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tslens.report.evaluation import COLORS
from tslens.report.html import table_html, write_dashboard


def heatmaps(sweep: dict[str, Any]) -> go.Figure:
    """One heatmap per task: P(answer) over layer (y) and lambda (x)."""
    tasks = sweep["tasks"]
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=[f"P({t})" for t in tasks])
    for k, task in enumerate(tasks):
        z = [[point[k] for point in layer] for layer in sweep["probs"]]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=sweep["lambdas"],
                y=sweep["layers"],
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=k == len(tasks) - 1,
                hovertemplate=f"layer %{{y}}, lambda %{{x:.2f}}: P({task}) = %{{z:.3f}}"
                "<extra></extra>",
            ),
            row=1,
            col=k + 1,
        )
    fig.update_xaxes(title_text="lambda")
    fig.update_yaxes(title_text="layer", col=1)
    fig.update_yaxes(dtick=1)  # layers are whole numbers
    fig.update_layout(title="Patched convex combination: answer probability by layer and lambda")
    return fig


def lambda_curve(sweep: dict[str, Any], layer: int) -> go.Figure:
    """P(answer) against lambda at ``layer`` (solid) and in real ICL mixtures (dashed)."""
    i = sweep["layers"].index(layer)
    fig = go.Figure()
    for k, task in enumerate(sweep["tasks"]):
        color = COLORS[k % len(COLORS)]
        fig.add_trace(
            go.Scatter(
                x=sweep["lambdas"],
                y=[point[k] for point in sweep["probs"][i]],
                name=f"patched: P({task})",
                line={"color": color},
            )
        )
        if "icl" in sweep:
            fig.add_trace(
                go.Scatter(
                    x=sweep["lambdas"],
                    y=[point[k] for point in sweep["icl"]],
                    name=f"in-context mixture: P({task})",
                    line={"color": color, "dash": "dash"},
                )
            )
    fig.add_trace(
        go.Scatter(
            x=sweep["lambdas"], y=sweep["other"][i], name="patched: other", line={"color": "#888"}
        )
    )
    fig.update_layout(
        title=f"Lambda curve at layer {layer} vs in-context mixtures at the same weights",
        xaxis_title="lambda (weight of the first task's vector / demonstrations)",
        yaxis_title="mean probability",
        yaxis_range=[0, 1],
    )
    return fig


def layer_accuracy(layer_sweep: dict[str, Any]) -> go.Figure:
    """P(own answer) when each pure task vector is patched at each layer, and the zero-shot
    baseline (dotted)."""
    fig = go.Figure()
    for k, task in enumerate(layer_sweep["tasks"]):
        color = COLORS[k % len(COLORS)]
        fig.add_trace(
            go.Scatter(
                x=layer_sweep["layers"],
                y=[layer[k][k] for layer in layer_sweep["probs"]],
                name=f"{task} vector: P({task})",
                line={"color": color},
            )
        )
        if layer_sweep.get("accuracy") is not None:
            fig.add_trace(
                go.Scatter(
                    x=layer_sweep["layers"],
                    y=[layer[k][k] for layer in layer_sweep["accuracy"]],
                    name=f"{task} vector: share with P({task}) >= 0.5",
                    line={"color": color, "dash": "dash"},
                )
            )
        fig.add_hline(y=layer_sweep["baseline"][k], line={"color": color, "dash": "dot"})
    fig.update_layout(
        title="Pure task vectors by layer (dotted: zero-shot baseline, no patch)",
        xaxis_title="layer",
        xaxis_dtick=1,
        yaxis_title="P(own answer)",
        yaxis_range=[0, 1],
    )
    return fig


def geometry_scatter(geometry: dict[str, Any], layer: int, method: str = "lda") -> go.Figure:
    """2-D projection of per-prompt task vectors at ``layer``, coloured by prompt kind."""
    i = geometry["layers"].index(layer)
    coords = geometry["projections"][method][i]
    fig = go.Figure()
    for n, label in enumerate(dict.fromkeys(geometry["labels"])):
        pts = [c for c, lab in zip(coords, geometry["labels"], strict=True) if lab == label]
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in pts],
                y=[p[1] for p in pts],
                mode="markers",
                name=label,
                marker={"color": COLORS[n % len(COLORS)], "size": 6, "opacity": 0.7},
            )
        )
    fig.update_layout(
        title=f"Task vectors at layer {layer} ({method.upper()}), one point per prompt",
        xaxis_title=f"{method.upper()} component 1",
        yaxis_title=f"{method.upper()} component 2",
    )
    return fig


def span_figure(geometry: dict[str, Any]) -> go.Figure:
    """Per-layer span residual of each 50/50 mixture vector, with the random-vector control."""
    fig = go.Figure()
    for p, pair in enumerate(geometry["pairs"]):
        fig.add_trace(
            go.Scatter(
                x=geometry["layers"], y=[row[p] for row in geometry["span_residual"]], name=pair
            )
        )
    fig.add_trace(
        go.Scatter(
            x=geometry["layers"],
            y=geometry["random_residual"],
            name="random vectors (control)",
            line={"dash": "dot", "color": "#888"},
        )
    )
    fig.update_layout(
        title="How far the mixture's vector lies from span{v_A, v_B}: ||m - Pm|| / ||m||",
        xaxis_title="layer",
        xaxis_dtick=1,
        yaxis_title="relative residual",
    )
    return fig


def write_patch_html(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The ``patch.html`` dashboard from the ``patch.json`` content."""
    best = result["best_layer"]
    layer = best[result["tasks"][0]]
    rows = [
        [t, best[t], result["layer_sweep"]["baseline"][k]] for k, t in enumerate(result["tasks"])
    ]
    intro = (
        f"<p class=note>model <b>{html.escape(result['model'])}</b>, tasks "
        f"{html.escape(', '.join(result['tasks']))}, mode {result['mode']}, "
        f"{result['n_prompts']} zero-shot queries per variant.</p>"
        + table_html(["task", "best layer", "zero-shot P(answer)"], rows)
    )
    figures = [
        heatmaps(result),
        lambda_curve(result, layer),
        layer_accuracy(result["layer_sweep"]),
    ]
    if "geometry" in result:
        figures += [geometry_scatter(result["geometry"], layer), span_figure(result["geometry"])]
    return write_dashboard(path, "tslens patch: task vectors in superposition", figures, intro)
