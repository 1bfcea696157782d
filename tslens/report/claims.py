"""What ``tslens reproduce`` writes besides ``claims.json``: the claims table as markdown
(``claims.md``, the table docs/findings.md includes) and one self-contained page
(``report.html``) with every verdict and the figures of the measurements they rest on."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from tslens.io import write_text_atomic
from tslens.report.card import markdown_table
from tslens.report.html import table_html, write_dashboard

COLORS = {"reproduced": "#2ca02c", "partly": "#ff7f0e", "not reproduced": "#d62728",
          "not testable here": "#7f7f7f"}  # fmt: skip


def _value(record: dict[str, Any]) -> str:
    value = record.get("value")
    return "—" if value is None else f"{value:.3g}"


def _rests_on(record: dict[str, Any]) -> str:
    if record["verdict"] == "not testable here":
        return record["why"]
    return f"{record['statistic']} = {_value(record)} ({record['rule']})"


def claims_markdown(result: dict[str, Any]) -> str:
    """The claims table: claim, source, verdict, the number it rests on and the rule."""
    rows = [[r["id"], r["source"], r["verdict"], _rests_on(r).replace("|", "/")]
            for r in result["verdicts"]]  # fmt: skip
    minutes = sum(result["seconds"].values()) / 60
    head = (f"Model `{result['model']}`, `{result['command']}`"
            f"{' (quick sizes)' if result['quick'] else ''}: {len(result['seconds'])} "
            f"measurements in {minutes:.1f} min.\n\n")  # fmt: skip
    return head + markdown_table(["claim", "source", "verdict", "rests on"], rows) + "\n"


def verdict_figure(result: dict[str, Any]) -> go.Figure:
    """One bar per verdict kind: how many claims got it."""
    counts = result["counts"]
    fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()),
                           marker_color=[COLORS[v] for v in counts]))  # fmt: skip
    fig.update_layout(title=f"{result['model']}: verdicts of {len(result['verdicts'])} claims",
                      xaxis_title="verdict", yaxis_title="claims", height=320)  # fmt: skip
    fig.update_yaxes(dtick=1)
    return fig


def measurement_figures(statistics: dict[str, dict[str, Any]]) -> list[go.Figure]:
    """The curves the claims rest on: calibration, the lambda sweep, span residuals by layer
    and each mixture's P per task (top-1 and top-K accuracy)."""
    figures = []
    curve = statistics.get("curve", {})
    if "shares" in curve:
        fig = go.Figure()
        for key, name in (("p_task0", "P(task 0)"), ("p_task1", "P(task 1)")):
            fig.add_trace(go.Scatter(x=curve["shares"], y=curve[key], name=name,
                                     mode="lines+markers"))  # fmt: skip
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="calibrated", line={"dash": "dash"}))
        fig.update_layout(title="Calibration (curve): P per task vs share of task 0's demos",
                          xaxis_title="share of task 0's demonstrations",
                          yaxis_title="mean P(answer)", height=380)  # fmt: skip
        figures.append(fig)
    vectors = statistics.get("vectors", {})
    if "lambdas" in vectors:
        fig = go.Figure(go.Scatter(x=vectors["lambdas"], y=vectors["p_task0_along_lambda"],
                                   mode="lines+markers", name="P(task 0)"))  # fmt: skip
        fig.update_layout(title="Convex task-vector patching (vectors): P(task 0) along lambda",
                          xaxis_title="lambda (weight of task 0's vector)",
                          yaxis_title="mean P(task 0 answer)", height=360)  # fmt: skip
        figures.append(fig)
    geometry = statistics.get("geometry", {})
    if "ratio_by_layer" in geometry:
        fig = go.Figure(go.Bar(x=geometry["layers"], y=geometry["ratio_by_layer"]))
        fig.update_layout(title="Span residual over random residual, by layer (geometry)",
                          xaxis_title="layer", yaxis_title="residual ratio (1 = random)",
                          height=340)  # fmt: skip
        fig.update_xaxes(dtick=1)
        figures.append(fig)
    mixtures = {n: s for n, s in statistics.items() if "topk_accuracy" in s}
    if mixtures:
        fig = go.Figure()
        for key, name in (("top1_accuracy", "top-1"), ("topk_accuracy", "top-K")):
            x = [f"{n}: {t}" for n, s in mixtures.items() for t in s["tasks"]]
            y = [v for s in mixtures.values() for v in s[key]]
            fig.add_trace(go.Bar(x=x, y=y, name=name))
        fig.update_layout(title="Per-task accuracy at K = 1 and K = number of tasks (mixtures)",
                          xaxis_title="measurement: task", yaxis_title="share of prompts",
                          barmode="group", height=420)  # fmt: skip
        figures.append(fig)
    return figures


def write_claims(result: dict[str, Any], out: str | os.PathLike[str]) -> list[Path]:
    """``claims.md`` and ``report.html`` into ``out`` (``claims.json`` is the caller's)."""
    out = Path(out)
    md = write_text_atomic(out / "claims.md", claims_markdown(result))
    rows = [[r["id"], r["verdict"], _value(r), r.get("rule", ""), r.get("why", ""),
             r["statement"]] for r in result["verdicts"]]  # fmt: skip
    intro = (
        f"<p class=note>model <b>{html.escape(result['model'])}</b>; "
        f"<code>{html.escape(result['command'])}</code>. Each verdict names the statistic it "
        "reads and the rule that decided (thresholds in tslens/data/claims.toml); "
        '"not testable here" says why the model cannot be asked.</p>'
        + table_html(
            ["claim", "verdict", "value", "rule", "why not testable", "claim says"], rows
        )  # fmt: skip
    )
    pair = result["statistics"].get("pair", {})
    if pair.get("top_nontask_by_prompt"):  # rebuttal (b), prompt by prompt
        by_prompt = pair["top_nontask_by_prompt"][:12]
        rows = [[i, str(text), p] for i, (text, p) in enumerate(by_prompt)]
        task_p = sum(pair["mean_p"]) / len(pair["mean_p"])
        intro += (
            "<h3>The most likely non-task answer, prompt by prompt (measurement pair)</h3>"
            f"<p class=note>mean task-answer P {task_p:.3f}; share of other that is a task "
            f"answer in another case or spacing {pair['other_as_variants']:.3f}</p>"
            + table_html(["prompt", "answer", "P"], rows)
        )
    figures = [verdict_figure(result), *measurement_figures(result["statistics"])]
    page = write_dashboard(out / "report.html", f"Claims on {result['model']}", figures, intro)
    return [md, page]
