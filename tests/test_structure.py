"""The layer picture of docs/architecture.md, checked on the source: imports point down only,
no import cycles, modules under 400 lines, functions under 80 unless their docstring says why."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tslens"

# Lowest first; a module may import its own layer and the layers below it. Within analyses the
# paper's levels build on each other the same way: prompt < layer < head.
LAYERS = [
    ["tslens.errors", "tslens.io", "tslens.version"],
    ["tslens.tasks", "tslens.prompts", "tslens.presets"],
    ["tslens.hooks"],
    ["tslens.engine"],
    ["tslens.sources", "tslens.training"],
    ["tslens.analyses.prompt"],
    ["tslens.analyses.layer"],
    ["tslens.analyses.head", "tslens.analyses"],
    ["tslens.claims"],  # the registry of claims, checked with the analyses
    ["tslens.report"],
    ["tslens._reference", "tslens.doctor"],
    ["tslens.cli", "tslens.__main__"],
    ["tslens"],  # the package's lazy public names
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(module: str) -> int:
    best = max(
        (prefix for layer in LAYERS for prefix in layer
         if module == prefix or module.startswith(prefix + ".")),
        key=len,
    )  # fmt: skip
    return next(i for i, layer in enumerate(LAYERS) if best in layer)


def imports(path: Path) -> set[str]:
    """Every tslens module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tslens"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tslens"))
    return found


SOURCES = sorted(ROOT.rglob("*.py"))
GRAPH = {module_name(p): imports(p) for p in SOURCES}


def test_imports_point_down_only():
    upward = [
        f"{module} (layer {rank(module)}) imports {target} (layer {rank(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if rank(target) > rank(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[str] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if target not in GRAPH or target == module:
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in GRAPH:
        if module not in state:
            visit(module, [module])
    # a package's __init__ re-exporting its own submodules is no cycle of meaning
    cycles = [c for c in cycles if not all(m.startswith(c.split(" -> ")[0]) for m in
                                           c.split(" -> "))]  # fmt: skip
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_modules_and_functions_stay_readable(path):
    source = path.read_text()
    assert len(source.splitlines()) <= 400, f"{path.name}: split it (one concept per file)"
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node) or ""
        first = node.body[1] if doc and len(node.body) > 1 else node.body[0]
        length = node.end_lineno - first.lineno + 1
        assert length <= 80 or "long:" in doc.lower(), (
            f"{path.name}:{node.lineno} {node.name} is {length} lines; split it or say in its "
            "docstring why not ('Long: ...')"
        )


def test_reference_implementations_are_not_public():
    import tslens

    assert not [name for name in tslens.__all__ if "naive" in name or "loop" in name]
    api = (ROOT.parent / "docs" / "api.md").read_text()
    assert "_naive(" not in api and "tslens._reference" not in api
