"""The ``demos.html`` dashboard: which demonstrations feed each answer, and which heads read
them (from the ``demos.json`` content of
:func:`tslens.analyses.prompt.demonstrations.demos_json`)."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tslens.report.html import table_html, write_dashboard


def distance_figure(result: dict[str, Any]) -> go.Figure:
    """Per task: the effect on its answer of deleting one of its demonstrations at distance d
    (solid), one of another task's (dotted), and what an even average over the task's
    demonstrations would give (dashed). A model that reads the nearest demonstration shows a
    spike at the smallest distances; one that averages, a flat line at the dashed level."""
    tasks, by_distance = result["tasks"], result["by_distance"]
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=[f"answer of {t}" for t in tasks])
    x = by_distance["distance"]
    for k, entry in enumerate(by_distance["tasks"]):
        for key, name, dash, color in [
            ("same", "delete one of the task's own demos", "solid", "#1f77b4"),
            ("other", "delete another task's demo", "dot", "#d62728"),
            ("uniform", "even average over its demos", "dash", "#7f7f7f"),
        ]:
            fig.add_trace(
                go.Scatter(x=x, y=entry[key], name=name, mode="lines+markers",
                           line={"dash": dash, "color": color}, legendgroup=key,
                           showlegend=k == 0),
                row=1, col=k + 1,
            )  # fmt: skip
    fig.update_xaxes(title_text="distance from the query (1 = last demonstration)", dtick=1)
    fig.update_yaxes(title_text="P(intact) - P(deleted)", col=1)
    fig.update_layout(title="Which demonstrations feed each answer", height=420)
    return fig


def by_task_figure(result: dict[str, Any]) -> go.Figure:
    """Mean change in P(answer k) (columns) when every demonstration of task i (rows) is
    deleted."""
    tasks = result["tasks"]
    values = result["by_task"]
    fig = go.Figure(
        go.Heatmap(z=values, x=[f"P({t})" for t in tasks], y=[f"delete {t}" for t in tasks],
                   colorscale="RdBu", zmid=0, text=[[f"{v:+.3f}" for v in r] for r in values],
                   texttemplate="%{text}")
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        title="Deleting a whole task's demonstrations: mean change of each answer's probability",
        xaxis_title="answer probability that changes",
        yaxis_title="demonstrations deleted",
        height=360,
    )
    return fig


def nearest_figure(result: dict[str, Any]) -> go.Figure:
    """Mean P(answer k) against the distance of the nearest task-k demonstration."""
    fig = go.Figure()
    x = result["by_distance"]["distance"]
    for task, entry in zip(result["tasks"], result["by_distance"]["tasks"], strict=True):
        fig.add_trace(go.Scatter(x=x, y=entry["nearest"], name=task, mode="lines+markers"))
    fig.update_layout(
        title="P(answer) against the distance of the task's nearest demonstration",
        xaxis_dtick=1, xaxis_title="distance of the nearest demonstration of the task",
        yaxis_title="P(answer)", height=380,
    )  # fmt: skip
    return fig


def heads_figure(result: dict[str, Any], n: int = 6) -> go.Figure:
    """Attention mass from the answer position by distance, for the first ``n`` heads."""
    heads = result["heads"]
    fig = go.Figure()
    x = result["by_distance"]["distance"]
    for entry in heads["heads"][:n]:
        layer, head = entry["layer"], entry["head"]
        mass = heads["by_distance"][layer][head]  # per demonstration position
        fig.add_trace(go.Scatter(x=x, y=mass[::-1], name=f"L{layer}.H{head}", mode="lines"))
    fig.update_layout(
        title="Attention from the answer position to each demonstration",
        xaxis_dtick=1, xaxis_title="distance from the query", yaxis_title="attention mass",
        height=380,
    )  # fmt: skip
    return fig


def write_demos_html(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The ``demos.html`` dashboard from the ``demos.json`` content."""
    tasks = result["tasks"]
    rows = [
        [t, result["p"][k], result["mean_count"][k], result["nearest_share"][k] or 0.0,
         1 / max(result["mean_count"][k], 1), result["additivity"][k] or 0.0,
         result["last_demo_gap"][k] or 0.0]
        for k, t in enumerate(tasks)
    ]  # fmt: skip
    intro = (
        f"<p class=note>model <b>{html.escape(result.get('model', ''))}</b>; "
        f"{result['n_prompts']} prompts of {result['n_examples']} demonstrations at equal "
        "weights. Nearest share: of the summed effects of a task's single demonstrations on "
        "its answer, the share its nearest demonstration carries (an even average gives 1 / "
        "count, reading only the nearest gives 1). Additivity: the summed effects of deleting "
        "a task's demonstrations one at a time over the effect of deleting them all (1: they "
        "add up; near 0: they are redundant).</p>"
        + table_html(
            [
                "task",
                "P",
                "demos per prompt",
                "nearest share",
                "even average",
                "additivity",
                "last-demo gap",
            ],
            rows,
        )  # fmt: skip
    )
    figures = [distance_figure(result), by_task_figure(result), nearest_figure(result)]
    if result.get("heads"):
        head_rows = [
            [f"L{h['layer']}.H{h['head']}", *h["mass"], *h["nearest_share"]]
            for h in result["heads"]["heads"][:10]
        ]
        header = ["head", *[f"mass {t}" for t in tasks], *[f"nearest share {t}" for t in tasks]]
        intro += "<h2>Heads (attention from the answer position)</h2>" + table_html(
            header, head_rows
        )
        figures.append(heads_figure(result))
    return write_dashboard(path, "tslens demos: which demonstrations feed each answer",
                           figures, intro)  # fmt: skip
