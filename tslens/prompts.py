"""Mixture prompts: in-context demonstrations drawn from K tasks, then one query.

``build_mixture_prompts(tasks, weights, n_prompts, n_examples, seed)`` returns
:class:`MixturePrompt` objects whose ``text`` ends right where the model should answer and
whose ``answers`` hold the K tasks' answers to the query (pairwise distinct). Prompt ``i``
depends only on ``(seed, i)`` and the arguments, so the same seed gives the same prompts and a
longer run extends a shorter one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from tslens.errors import TslensError, close_names
from tslens.io import reading
from tslens.tasks import Task


@dataclass(frozen=True)
class Template:
    """How one demonstration is written (``demo`` holds ``{x}`` then ``{y}`` at its end) and
    how demonstrations are joined (``sep``)."""

    demo: str
    sep: str = "\n"

    def __post_init__(self) -> None:
        if "{x}" not in self.demo or not self.demo.endswith("{y}"):
            raise TslensError(
                f"template {self.demo!r} must contain {{x}} and end with {{y}}, e.g. '{{x}}->{{y}}'"
            )

    def query_and_answer_prefix(self, x: str) -> tuple[str, str]:
        """The query text and the whitespace that belongs to the answer.

        A template like ``"Q: {x}\\nA: {y}"`` puts a space before the answer. BPE tokenizers
        attach that space to the answer's first token (`` Paris``), so the prompt must end at
        ``"A:"`` and the answer be scored as ``" Paris"``; otherwise the prompt's last token
        would not be a prefix of the prompt+answer tokens.
        """
        head = self.demo[: -len("{y}")].replace("{x}", x)
        stripped = head.rstrip()
        return stripped, head[len(stripped) :]


TEMPLATES = {
    "arrow": Template("{x}->{y}", "\n"),  # the paper's format
    # What the pretrained GGUF models (Gemma-3-270M, SmolLM2) work best with: their tokenizers
    # start words with a space, so "-> Paris" scores the answer as the word it is.
    "spaced": Template("{x} -> {y}", "\n"),
    "qa": Template("Q: {x}\nA: {y}", "\n\n"),  # Todd et al. (function vectors)
    "example": Template("example:{x}->{y}", "\n"),  # Hendel et al. (task vectors)
    "gt": Template("{x}>{y}", "\n"),  # the from-scratch study's `3>5` lines
}


def get_template(spec: str | Template | None, tasks: Sequence[Task]) -> Template:
    """A template by name, from a ``"...{x}...{y}"`` string, or the tasks' family default."""
    if isinstance(spec, Template):
        return spec
    if spec is None:
        return TEMPLATES[tasks[0].family.template]
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    if "{x}" in spec or "{y}" in spec:
        return Template(spec.replace("\\n", "\n"), "\n")
    raise TslensError(
        f"unknown template {spec!r}; use one of {', '.join(TEMPLATES)} or a string with {{x}} "
        "and {y}" + close_names(spec, TEMPLATES)
    )


@dataclass(frozen=True)
class MixturePrompt:
    """One mixture prompt.

    Attributes:
        text: the exact text to score (demonstrations, then the query, ending before the answer).
        query: the query input ``x``.
        answers: each task's answer to the query, in task order, with the template's
            leading whitespace (e.g. ``" Paris"`` for the ``qa`` template).
        demo_tasks: index of the task each demonstration was drawn from, in prompt order.
    """

    text: str
    query: str
    answers: tuple[str, ...]
    demo_tasks: tuple[int, ...]


def parse_weights(spec: str | Sequence[float] | None, k: int) -> list[float]:
    """Weights on the simplex from ``"1/3,2/3"``-style text or numbers; ``None`` = uniform."""
    if spec is None:
        return [1.0 / k] * k
    if isinstance(spec, str):
        try:
            values = [float(Fraction(w.strip())) for w in spec.split(",") if w.strip()]
        except (ValueError, ZeroDivisionError) as err:
            raise TslensError(f"cannot read weights {spec!r}: use numbers like 0.5 or 1/3") from err
    else:
        values = [float(w) for w in spec]
    if len(values) != k:
        raise TslensError(f"got {len(values)} weights for {k} tasks; give one weight per task")
    if any(w < 0 for w in values) or abs(sum(values) - 1.0) > 1e-6:
        raise TslensError(f"weights {spec} must be >= 0 and sum to 1 (they sum to {sum(values):g})")
    return values


def largest_remainder_counts(weights: Sequence[float], n: int) -> list[int]:
    """Integer counts summing to ``n`` closest to ``weights * n`` (Hamilton's method)."""
    raw = np.asarray(weights, dtype=float) * n
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")  # ties go to the earlier task
    counts[order[: n - counts.sum()]] += 1
    return counts.tolist()


def common_inputs(tasks: Sequence[Task]) -> list[str] | None:
    """Inputs every task accepts (``None`` for a generated family)."""
    pools = [t.family.pool for t in tasks]
    if any(p is None for p in pools):
        return None
    shared = set.intersection(*(set(p) for p in pools if p is not None))
    return [x for x in pools[0] or () if x in shared]  # keep the first pool's order


