"""The benchmark scripts import against today's library (they run outside the suite, so a
renamed function would otherwise break them unnoticed), and their comparison helper is right."""

import ast
import importlib
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("name", ["run", "floors", "end_to_end", "table", "same_numbers"])
def test_benchmark_modules_import(name, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    importlib.import_module(name)


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.py")), ids=lambda p: p.name)
def test_every_name_a_benchmark_imports_from_tslens_exists(path):
    """Also the imports inside the benchmark functions, which run only when measured."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tslens"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{path.name}: {node.module}.{alias.name}"


def test_same_numbers_finds_the_largest_difference(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from same_numbers import largest_difference

    old = {"p": [0.5, 0.25], "seconds": 3.0, "x": {"y": None}}
    assert largest_difference(old, {"p": [0.5, 0.25], "seconds": 9.0, "x": {"y": None}})[0] == 0
    assert largest_difference(old, {**old, "p": [0.5, 0.2]}) == (pytest.approx(0.05), "/p[1]")
    assert math.isinf(largest_difference(old, {**old, "p": [0.5]})[0])
    assert math.isinf(largest_difference(old, {"p": old["p"], "seconds": 1.0})[0])
    sys.modules.pop("same_numbers", None)
