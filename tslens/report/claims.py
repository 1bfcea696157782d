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

COLORS = {"reproduced": "#2ca02c", "partly": "#ff7f0e", "inconclusive": "#bcbd22",
          "not reproduced": "#d62728", "not testable here": "#7f7f7f"}  # fmt: skip


def _value(record: dict[str, Any]) -> str:
    value, bounds = record.get("value"), record.get("interval")
    if value is None:
        return "—"
    return f"{value:.3g}" + (f" [{bounds[0]:.3g}, {bounds[1]:.3g}]" if bounds else "")


def _prompts(record: dict[str, Any]) -> str:
    """``"60 prompts, 3 seeds: 0.1 / 0.2 / 0.15"``: what the value rests on, and its value on
    each seed's prompts alone."""
    counts = record.get("n_prompts") or {}
    total = sum(sum(groups.values()) for groups in counts.values() if groups)
    if not total:
        return ""
    seeds = record.get("seeds", 1)
    spread = " / ".join("—" if v is None else f"{v:.3g}" for v in record.get("by_seed") or [])
    return f"{total} prompts, {seeds} seed{'s' if seeds > 1 else ''}" + (
        f": {spread}" if spread else "")


def _rests_on(record: dict[str, Any]) -> str:
    if record["verdict"] == "not testable here":
        return record["why"]
    return f"{record['statistic']} = {_value(record)} ({record['rule']}; {_prompts(record)})"


def claims_markdown(result: dict[str, Any]) -> str:
    """The claims table: claim, source, verdict, the number it rests on with its 95%
    bootstrap interval, the rule, and the prompts and seeds behind it."""
    rows = [[r["id"], r["source"], r["verdict"], _rests_on(r).replace("|", "/")]
            for r in result["verdicts"]]  # fmt: skip
    minutes = sum(result["seconds"].values()) / 60
    settings = result.get("settings", {})
    pair = settings.get("pair")
    head = (f"Model `{result['model']}`, `{result['command']}` ({result.get('size', 'full')} "
            f"sizes, seeds {settings.get('seeds')}): {len(result['seconds'])} measurements in "
            f"{minutes:.1f} min. Pair {'/'.join(pair) if pair else 'none'} (chosen by "
            f"{settings.get('pair_chosen_by')}). Values are point estimates with 95% "
            "bootstrap intervals over prompts.\n\n")  # fmt: skip
    table = markdown_table(["claim", "source", "verdict", "rests on"], rows) + "\n"
    if result.get("pairs"):
        rows = [["/".join(r["pair"]), "passes" if r["passes"] else "fails", r.get("why") or ""]
                for r in result["pairs"]]  # fmt: skip
        table += "\nPair rule:\n\n" + markdown_table(["pair", "rule", "why"], rows) + "\n"
    return head + table


def verdict_figure(result: dict[str, Any]) -> go.Figure:
    """One bar per verdict kind: how many claims got it."""
    counts = result["counts"]
    fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()),
                           marker_color=[COLORS[v] for v in counts]))  # fmt: skip
    fig.update_layout(title=f"{result['model']}: verdicts of {len(result['verdicts'])} claims",
                      xaxis_title="verdict", yaxis_title="claims", height=320)  # fmt: skip
    fig.update_yaxes(dtick=1)
    return fig


def interval_figure(result: dict[str, Any]) -> go.Figure:
    """Every judged claim's value with its 95% bootstrap interval, coloured by verdict."""
    rows = [r for r in result["verdicts"] if r.get("value") is not None]
    fig = go.Figure()
    for name, color in COLORS.items():
        chosen = [r for r in rows if r["verdict"] == name]
        if not chosen:
            continue
        low = [r["value"] - (r["interval"] or [r["value"]] * 2)[0] for r in chosen]
        high = [(r["interval"] or [r["value"]] * 2)[1] - r["value"] for r in chosen]
        fig.add_trace(go.Scatter(
            x=[r["value"] for r in chosen], y=[r["id"] for r in chosen], mode="markers",
            name=name, marker_color=color,
            error_x={"type": "data", "symmetric": False, "array": high, "arrayminus": low},
        ))  # fmt: skip
    fig.update_layout(title="Each claim's statistic with its 95% bootstrap interval over prompts "
                      "(bars); its rule is in the table", xaxis_title="statistic value",
                      yaxis_title="claim", height=120 + 28 * max(len(rows), 1))  # fmt: skip
    return fig


