"""The claims registry (``tslens/data/claims.toml``): measurements, claims, and the small
languages a claim is written in — a statistic (arithmetic over ``measurement.statistic``
names) and verdict rules (``">= 0.5"``, ``"<= 0.2"``, ``"in 0.7 1.3"``).

Everything here is plain data and pure functions: which analyses run and how is
:mod:`tslens.claims.measure`; putting the two together is :mod:`tslens.claims.reproduce`.
"""

from __future__ import annotations

import ast
import math
import operator
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tslens.errors import TslensError

REGISTRY = Path(__file__).resolve().parents[1] / "data" / "claims.toml"
VERDICTS = ("reproduced", "partly", "not reproduced", "not testable here")


@dataclass(frozen=True)
class Measurement:
    """One analysis run once per model; its options as the registry writes them."""

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def size(self, key: str, quick: bool) -> int | None:
        """``options[key]`` for ``[quick, full]`` pairs (a plain number serves both)."""
        value = self.options.get(key)
        if isinstance(value, list):
            return int(value[0] if quick else value[1])
        return None if value is None else int(value)


@dataclass(frozen=True)
class Claim:
    """One claim: its source, statement, the statistic it reads and the verdict rules."""

    id: str
    source: str
    statement: str
    statistic: str
    reads: str
    reproduced: str | None = None
    partly: str | None = None
    testable_if: tuple[str, ...] = ()
    untestable: str | None = None  # why no model can be tested yet (a missing capability)

    def measurements(self) -> set[str]:
        """The measurements its statistic and conditions read."""
        if self.untestable:
            return set()
        names = set(_names(self.statistic))
        for condition in self.testable_if:
            names |= set(_names(split_rule(condition)[0]))
        return {n.split(".")[0] for n in names}


@dataclass(frozen=True)
class Registry:
    defaults: dict[str, Any]
    measurements: dict[str, Measurement]
    claims: list[Claim]

    def select(self, only: list[str] | None) -> list[Claim]:
        """The claims named in ``only`` (all when ``None``), refusing unknown ids."""
        if not only:
            return list(self.claims)
        known = {c.id: c for c in self.claims}
        unknown = [i for i in only if i not in known]
        if unknown:
            raise TslensError(f"unknown claim {unknown[0]!r}; claims: {', '.join(known)}")
        return [known[i] for i in only]


def load_registry(path: str | Path | None = None) -> Registry:
    """Read and check a claims file (default the shipped ``tslens/data/claims.toml``)."""
    path = REGISTRY if path is None else path
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise TslensError(f"cannot read the claims registry {path}: {err}") from None
    measurements = {name: Measurement(name, entry["kind"], dict(entry))
                    for name, entry in raw.get("measurements", {}).items()}  # fmt: skip
    claims = []
    for entry in raw.get("claims", []):
        entry = dict(entry)
        entry["testable_if"] = tuple(entry.get("testable_if", ()))
        claim = Claim(**entry)
        missing = claim.measurements() - set(measurements)
        if missing:
            raise TslensError(f"claim {claim.id} reads unknown measurement {sorted(missing)[0]}")
        for rule in (claim.reproduced, claim.partly):
            if rule is not None:
                split_rule(rule)  # raises on a rule it cannot read
        claims.append(claim)
    return Registry(dict(raw.get("defaults", {})), measurements, claims)


# ---------------------------------------------------------------- statistics and rules
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv}  # fmt: skip


def _names(expression: str) -> list[str]:
    tree = ast.parse(expression, mode="eval")
    return [ast.unparse(n) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)]  # fmt: skip


def evaluate(expression: str, statistics: Mapping[str, Mapping[str, Any]]) -> float:
    """The value of ``expression`` (``+ - * /``, numbers, ``measurement.statistic`` names)
    over ``statistics[measurement][statistic]``; NaN when a name has no number."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                return math.nan
            return _OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            got = statistics.get(node.value.id, {}).get(node.attr)
            return float(got) if isinstance(got, int | float) else math.nan
        raise TslensError(f"cannot read statistic {expression!r}")

    return value(ast.parse(expression, mode="eval"))


def split_rule(rule: str) -> tuple[str, str, list[float]]:
    """``"x >= 0.5"`` -> ``("x", ">=", [0.5])``; ``"in 0.7 1.3"`` -> ``("", "in", [0.7, 1.3])``."""
    words = rule.split()
    for i, word in enumerate(words):
        if word in (">=", "<=", "in"):
            try:
                bounds = [float(w) for w in words[i + 1 :]]
            except ValueError:
                break
            if len(bounds) == (2 if word == "in" else 1):
                return " ".join(words[:i]), word, bounds
    raise TslensError(f"cannot read rule {rule!r}: write '>= 0.5', '<= 0.2' or 'in 0.7 1.3'")


def holds(rule: str, value: float) -> bool:
    """Whether ``value`` meets the rule's test (never for NaN)."""
    _, op, bounds = split_rule(rule)
    if math.isnan(value):
        return False
    if op == ">=":
        return value >= bounds[0]
    if op == "<=":
        return value <= bounds[0]
    return bounds[0] <= value <= bounds[1]


def verdict(claim: Claim, statistics: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The claim's verdict over the measured ``statistics``: the value it rests on, the rule
    that decided and, for "not testable here", why."""
    record: dict[str, Any] = {"id": claim.id, "source": claim.source,
                              "statement": claim.statement, "statistic": claim.statistic,
                              "reads": claim.reads, "value": None}  # fmt: skip
    if claim.untestable:
        return {**record, "verdict": "not testable here", "why": claim.untestable}
    for name in sorted(claim.measurements()):
        failed = statistics.get(name, {}).get("unavailable")
        if failed:
            return {**record, "verdict": "not testable here", "why": f"{name}: {failed}"}
    for condition in claim.testable_if:
        expression = split_rule(condition)[0]
        got = evaluate(expression, statistics)
        if not holds(condition, got):
            why = f"needs {condition}, measured {got:.3g}"
            accuracy = statistics.get(expression.split(".")[0], {}).get("accuracy")
            if isinstance(accuracy, dict):  # say which task the model cannot do alone
                why += " (alone: " + ", ".join(f"{t} {a:.2f}" for t, a in accuracy.items()) + ")"
            return {**record, "verdict": "not testable here", "why": why}
    value = evaluate(claim.statistic, statistics)
    if math.isnan(value):  # e.g. a later-token statistic on one-token answers
        return {**record, "verdict": "not testable here",
                "why": f"{claim.statistic} has no value on this model's inputs"}  # fmt: skip
    record["value"] = value
    for name, rule in (("reproduced", claim.reproduced), ("partly", claim.partly)):
        if rule is not None and holds(rule, value):
            return {**record, "verdict": name, "rule": rule}
    rule = claim.partly or claim.reproduced
    return {**record, "verdict": "not reproduced", "rule": f"fails {rule}"}
