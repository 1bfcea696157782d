"""Every dashboard explains itself: each axis a trace is drawn on has a title, and each error
bar says what it is (``± 1 s.e.`` or a confidence interval, over what), for every subcommand's
page. The figures are caught as they are written, from each command run at tiny sizes."""

from __future__ import annotations

import shutil

import plotly.graph_objects as go
import pytest

from tslens.cli import main
from tslens.sources.loader import PACKAGED_MODELS

TASKS = ["--tasks", "plus2,plus5"]
SMALL = ["--n-prompts", "3", "--n-examples", "4"]
COMMANDS = {
    "probs": ["probs", *TASKS, *SMALL],
    "patch": ["patch", *TASKS, *SMALL, "--lambdas", "0,0.5,1"],
    "heads": ["heads", *TASKS, *SMALL],
    "ablate": ["ablate", *TASKS, *SMALL, "--n-random", "1"],
    "demos": ["demos", *TASKS, *SMALL],
    "scale": ["scale", "--models", "tslens-char-1l2h-d32,tslens-char-3l4h", *TASKS, *SMALL],
    "decode": ["decode", *TASKS, *SMALL],
    "evaluate": ["evaluate", "--pairs", "plus2/plus5", *SMALL],
    "compare": ["compare", str(PACKAGED_MODELS / "tslens-char-3l4h" / "eval.json")],
}  # fmt: skip
EXPLAINED = ("s.e.", "CI", "confidence", "std")


def _axis_names(trace: go.BaseTraceType) -> list[str]:
    """The layout keys (``xaxis``, ``yaxis3``, ...) of the cartesian axes a trace is drawn on."""
    if not hasattr(trace, "xaxis") or not hasattr(trace, "yaxis"):
        return []  # not cartesian (tables, pies)
    return [
        f"{letter}axis{(getattr(trace, letter + 'axis') or letter)[1:]}" for letter in "xy"
    ]  # fmt: skip


def unexplained(fig: go.Figure) -> list[str]:
    """What a reader of ``fig`` cannot tell: untitled axes and unexplained error bars."""
    layout = fig.layout
    problems = []
    titled = {}  # (letter, domain): an axis of that letter there has a title
    for key in layout:
        if key[1:].startswith("axis") and key[0] in "xy":
            axis = layout[key]
            if axis.title.text:
                titled[(key[0], tuple(axis.domain or (0, 1)))] = True
    for trace in fig.data:
        for key in _axis_names(trace):
            axis = layout[key]
            if not axis.title.text and not titled.get((key[0], tuple(axis.domain or (0, 1)))):
                problems.append(f"{layout.title.text!r}: {key} has no title")
        for bar in ("error_x", "error_y"):
            shown = getattr(trace, bar, None)
            if shown is not None and shown.array is not None and shown.visible is not False:
                words = f"{trace.name} {layout.title.text} {layout.yaxis.title.text}"
                if not any(w in words for w in EXPLAINED):
                    problems.append(f"{layout.title.text!r}: {trace.name}'s {bar} unexplained")
    return sorted(set(problems))


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> dict[str, list[go.Figure]]:
    """The figures each command writes into its dashboard."""
    caught: dict[str, list[go.Figure]] = {}
    original = go.Figure.to_html
    current: list[go.Figure] = []

    def catch(self, *args, **kwargs):
        current.append(self)
        return original(self, *args, **kwargs)

    root = tmp_path_factory.mktemp("dashboards")
    go.Figure.to_html = catch
    try:
        for name, argv in COMMANDS.items():
            current.clear()
            assert main([*argv, "--out", str(root / name)]) == 0, name
            caught[name] = list(current)
    finally:
        go.Figure.to_html = original
        shutil.rmtree(root, ignore_errors=True)
    return caught


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_axis_is_titled_and_every_error_bar_explained(figures, command):
    assert figures[command], f"{command} wrote no figure"
    problems = [p for fig in figures[command] for p in unexplained(fig)]
    assert not problems, problems


def test_the_check_finds_what_is_missing():
    fig = go.Figure(go.Bar(x=["a"], y=[1], error_y={"type": "data", "array": [0.1]}, name="P"))
    assert len(unexplained(fig)) == 3  # x, y untitled; the error bar unexplained
    fig.update_layout(xaxis_title="task", yaxis_title="P", title="mean ± 1 s.e. over 3 prompts")
    assert unexplained(fig) == []
