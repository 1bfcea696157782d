"""Figures for the scaling study (``tslens scale``): every metric against model size, one line
per task or metric, so "larger models solve more tasks in parallel and calibrate better" can be
read off directly."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tslens.report.html import table_html, write_dashboard


def weights_label(weights: list[float]) -> str:
    """``[0.7, 0.3]`` -> ``"0.7/0.3"``."""
    return "/".join(f"{w:.2g}" for w in weights)


def scale_figure(study: dict[str, Any]) -> go.Figure:
    """Four panels against total parameters (log x): each task's mean answer probability and
    ``other`` per weight setting (dashed lines at the weights), KL per prompt and of the means,
    mean tasks solved (of K), and single-task accuracy per task."""
    rows, tasks = study["models"], study["tasks"]
    x = [r["params"]["total"] for r in rows]
    names = [r["model"] for r in rows]
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=(
            "mean P(answer) per task (dashed: weight)",
            "calibration: KL(in-context || model), nats",
            f"tasks solved (top-K complete answers, K = {len(tasks)})",
            "single-task accuracy",
        ),
    )

    def line(r: int, c: int, y: list[float], name: str, dash: str | None = None) -> None:
        fig.add_trace(
            go.Scatter(x=x, y=y, name=name, text=names, mode="lines+markers",
                       line={"dash": dash}, legendgroup=name),
            row=r, col=c,
        )  # fmt: skip

    for m, weights in enumerate(study["weights"]):
        label = weights_label(weights)
        for k, task in enumerate(tasks):
            line(1, 1, [r["mixtures"][m]["mean_probs"][k] for r in rows], f"{task} @ {label}")
            fig.add_hline(y=weights[k], line_dash="dash", line_color="gray", row=1, col=1)
        line(1, 1, [r["mixtures"][m]["other"] for r in rows], f"other @ {label}", "dot")
        line(1, 2, [r["mixtures"][m]["kl"] for r in rows], f"KL per prompt @ {label}")
        line(1, 2, [r["mixtures"][m]["kl_of_means"] for r in rows], f"KL of means @ {label}", "dot")
        if "mean_tasks_solved" in rows[0]["mixtures"][m]:
            line(2, 1, [r["mixtures"][m]["mean_tasks_solved"] for r in rows], f"solved @ {label}")
    for task in tasks:
        line(2, 2, [r["accuracy"][task] for r in rows], f"accuracy {task}")
    fig.update_xaxes(type="log", title_text="parameters")
    for (r, c), title in {(1, 1): "P(answer)", (1, 2): "KL (nats)", (2, 1): "tasks solved",
                          (2, 2): "accuracy"}.items():  # fmt: skip
        fig.update_yaxes(title_text=title, row=r, col=c)
    fig.update_layout(height=800, title="Scaling: each metric vs model size")
    return fig


def write_scale_html(study: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The ``scale.html`` dashboard: a table per model and weight setting, then the figure."""
    header = ["model", "params", "weights", *[f"P({t})" for t in study["tasks"]], "other",
              "KL/prompt", "KL of means", "tasks solved", "min accuracy"]  # fmt: skip
    table = []
    for row in study["models"]:
        for mix in row["mixtures"]:
            table.append([
                row["model"], f"{row['params']['total']:,}", weights_label(mix["weights"]),
                *mix["mean_probs"], mix["other"], mix["kl"], mix["kl_of_means"],
                mix.get("mean_tasks_solved", "-"), row["min_accuracy"],
            ])  # fmt: skip
    intro = (
        f"<p class=note>{study['n_prompts']} mixture prompts of {study['n_examples']} "
        f"demonstrations (seed {study['seed']}), the same texts for every model; "
        f"shared tokenizer: {study['shared_tokenizer']}.</p>"
        + table_html(header, table)
        + "<p class=note>example prompt's tail:</p>"
        + f"<pre>{html.escape(study['example_prompt'][-200:])}</pre>"
    )
    return write_dashboard(path, "tslens scale", [scale_figure(study)], intro)
