"""The built-in tasks of Xiong et al. (2024): numbers, countries, words, and the synthetic
character-level tasks of their from-scratch study. Facts come from shipped data tables
(``tslens/data/*.jsonl``, built by ``scripts/build_data.py``) loaded with ``datasets``."""

from __future__ import annotations

import string
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from num2words import num2words

from tslens.tasks.base import Family, Task, register_task
from tslens.tasks.files import load_rows

DATA = Path(__file__).resolve().parents[1] / "data"


@cache
def load_table(name: str) -> tuple[dict[str, str], ...]:
    """Rows of the shipped table ``tslens/data/{name}.jsonl``."""
    return tuple(load_rows(DATA / f"{name}.jsonl").to_list())


@cache
def _country_facts() -> dict[str, dict[str, str]]:
    return {row["country"]: row for row in load_table("countries")}


@cache
def _operand_pairs() -> tuple[str, ...]:
    return tuple(f"{a}@{b}" for a in range(10, 100) for b in range(10, 100))


def _letters8(rng: np.random.Generator, n: int) -> list[str]:
    rows = np.argsort(rng.random((n, 26)), axis=1)[:, :8]  # 8 distinct letters per row
    return ["".join(string.ascii_lowercase[i] for i in row) for row in rows]


OPERANDS = Family("a@b", load_pool=_operand_pairs)
COUNTRIES = Family("country", load_pool=lambda: tuple(_country_facts()))
WORDS = Family("word", load_pool=lambda: tuple(row["word"] for row in load_table("words")))
DIGITS = Family("digit", load_pool=lambda: tuple(string.digits), template="gt")
LETTERS8 = Family("letters8", generate=_letters8, template="gt")


def _sum(x: str) -> int:
    a, b = x.split("@")
    return int(a) + int(b)


def _sum_in_words(lang: str) -> Callable[[str], str]:
    return lambda x: num2words(_sum(x), lang=lang)


def _country_fact(column: str) -> Callable[[str], str]:
    return lambda x: _country_facts()[x][column]


BUILTIN: list[Task] = [
    Task("copy_op1", OPERANDS, lambda x: x.split("@")[0], "a@b -> a"),
    Task("copy_op2", OPERANDS, lambda x: x.split("@")[1], "a@b -> b"),
    Task("add", OPERANDS, lambda x: str(_sum(x)), "a@b -> a+b (numerals)"),
    Task(
        "add_digits", OPERANDS, lambda x: str(_sum(x)), "a@b -> a+b as numerals (paper's group b)"
    ),
    Task("add_en", OPERANDS, _sum_in_words("en"), "a@b -> a+b in English words"),
    Task("add_fr", OPERANDS, _sum_in_words("fr"), "a@b -> a+b in French words"),
    Task("add_es", OPERANDS, _sum_in_words("es"), "a@b -> a+b in Spanish words"),
    Task("capital", COUNTRIES, _country_fact("capital"), "country -> its capital"),
    Task("continent", COUNTRIES, _country_fact("continent"), "country -> its continent"),
    Task("upper", COUNTRIES, str.upper, "country -> its name in UPPERCASE"),
    Task("currency", COUNTRIES, _country_fact("currency"), "country -> its currency (ISO 4217)"),
    Task("first_letter", WORDS, lambda x: x[0], "word -> its first letter"),
    Task("last_letter", WORDS, lambda x: x[-1], "word -> its last letter"),
    Task("first_letter_upper", WORDS, lambda x: x[0].upper(), "word -> first letter, capital"),
    Task("last_letter_upper", WORDS, lambda x: x[-1].upper(), "word -> last letter, capital"),
    *[
        Task(f"plus{b}", DIGITS, lambda x, b=b: str((int(x) + b) % 10), f"x -> (x+{b}) mod 10")
        for b in range(10)
    ],
    *[
        Task(f"ret{i}", LETTERS8, lambda x, i=i: x[i], f"8 distinct letters -> letter at index {i}")
        for i in range(8)
    ],
    *[
        Task(f"pair{i}", LETTERS8, lambda x, i=i: x[i : i + 2], f"8 letters -> letters {i},{i + 1}")
        for i in range(7)
    ],
]

for _task in BUILTIN:
    register_task(_task)
