"""The claims registry (``tslens/data/claims.toml``): measurements, claims, and the small
languages a claim is written in — a statistic (arithmetic over ``measurement.statistic``
names) and verdict rules (``">= 0.5"``, ``"<= 0.2"``, ``"in 0.7 1.3"``).

A verdict reads the statistic's 95% bootstrap interval, not its point value: "reproduced"
when the whole interval meets the ``reproduced`` rule, "partly" when it all meets the
``partly`` rule, "not reproduced" when it all misses the weakest rule, otherwise
"inconclusive". Loading checks every statistic and condition name against what its
measurement's kind produces (:mod:`tslens.claims.schema`), so a typo is refused, never
mistaken for a model's limitation.

Everything here is plain data and pure functions: which analyses run and how is
:mod:`tslens.claims.measure`; putting the two together is :mod:`tslens.claims.reproduce`.
"""

from __future__ import annotations

import ast
import math
import operator
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tslens.claims.intervals import interval
from tslens.claims.schema import produces
from tslens.errors import TslensError

REGISTRY = Path(__file__).resolve().parents[1] / "data" / "claims.toml"
VERDICTS = ("reproduced", "partly", "inconclusive", "not reproduced", "not testable here")


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
    control: str | None = None  # the negative control the tests run it on

    def names(self) -> set[str]:
        """Every ``measurement.statistic`` its statistic and conditions read."""
        if self.untestable:
            return set()
        names = set(_names(self.statistic))
        for condition in self.testable_if:
            names |= set(_names(split_rule(condition)[0]))
        return names

    def measurements(self) -> set[str]:
        """The measurements its statistic and conditions read."""
        return {n.split(".")[0] for n in self.names()}


@dataclass(frozen=True)
class Registry:
    defaults: dict[str, Any]
    measurements: dict[str, Measurement]
    claims: list[Claim]
    pairs: dict[str, Any] = field(default_factory=dict)  # the pair rule and its candidates

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
        try:
            claim = Claim(**entry)
        except TypeError as err:
            raise TslensError(f"claim {entry.get('id')!r} in {path}: {err}") from None
        _check(claim, measurements)
        claims.append(claim)
    return Registry(dict(raw.get("defaults", {})), measurements, claims, dict(raw.get("pairs", {})))


def _check(claim: Claim, measurements: Mapping[str, Measurement]) -> None:
    """Refuse a claim that reads a measurement or statistic nothing produces, or a rule that
    cannot be read, in one line naming the claim."""
    for rule in (claim.reproduced, claim.partly, *claim.testable_if):
        if rule is not None:
            try:
                split_rule(rule)
            except TslensError as err:
                raise TslensError(f"claim {claim.id}: {err}") from None
    if not claim.untestable and claim.reproduced is None:
        raise TslensError(f"claim {claim.id}: no 'reproduced' rule")
    try:
        names = claim.names()
    except SyntaxError:
        raise TslensError(f"claim {claim.id}: cannot read {claim.statistic!r}") from None
    for name in sorted(names):
        measurement, statistic = name.split(".", 1)
        if measurement not in measurements:
            raise TslensError(f"claim {claim.id} reads unknown measurement {measurement}")
        known = produces(measurements[measurement].kind)
        if statistic not in known:
            raise TslensError(
                f"claim {claim.id} reads {name}, which a {measurements[measurement].kind} "
                f"measurement does not produce (it produces {', '.join(sorted(known))})"
            )


# ---------------------------------------------------------------- statistics and rules
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv}  # fmt: skip


def _names(expression: str) -> list[str]:
    tree = ast.parse(expression, mode="eval")
    return [ast.unparse(n) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)]  # fmt: skip


def evaluate(expression: str, statistics: Mapping[str, Mapping[str, Any]]) -> Any:
    """The value of ``expression`` (``+ - * /``, numbers, ``measurement.statistic`` names)
    over ``statistics[measurement][statistic]``; NaN when a name has no number. A name whose
    value is a list of numbers (bootstrap replicates) makes the result an array of the
    expression's value per replicate."""

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Div):
                with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
                    warnings.simplefilter("ignore")
                    out = np.where(np.asarray(right) == 0, np.nan,
                                   np.divide(left, np.where(np.asarray(right) == 0, 1, right)))
                return float(out) if np.ndim(out) == 0 else out
            return _OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            got = statistics.get(node.value.id, {}).get(node.attr)
            if isinstance(got, list):
                return np.array([math.nan if g is None else g for g in got], dtype=np.float64)
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


