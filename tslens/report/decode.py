"""Figures for ``tslens decode``: what each decoder recovers of the K task answers, at what
cost, and how generation collapses onto one task (:mod:`tslens.analyses.prompt.collapse`)."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from tslens.analyses.prompt.decoding import DECODERS
from tslens.report.html import table_html, write_dashboard


def decoder_figure(decoding: dict[str, Any]) -> go.Figure:
    """Mean task answers recovered per prompt (bars) and cost vs one greedy decode (text)."""
    summary = decoding["summary"]
    fig = go.Figure(
        go.Bar(
            x=list(DECODERS),
            y=[summary[d].get("mean_recovered", 0.0) for d in DECODERS],
            text=[f"{summary[d]['cost_vs_greedy']:.2f}x greedy's time" for d in DECODERS],
            textposition="outside",
        )
    )
    fig.update_layout(
        title=f"Task answers recovered per prompt (width {decoding['settings']['width']})",
        xaxis_title="decoder",
        yaxis_title="answers recovered (mean)",
    )
    return fig


def collapse_figures(collapse: dict[str, Any]) -> list[go.Figure]:
    """Step-1 answer mass vs the tasks greedy and sampled decodes complete; and per step, the
    probability of continuing each task once it has been followed."""
    tasks = collapse["tasks"]
    bars = go.Figure()
    columns = [*tasks, "other", "unfinished"]
    step1 = [*collapse["step1_mass"], 1 - sum(collapse["step1_mass"]), 0.0]
    bars.add_trace(go.Bar(x=columns, y=step1, name="P(answer) before decoding"))
    for name in ("greedy", "sampled"):
        done = collapse[f"completed_{name}"]
        bars.add_trace(go.Bar(x=columns, y=[done[c] for c in columns], name=f"completed, {name}"))
    bars.update_layout(
        barmode="group",
        title="Probability mass at step 1 vs the tasks decoding completes",
        xaxis_title="answer (task, other, or not finished)",
        yaxis_title="share of prompts",
    )
    steps = go.Figure()
    for task in tasks:
        for key, dash in (("followed", None), ("conditional", "dash"), ("consistent", "dot")):
            ys = collapse[key][task]
            steps.add_trace(go.Scatter(x=list(range(1, len(ys) + 1)), y=ys, mode="lines+markers",
                                       name=f"{task} {key}", line={"dash": dash}))  # fmt: skip
    steps.update_layout(
        title="Per answer token: P(continue task | followed so far) and P(still consistent)",
        xaxis_title="answer token",
        yaxis_title="probability",
        yaxis_range=[0, 1.05],
    )
    return [bars, steps]


def write_decode_html(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The ``decode.html`` dashboard."""
    decoding = result["decoding"]
    rows = [[d, s.get("mean_recovered", "-"), s.get("all_recovered", "-"), s["seconds"],
             s["cost_vs_greedy"]] for d, s in decoding["summary"].items()]  # fmt: skip
    header = ["decoder", "answers recovered", "all K recovered", "seconds", "cost vs greedy"]
    examples = "".join(
        f"<pre>{html.escape(r['prompt'][-120:])}</pre><p class=note>branch: "
        + html.escape(", ".join(f"{b['answer']!r} {b['prob']:.3f}" for b in r["branch"]))
        + f"; greedy: {html.escape(repr(r['greedy']))}; beam: {html.escape(repr(r['beam']))}</p>"
        for r in decoding["per_prompt"][:3]
    )
    figures = [decoder_figure(decoding)]
    intro = f"<p class=note>model <b>{html.escape(result['model'])}</b></p>"
    intro += table_html(header, rows) + examples
    if result.get("collapse"):
        c = result["collapse"]
        figures += collapse_figures(c)
        intro += (
            f"<p class=note>generation collapse: tasks completed per prompt, greedy "
            f"{c['tasks_per_prompt_greedy']:.2f}, {c['n_samples']} samples "
            f"{c['tasks_per_prompt_sampled']:.2f}</p>"
        )
    return write_dashboard(path, "tslens decode", figures, intro)
