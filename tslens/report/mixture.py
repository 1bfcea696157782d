"""Figures for mixture-probability results (``tslens probs``)."""

from __future__ import annotations

import html
import os
from pathlib import Path

import plotly.graph_objects as go

from tslens.analyses.prompt.mixture import MixtureResult
from tslens.report.html import table_html, write_dashboard


def mixture_bar(result: MixtureResult) -> go.Figure:
    """Mean answer probability per task and ``other``, with the in-context weights as marks."""
    names = [*result.tasks, "other"]
    means = [*result.probs.mean(0).tolist(), result.other.mean().item()]
    n = len(result.prompts)
    sems = [*(result.probs.std(0) / n**0.5).tolist(), (result.other.std() / n**0.5).item()]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=means,
            error_y={"type": "data", "array": sems if n > 1 else None},
            name=f"mean P(answer) ± 1 s.e. over {n} prompts" if n > 1 else "P(answer)",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=result.tasks,
            y=result.weights,
            mode="markers",
            name="in-context weight (share of demonstrations)",
            marker={"symbol": "line-ew-open", "size": 30, "color": "black"},
        )
    )
    fig.update_layout(
        title="Mean answer probability per task (bars) vs in-context weight",
        xaxis_title="task (other: every answer but the tasks')",
        yaxis_title="probability",
        yaxis_range=[0, 1],
    )
    return fig


def mixture_strip(result: MixtureResult) -> go.Figure:
    """Per-prompt answer probabilities, one box per task, to show the spread across prompts."""
    fig = go.Figure()
    for k, name in enumerate(result.tasks):
        fig.add_trace(
            go.Box(
                y=result.probs[:, k].tolist(), name=name, boxpoints="all", jitter=0.4, pointpos=0
            )
        )
    fig.update_layout(
        title="Per-prompt answer probabilities (one point per prompt; box: quartiles)",
        xaxis_title="task",
        yaxis_title="P(answer)",
    )
    return fig


def _last_lines(text: str, n: int) -> str:
    return "\n".join(text.split("\n")[-n:])


def write_mixture_html(result: MixtureResult, path: str | os.PathLike[str]) -> Path:
    """The ``probs.html`` dashboard: summary table, bar chart, per-prompt spread, one example."""
    s = result.summary()
    rows = [
        [t, w, p, q]
        for t, w, p, q in zip(
            result.tasks, result.weights, s["mean_probs"], s["normalized"], strict=True
        )
    ]
    header = ["task", "weight", "mean P(answer)", "normalised"]
    if "solved" in s:
        header.append(f"solved (top-{len(result.tasks)})")
        rows = [[*r, v] for r, v in zip(rows, s["solved"], strict=True)]
    example = result.prompts[0]
    intro = (
        f"<p class=note>model <b>{html.escape(result.model)}</b>, {len(result.prompts)} prompts, "
        f"other = {s['other']:.4f}, KL(in-context || model) = {s['kl']:.4f} nats; "
        f"prompts with every answer at P &ge; 0.1: {s['all_answers_share']:.0%}"
        + (
            ""
            if s["last_demo_gap"] is None
            else f"; last-demonstration gap {s['last_demo_gap']:+.3f}"
        )
        + "</p>"
        + table_html(header, rows)
        + (
            f"<p class=note>solved (top-{len(result.tasks)}): share of prompts whose answer of "
            f"the task is among the {len(result.tasks)} most likely complete answers (beam "
            f"search); {s['mean_tasks_solved']:.2f} tasks solved per prompt.</p>"
            if "solved" in s
            else ""
        )
        + f"<p class=note>the first prompt ({len(example.demo_tasks)} demonstrations, then the "
        f"query), its last four lines:</p><pre>{html.escape(_last_lines(example.text, 4))}</pre>"
    )
    return write_dashboard(
        path,
        "tslens probs: task superposition",
        [mixture_bar(result), mixture_strip(result)],
        intro,
    )