def judge_interval(rule: str, low: float, high: float) -> str:
    """``"meets"`` when every value in [low, high] meets the rule, ``"misses"`` when none
    does, else ``"straddles"``."""
    _, op, bounds = split_rule(rule)
    if op == ">=":
        inside, outside = low >= bounds[0], high < bounds[0]
    elif op == "<=":
        inside, outside = high <= bounds[0], low > bounds[0]
    else:
        inside = bounds[0] <= low and high <= bounds[1]
        outside = high < bounds[0] or low > bounds[1]
    return "meets" if inside else "misses" if outside else "straddles"


def _reason(claim: Claim, records: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why the claim's statistic has no value, as its measurements state it."""
    for name in sorted(_names(claim.statistic)):
        measurement, statistic = name.split(".", 1)
        record = records.get(measurement, {})
        if record.get("values", {}).get(statistic) is None:
            why = record.get("reasons", {}).get(statistic)
            if why:
                return f"{name}: {why}"
    return None


def verdict(claim: Claim, records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The claim's verdict over the measurements' ``records`` (each with ``values``,
    ``replicates``, ``reasons``, ``n_prompts``, ``seeds``; see
    :func:`tslens.claims.intervals.summarize`): the value, its 95% interval, the prompts and
    seeds it rests on, the rule that decided and, for "not testable here", why.

    Raises:
        TslensError: the statistic has no value and its measurement gives no reason (a bug
            in a measurement, never a model's limitation).
    """
    record: dict[str, Any] = {"id": claim.id, "source": claim.source,
                              "statement": claim.statement, "statistic": claim.statistic,
                              "reads": claim.reads, "value": None, "interval": None}  # fmt: skip
    if claim.untestable:
        return {**record, "verdict": "not testable here", "why": claim.untestable}
    for name in sorted(claim.measurements()):
        failed = records.get(name, {}).get("unavailable")
        if failed:
            return {**record, "verdict": "not testable here", "why": f"{name}: {failed}"}
    values = {n: r.get("values", {}) for n, r in records.items()}
    used = sorted(claim.measurements())
    record["n_prompts"] = {n: records[n].get("n_prompts") for n in used if n in records}
    record["seeds"] = max((records[n].get("seeds", 1) for n in used if n in records), default=1)
    for condition in claim.testable_if:
        expression = split_rule(condition)[0]
        got = evaluate(expression, values)
        if not holds(condition, got):
            why = f"needs {condition}, measured {got:.3g}"
            accuracy = records.get(expression.split(".")[0], {}).get("detail", {}).get("accuracy")
            if isinstance(accuracy, dict):  # say which task the model cannot do alone
                why += " (alone: " + ", ".join(f"{t} {a:.2f}" for t, a in accuracy.items()) + ")"
            return {**record, "verdict": "not testable here", "why": why}
    value = evaluate(claim.statistic, values)
    if math.isnan(value):
        why = _reason(claim, records)
        if why is None:
            raise TslensError(f"claim {claim.id}: {claim.statistic} has no value and its "
                              "measurement states no reason")  # fmt: skip
        return {**record, "verdict": "not testable here", "why": why}
    record["value"] = value
    if record["seeds"] > 1:  # the statistic on each prompt seed alone: the spread over seeds
        by_seed = evaluate(claim.statistic, {n: r.get("by_seed", {}) for n, r in records.items()})
        record["by_seed"] = [None if math.isnan(v) else float(v) for v in np.atleast_1d(by_seed)]
    replicates = evaluate(claim.statistic, {n: r.get("replicates", {}) for n, r in records.items()})
    bounds = interval(np.atleast_1d(replicates))
    record["interval"] = bounds
    if bounds is None:
        return {**record, "verdict": "inconclusive",
                "rule": "the statistic is undefined on most bootstrap resamples"}  # fmt: skip
    # a percentile interval can miss the point value of a biased statistic (a max over
    # shares); the verdict then judges the span of both, never less than the interval
    low, high = min(bounds[0], value), max(bounds[1], value)
    for name, rule in (("reproduced", claim.reproduced), ("partly", claim.partly)):
        if rule is not None and judge_interval(rule, low, high) == "meets":
            return {**record, "verdict": name, "rule": rule}
    weakest = claim.partly or claim.reproduced
    if judge_interval(weakest, low, high) == "misses":
        return {**record, "verdict": "not reproduced", "rule": f"fails {weakest}"}
    return {**record, "verdict": "inconclusive", "rule": f"interval straddles {weakest}"}