def _draw_query(
    tasks: Sequence[Task], pool: list[str] | None, rng: np.random.Generator, tries: int = 200
) -> tuple[str, tuple[str, ...]] | None:
    for _ in range(tries):
        x = pool[rng.integers(len(pool))] if pool is not None else tasks[0].family.sample(rng, 1)[0]
        answers = tuple(t.answer(x) for t in tasks)
        if len(set(answers)) == len(answers):
            return x, answers
    return None


def build_mixture_prompts(
    tasks: Sequence[Task],
    weights: str | Sequence[float] | None = None,
    n_prompts: int = 100,
    n_examples: int = 60,
    seed: int = 0,
    template: str | Template | None = None,
    sampling: str = "exact",
    shuffle_labels: bool = False,
) -> list[MixturePrompt]:
    """Build ``n_prompts`` mixture prompts.

    Args:
        tasks: K tasks of one input family (see :func:`tslens.tasks.resolve_tasks`).
        weights: share of demonstrations per task, on the simplex (numbers or ``"1/3,2/3"``
            text, see :func:`parse_weights`); default uniform.
        n_prompts: number of prompts.
        n_examples: demonstrations per prompt.
        seed: prompt ``i`` is drawn from ``numpy.random.default_rng([seed, i])``.
        template: name in :data:`TEMPLATES`, a ``{x}...{y}`` string, or ``None`` for the
            family's default.
        sampling: ``"exact"`` (counts by largest remainder, shuffled) or ``"iid"`` (each
            demonstration's task drawn independently with the weights).
        shuffle_labels: permute the demonstrations' labels among them (the corrupted prompts
            of Todd et al.): same inputs, query and answers as without, but no input-label
            mapping left to learn. The permutation has its own generator, so prompt ``i`` is
            otherwise identical to the unshuffled prompt ``i``.

    Returns:
        The prompts; each query is never among its prompt's demonstrations and its K answers
        are pairwise distinct.
    """
    if n_examples < 1:
        raise TslensError(f"--n-examples must be >= 1 (got {n_examples})")
    if n_prompts < 1:
        raise TslensError(f"--n-prompts must be >= 1 (got {n_prompts})")
    if sampling not in ("exact", "iid"):
        raise TslensError(f"sampling must be 'exact' or 'iid' (got {sampling!r})")
    w = parse_weights(weights, len(tasks))
    tmpl = get_template(template, tasks)
    pool = common_inputs(tasks)
    if pool is not None and len(pool) < 2:
        names = ",".join(t.name for t in tasks)
        raise TslensError(f"tasks {names} share fewer than 2 inputs; nothing to build prompts from")
    counts = largest_remainder_counts(w, n_examples)
    prompts = []
    for i in range(n_prompts):
        rng = np.random.default_rng([seed, i])
        drawn = _draw_query(tasks, pool, rng)
        if drawn is None:
            names = ",".join(t.name for t in tasks)
            raise TslensError(
                f"tasks {names} give the same answer for every query tried; mix tasks whose "
                "answers differ"
            )
        query, answers = drawn
        if sampling == "exact":
            demo_tasks = rng.permutation(np.repeat(np.arange(len(tasks)), counts))
        else:
            demo_tasks = rng.choice(len(tasks), size=n_examples, p=w)
        xs = _sample_demo_inputs(tasks, pool, rng, n_examples, query)
        ys = [tasks[k].answer(x) for x, k in zip(xs, demo_tasks, strict=True)]
        if shuffle_labels:
            ys = [ys[j] for j in np.random.default_rng([seed, i, 1]).permutation(len(ys))]
        lines = [tmpl.demo.replace("{x}", x).replace("{y}", y) for x, y in zip(xs, ys, strict=True)]
        query_text, answer_prefix = tmpl.query_and_answer_prefix(query)
        prompts.append(
            MixturePrompt(
                text=tmpl.sep.join([*lines, query_text]),
                query=query,
                answers=tuple(answer_prefix + a for a in answers),
                demo_tasks=tuple(int(k) for k in demo_tasks),
            )
        )
    return prompts