def measurement_figures(statistics: dict[str, dict[str, Any]]) -> list[go.Figure]:
    """The curves the claims rest on: calibration, the lambda sweep and the geometry by
    layer (the figures' points are means over the pooled prompts of every seed)."""
    figures = []
    curve = statistics.get("curve", {}).get("detail", {})
    if "p_task0" in curve:
        fig = go.Figure()
        for key, name in (("p_task0", "P(task 0)"), ("p_task1", "P(task 1)")):
            fig.add_trace(go.Scatter(x=curve["shares"], y=curve[key], name=name,
                                     mode="lines+markers"))  # fmt: skip
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="calibrated", line={"dash": "dash"}))
        fig.update_layout(title="Calibration (curve): P per task vs share of task 0's demos",
                          xaxis_title="share of task 0's demonstrations",
                          yaxis_title="mean P(answer)", height=380)  # fmt: skip
        figures.append(fig)
    vectors = statistics.get("vectors", {}).get("detail", {})
    if "p_task0_along_lambda" in vectors:
        fig = go.Figure(go.Scatter(x=vectors["lambdas"], y=vectors["p_task0_along_lambda"],
                                   mode="lines+markers", name="P(task 0)"))  # fmt: skip
        fig.update_layout(title="Convex task-vector patching (vectors): P(task 0) along lambda, "
                          "held-out queries", xaxis_title="lambda (weight of task 0's vector)",
                          yaxis_title="mean P(task 0 answer)", height=360)  # fmt: skip
        figures.append(fig)
    geometry = statistics.get("geometry", {}).get("detail", {})
    if "ratio_by_layer" in geometry:
        layers = list(range(len(geometry["ratio_by_layer"])))
        fig = go.Figure([go.Bar(x=layers, y=geometry["ratio_by_layer"], name="span ratio"),
                         go.Scatter(x=layers, y=geometry["rho_by_layer"], name="rho",
                                    mode="lines+markers")])  # fmt: skip
        fig.update_layout(title="Geometry by layer (scoring half): own-span over null-span "
                          "residual (1 = no better than unrelated tasks) and distance-P rho",
                          xaxis_title="layer", yaxis_title="ratio / rho", height=340)  # fmt: skip
        fig.update_xaxes(dtick=1)
        figures.append(fig)
    return figures


def write_claims(result: dict[str, Any], out: str | os.PathLike[str]) -> list[Path]:
    """``claims.md`` and ``report.html`` into ``out`` (``claims.json`` is the caller's)."""
    out = Path(out)
    md = write_text_atomic(out / "claims.md", claims_markdown(result))
    rows = [[r["id"], r["verdict"], _value(r), _prompts(r), r.get("rule", ""), r.get("why", ""),
             r["statement"]] for r in result["verdicts"]]  # fmt: skip
    intro = (
        f"<p class=note>model <b>{html.escape(result['model'])}</b>; "
        f"<code>{html.escape(result['command'])}</code>. Each verdict names the statistic it "
        "reads, its 95% bootstrap interval over prompts and the rule that decided (thresholds "
        "in tslens/data/claims.toml): reproduced or not only when the whole interval says so, "
        'else inconclusive; "not testable here" says why the model cannot be asked.</p>'
        + table_html(
            ["claim", "verdict", "value [95% CI]", "prompts", "rule", "why not testable",
             "claim says"], rows
        )  # fmt: skip
    )
    pair = result["statistics"].get("pair", {}).get("detail", {})
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
    geometry = result["statistics"].get("geometry", {}).get("detail", {})
    if geometry.get("rho_p_by_layer"):  # rebuttal (d), layer by layer
        rows = [[layer, "—" if rho is None else f"{rho:.3f}", f"{p:.3f}"] for layer, (rho, p)
                in enumerate(zip(geometry["rho_by_layer"], geometry["rho_p_by_layer"],
                                 strict=True))]  # fmt: skip
        intro += (
            "<h3>Distance vs probability by layer (measurement geometry, scoring half)</h3>"
            f"<p class=note>Spearman rho over every 50/50 mixture and its present tasks, with "
            "the one-sided permutation p-value (pairings permuted, 999 draws); the verdict "
            f"reads layer {geometry['rho_layer']}, chosen on the other half.</p>"
            + table_html(["layer", "rho", "p"], rows)
        )
    figures = [verdict_figure(result), interval_figure(result),
               *measurement_figures(result["statistics"])]
    page = write_dashboard(out / "report.html", f"Claims on {result['model']}", figures, intro)
    return [md, page]
