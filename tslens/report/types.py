"""The ``tslens types`` and ``tslens atp`` dashboards, drawn from their JSON forms."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from tslens.report.evaluation import COLORS
from tslens.report.html import table_html, write_dashboard

SETS = {"fv": "top FV heads", "induction": "top induction heads", "random": "random heads"}


def role_scatter(result: dict[str, Any]) -> go.Figure:
    """Every head at (induction score, FV score), one colour per superposition role."""
    roles = list(dict.fromkeys(sorted(r["role"] for r in result["heads"])))
    fig = go.Figure()
    for i, role in enumerate(roles):
        rows = [r for r in result["heads"] if r["role"] == role]
        color = "#bbb" if role == "-" else COLORS[i % len(COLORS)]
        fig.add_trace(go.Scatter(
            x=[r["induction"] for r in rows], y=[r["fv"] for r in rows], mode="markers+text",
            name="no task" if role == "-" else role, marker={"color": color, "size": 9},
            text=[f"L{r['layer']}.H{r['head']}" if r["role"] != "-" or r["fv_rank"] <= 5
                  else "" for r in rows],
            textposition="top center",
            customdata=[[f"L{r['layer']}.H{r['head']}", r["previous_token"], r["evenness"],
                         ", ".join(f"{p:.3f}" for p in r["patch"])] for r in rows],
            hovertemplate="%{customdata[0]}: induction %{x:.3f}, FV %{y:.4f}, previous-token "
            "%{customdata[1]:.3f}, evenness %{customdata[2]:.2f}, patch ΔP "
            "%{customdata[3]}<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(
        title="Head types: induction score vs function-vector score (colour: tasks whose "
        "answer the head carries in the mixture, by patching)",
        xaxis_title="induction score (attention to the token after the earlier copy)",
        yaxis_title="FV score (AIE, mean over tasks)",
    )
    return fig


def ablation_lines(ablation: dict[str, Any], key: str, title: str) -> go.Figure:
    """Mean ICL accuracy (``key="accuracy"``) or the all-answers share against n, per set."""
    fig = go.Figure()
    base = ablation["baseline"][key]
    base = sum(base) / len(base) if isinstance(base, list) else base
    for i, (name, label) in enumerate(SETS.items()):
        by_n = ablation["conditions"][name]
        ns = sorted(by_n, key=int)
        values = [by_n[n][key] for n in ns]
        values = [sum(v) / len(v) if isinstance(v, list) else v for v in values]
        fig.add_trace(
            go.Scatter(
                x=[int(n) for n in ns],
                y=values,
                name=label,
                line={"color": "#999" if name == "random" else COLORS[i]},
            )
        )
    fig.add_hline(y=base, line={"dash": "dot", "color": "#333"}, annotation_text="no ablation")
    fig.update_layout(title=title, xaxis_title="heads ablated (n)", xaxis_type="log",
                      yaxis_title=key.replace("_", " "))  # fmt: skip
    return fig


def write_types_html(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The ``types.html`` dashboard from the ``types.json`` content."""
    header = ["head", "role", "FV", "FV rank", "induction", "ind. rank", "prev-token",
              "evenness", *[f"patch {t}" for t in result["tasks"]]]  # fmt: skip
    rows = [[f"L{r['layer']}.H{r['head']}", r["role"], r["fv"], r["fv_rank"], r["induction"],
             r["induction_rank"], r["previous_token"], r["evenness"], *r["patch"]]
            for r in result["heads"][:15]]  # fmt: skip
    intro = (
        f"<p class=note>model <b>{html.escape(result['model'])}</b>, tasks "
        f"{html.escape(', '.join(result['tasks']))}; Spearman(FV, induction) over all heads "
        f"{result['fv_induction_spearman']:.3f}. Heads ranked by FV score (first 15):</p>"
        + table_html(header, rows)
    )
    figures = [role_scatter(result)]
    if "fv_vs_induction" in result:
        ablation = result["fv_vs_induction"]
        figures.append(ablation_lines(ablation, "accuracy", "ICL accuracy with n heads "
                                      "mean-ablated (mean over tasks)"))  # fmt: skip
        figures.append(ablation_lines(ablation, "all_answers_share", "Superposition: share of "
                                      "mixture prompts with every answer's P >= 0.1"))  # fmt: skip
    return write_dashboard(path, "tslens types: what kind of head carries superposition",
                           figures, intro)  # fmt: skip


def write_atp_html(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The ``atp.html`` dashboard: each estimate against the exact effects, per task."""
    figures = []
    for method in result["methods"]:
        fig = go.Figure()
        for k, task in enumerate(result["tasks"]):
            est = _flat(result["estimates"][method][k])
            if "exact" in result:
                fig.add_trace(
                    go.Scatter(
                        x=_flat(result["exact"][k]),
                        y=est,
                        mode="markers",
                        name=task,
                        marker={"size": 4, "color": COLORS[k % len(COLORS)]},
                    )
                )
        fig.update_layout(title=f"{method} estimate vs exact effect, every head x "
                          "demonstration (Δ log P)", xaxis_title="exact",
                          yaxis_title=method)  # fmt: skip
        figures.append(fig)
    rows = []
    for method, per_task in result.get("agreement", {}).items():
        for task, a in zip(result["tasks"], per_task, strict=True):
            rows.append([method, task, a["spearman_heads"], a["spearman_variants"],
                         a["top10_heads"], a["top10_variants"], a["relative_error"]])  # fmt: skip
    seconds = ", ".join(f"{m} {s:.1f} s" for m, s in result["seconds"].items())
    intro = (
        f"<p class=note>model <b>{html.escape(result['model'])}</b>; {result['n_variants']} "
        f"variants per prompt; {seconds}.</p>"
        + table_html(
            [
                "method",
                "task",
                "ρ heads",
                "ρ variants",
                "top-10 heads",
                "top-10 variants",
                "relative error",
            ],
            rows,
        )  # fmt: skip
    )
    return write_dashboard(path, "tslens atp: attribution patching vs exact patching",
                           figures, intro)  # fmt: skip


def _flat(nested: Any) -> list[float]:
    if isinstance(nested, list):
        return [v for item in nested for v in _flat(item)]
    return [nested]