@dataclass(frozen=True)
class PromptSpec:
    """How a study draws its prompts: the settings every analysis shares, as one object.

    ``spec.mixture(tasks)`` builds the mixture prompts (:func:`build_mixture_prompts`),
    ``spec.queries(tasks)`` the zero-shot query prompts (:func:`build_query_prompts`, which
    use only ``n_prompts``, ``seed`` and ``template``), and ``spec.but(n_prompts=10)`` a copy
    with some settings changed. The same spec gives the same prompts.

    Attributes:
        n_prompts: number of prompts.
        n_examples: demonstrations per prompt.
        seed: prompt ``i`` is drawn from ``numpy.random.default_rng([seed, i])``.
        template: name in :data:`TEMPLATES`, a ``{x}...{y}`` string, or ``None`` for the
            family's default.
        weights: share of demonstrations per task (see :func:`parse_weights`); default uniform.
        sampling: ``"exact"`` or ``"iid"`` (see :func:`build_mixture_prompts`).
    """

    n_prompts: int = 100
    n_examples: int = 60
    seed: int = 0
    template: str | Template | None = None
    weights: str | Sequence[float] | None = None
    sampling: str = "exact"

    def mixture(self, tasks: Sequence[Task], shuffle_labels: bool = False) -> list[MixturePrompt]:
        """The mixture prompts of ``tasks`` under these settings."""
        return build_mixture_prompts(
            tasks, self.weights, self.n_prompts, self.n_examples, self.seed, self.template,
            self.sampling, shuffle_labels,
        )  # fmt: skip

    def queries(self, tasks: Sequence[Task]) -> list[MixturePrompt]:
        """The zero-shot query prompts of ``tasks`` (no demonstrations)."""
        return build_query_prompts(tasks, self.n_prompts, self.seed, self.template)

    def but(self, **changes: object) -> PromptSpec:
        """A copy with ``changes`` applied (``spec.but(weights=[1.0])``)."""
        return replace(self, **changes)

    def arguments(self) -> dict[str, object]:
        """``n_prompts``, ``n_examples``, ``seed`` and ``template`` as keyword arguments for
        the analyses that take them one by one:
        ``task_vectors(model, tasks, **spec.arguments())``."""
        return {"n_prompts": self.n_prompts, "n_examples": self.n_examples, "seed": self.seed,
                "template": self.template}  # fmt: skip

    def settings(self) -> dict[str, object]:
        """The prompt counts, seed and template as a result's ``settings`` record keeps them
        (template ``"default"`` when unset; weights are recorded by each result its own way)."""
        return {
            "n_prompts": self.n_prompts,
            "n_examples": self.n_examples,
            "seed": self.seed,
            "template": str(self.template or "default"),
        }


def build_query_prompts(
    tasks: Sequence[Task],
    n_prompts: int = 100,
    seed: int = 0,
    template: str | Template | None = None,
) -> list[MixturePrompt]:
    """Zero-shot prompts that hold only a query (``"France ->"``), with every task's answer:
    the targets of task-vector patching. Query ``i`` is drawn as in
    :func:`build_mixture_prompts` (``default_rng([seed, i])``, answers pairwise distinct)."""
    if n_prompts < 1:
        raise TslensError(f"--n-prompts must be >= 1 (got {n_prompts})")
    tmpl = get_template(template, tasks)
    pool = common_inputs(tasks)
    prompts = []
    for i in range(n_prompts):
        drawn = _draw_query(tasks, pool, np.random.default_rng([seed, i]))
        if drawn is None:
            raise TslensError(f"tasks {','.join(t.name for t in tasks)} never answer differently")
        query, answers = drawn
        query_text, answer_prefix = tmpl.query_and_answer_prefix(query)
        prompts.append(
            MixturePrompt(query_text, query, tuple(answer_prefix + a for a in answers), ())
        )
    return prompts


def _sample_demo_inputs(
    tasks: Sequence[Task], pool: list[str] | None, rng: np.random.Generator, n: int, query: str
) -> list[str]:
    if pool is None:
        return tasks[0].family.sample(rng, n, exclude=query)
    rest = [x for x in pool if x != query]
    return [rest[j] for j in rng.choice(len(rest), size=n, replace=len(rest) < n)]


def load_prompt_file(path: str | Path) -> tuple[list[str], list[list[str]] | None]:
    """Prompts from a file: ``.txt`` is one prompt (the whole text, less one final newline);
    ``.json``/``.jsonl``/``.csv`` rows have a ``prompt`` column and optionally ``answers`` (a
    list, or in CSV a ``|``-separated string). Returns ``(prompts, answers or None)``."""
    from tslens.tasks.files import SUFFIXES, load_rows

    file = Path(path).expanduser()
    if file.suffix.lower() == ".txt":
        with reading(file, "prompt file", "it must be UTF-8 text"):
            text = file.read_text(encoding="utf-8")
        return [text[:-1] if text.endswith("\n") else text], None
    if file.suffix.lower() not in SUFFIXES:
        raise TslensError(f"prompt file {path}: use .txt, .json, .jsonl or .csv")
    rows = load_rows(path, "prompt file")
    if "prompt" not in rows.column_names or len(rows) == 0:
        raise TslensError(f"prompt file {path} needs a 'prompt' column and at least one row")
    prompts = [str(p) for p in rows["prompt"]]
    if "answers" not in rows.column_names:
        return prompts, None
    answers = [a.split("|") if isinstance(a, str) else [str(x) for x in a] for a in rows["answers"]]
    return prompts, answers


CHARACTER_FAMILIES = ("digit", "letters8")  # the families the char models were trained on


def default_n_examples(tasks) -> int:
    """20 demonstrations for the character tasks the shipped model was trained on (its
    context holds them), 30 otherwise."""
    return 20 if tasks[0].family.name in CHARACTER_FAMILIES else 30
