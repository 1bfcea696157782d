"""Self-contained HTML dashboards: plotly figures with plotly.js inlined, so a file opens
offline, from an e-mail attachment or a CI artifact."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go

from tslens.io import write_text_atomic

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td.text{{text-align:left}}
.note{{color:#555}}</style></head>
<body><h1>{title}</h1>{intro}{body}</body></html>
"""


def table_html(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A small HTML table; floats shown with 4 decimals."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"<td>{v:.4f}</td>"
        text = html.escape(str(v))  # prose reads left-aligned, numbers right-aligned
        return f"<td class=text>{text}</td>" if len(text) > 24 else f"<td>{text}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_dashboard(
    path: str | os.PathLike[str],
    title: str,
    figures: Sequence[go.Figure],
    intro_html: str = "",
) -> Path:
    """Write ``figures`` into one offline HTML page (plotly.js embedded once), atomically."""
    parts = [
        fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        for i, fig in enumerate(figures)
    ]
    page = PAGE.format(title=html.escape(title), intro=intro_html, body="\n".join(parts))
    return write_text_atomic(path, page)
