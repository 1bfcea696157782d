"""Figures and dashboards for model evaluations (``eval.json`` of ``tslens train`` /
``tslens evaluate``), one model or several side by side (the head-count study).

Everything here reads the JSON form (:meth:`tslens.analyses.prompt.evaluation.Evaluation.to_json`),
so saved evaluations can be compared without re-running any model.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tslens.report.html import table_html, write_dashboard

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def curves_figure(evaluations: Sequence[dict[str, Any]]) -> go.Figure:
    """One panel per task pair: P(task 0) (solid), P(task 1) (dashed) and ``other`` (dotted)
    against the share d of task-0 demonstrations, one colour per model; the grey diagonal is
    perfect calibration."""
    pairs = [c["tasks"] for c in evaluations[0]["curves"]]
    fig = make_subplots(rows=1, cols=len(pairs), subplot_titles=[f"{a} vs {b}" for a, b in pairs])
    for m, ev in enumerate(evaluations):
        color = COLORS[m % len(COLORS)]
        for col, curve in enumerate(ev["curves"], start=1):
            d = curve["shares"]
            for key, dash, label, sem in [
                ("p_task0", "solid", f"P({curve['tasks'][0]})", "sem_task0"),
                ("p_task1", "dash", f"P({curve['tasks'][1]})", "sem_task1"),
                ("other", "dot", "other", None),
            ]:
                fig.add_trace(
                    go.Scatter(
                        x=d,
                        y=curve[key],
                        error_y={"type": "data", "array": curve[sem]} if sem else None,
                        mode="lines+markers",
                        line={"color": color, "dash": dash},
                        name=f"{ev['model']}: {label}",
                        legendgroup=ev["model"],
                        showlegend=col == 1 or key != "other",
                    ),
                    row=1,
                    col=col,
                )
            fig.add_trace(
                go.Scatter(
                    x=[0, 1], y=[0, 1], mode="lines", line={"color": "#bbb"}, showlegend=False
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="share d of task-0 demonstrations")
    fig.update_yaxes(title_text="mean probability", range=[0, 1])
    n = evaluations[0]["curves"][0].get("n_prompts")
    over = f"{n} prompts" if n else "the prompts"
    fig.update_layout(
        title=f"Mixture curves (error bars: ± 1 s.e. of the mean over {over} at each share d)",
        height=480,
    )
    return fig


def accuracy_figure(evaluations: Sequence[dict[str, Any]]) -> go.Figure:
    """Single-task accuracy per task, one bar group per model."""
    fig = go.Figure()
    for m, ev in enumerate(evaluations):
        fig.add_trace(
            go.Bar(
                x=list(ev["accuracy"]),
                y=list(ev["accuracy"].values()),
                name=ev["model"],
                marker_color=COLORS[m % len(COLORS)],
            )
        )
    fig.update_layout(
        title="Single-task accuracy", xaxis_title="task", yaxis_title="accuracy",
        yaxis_range=[0, 1], barmode="group",
    )  # fmt: skip
    return fig


def summary_rows(evaluations: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The comparison table: per model and pair, min accuracy, calibration and d = 0.5 values."""
    header = [
        "model",
        "pair",
        "min accuracy",
        "max |P(task0) - d|",
        "P(task0) at .5",
        "P(task1) at .5",
        "other at .5",
        "monotone",
        "both >= .1 at .5",
        "last-demo gap at .5",
    ]
    rows = []
    for ev in evaluations:
        for curve in ev["curves"]:
            half = curve["at_half"]
            rows.append(
                [
                    ev["model"],
                    "/".join(curve["tasks"]),
                    ev["min_accuracy"],
                    curve["max_dev"],
                    half["p_task0"],
                    half["p_task1"],
                    half["other"],
                    "yes" if curve["monotone"] else "no",
                    curve.get("both_share_at_half"),
                    curve.get("last_demo_gap_at_half"),
                ]
            )
    return header, rows


def curve_table_markdown(curve: dict[str, Any]) -> str:
    """A mixture curve as a Markdown table (used by the model card)."""
    lines = ["| d | P(" + ") | P(".join(curve["tasks"]) + ") | other |", "|---|---|---|---|"]
    for d, p0, p1, o in zip(
        curve["shares"], curve["p_task0"], curve["p_task1"], curve["other"], strict=True
    ):
        lines.append(f"| {d:.1f} | {p0:.3f} | {p1:.3f} | {o:.3f} |")
    return "\n".join(lines)


def write_evaluation_html(
    evaluations: Sequence[dict[str, Any]], path: str | os.PathLike[str], title: str
) -> Path:
    """A dashboard of one or more evaluations: summary table, mixture curves, accuracy."""
    header, rows = summary_rows(evaluations)
    first = evaluations[0]
    intro = (
        f"<p class=note>{first['n_prompts']} prompts per task and per share, "
        f"{first['n_examples']} demonstrations each, seed {first['seed']}.</p>"
        + table_html(header, rows)
        + "".join(
            f"<p class=note>{html.escape(ev['model'])}: accuracy "
            + ", ".join(f"{t} {a:.3f}" for t, a in ev["accuracy"].items())
            + "</p>"
            for ev in evaluations
        )
    )
    return write_dashboard(
        path, title, [curves_figure(evaluations), accuracy_figure(evaluations)], intro
    )
