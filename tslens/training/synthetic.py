"""Training batches for the from-scratch study, generated with tensor ops (no per-token loop).

A sequence is ``<bos>``, ``n_demos`` demonstration lines of ONE task, then the query line
(``x>y`` lines joined by newlines, as ``n_examples`` demonstrations plus a query are in
:func:`tslens.prompts.build_mixture_prompts`); the loss is on answer tokens only (``labels``
is -100 elsewhere), and optionally on the newline that ends each demonstration's answer, so
that the model learns where an answer stops (needed to decode multi-token answers). Tasks:
``plus{b}`` (digit x -> (x+b) mod 10, lines ``3>5``), ``ret{i}`` (8 distinct letters -> the
letter at index i, lines ``abcdefgh>c``) and ``pair{i}`` (the same letters -> the two letters
at i and i+1, lines ``abcdefgh>cd``: two-token answers). This is the ``"gt"``
template of :data:`tslens.prompts.TEMPLATES` with a BOS token first, so training and every
analysis agree.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

IGNORE = -100


def parse_task(name: str) -> tuple[str, int]:
    """``"plus3"`` -> ``("plus", 3)``, ``"ret6"`` -> ``("ret", 6)``."""
    match = re.fullmatch(r"(plus)([0-9])|(ret)([0-7])|(pair)([0-6])", name)
    if not match:
        raise ValueError(
            f"not a synthetic task: {name!r} (use plus0..plus9, ret0..ret7 or pair0..pair6)"
        )
    kind = next(g for g in match.groups()[::2] if g)
    return kind, int(next(g for g in match.groups()[1::2] if g))


INPUT_LENGTH = {"plus": 1, "ret": 8, "pair": 8}  # characters of x per task kind
ANSWER_LENGTH = {"plus": 1, "ret": 1, "pair": 2}  # characters of y per task kind


def sequence_length(kind: str, n_demos: int) -> int:
    """Tokens of one training sequence: BOS, then ``n_demos + 1`` lines ``x>y`` joined by
    newlines."""
    return 1 + (INPUT_LENGTH[kind] + ANSWER_LENGTH[kind] + 2) * (n_demos + 1) - 1


def _char_ids(tokenizer, chars: str) -> Tensor:
    vocab = tokenizer.get_vocab()
    return torch.tensor([vocab[c] for c in chars])


N_PARAMS = {"plus": 10, "ret": 8, "pair": 7}  # every task parameter of a kind (b or i)


@dataclass(frozen=True)
class Corruption:
    """How a training sequence departs from "every line is the same task" (issue 17's
    recipes for within-prompt superposition). Defaults: clean single-task sequences.

    - ``label_noise``: each demonstration's answer is, with this probability, the answer of a
      uniformly random task of the kind (any b / i, not only trained ones); the query is clean.
      A noised answer is context only, never a label: the model is not taught to output
      noise (which, measured, puts ~35% of its mass on other answers).
    - ``tail_noise``: with this probability a sequence's last k demonstrations (k uniform in
      1..n_demos // 4) are noised that way, so that the most recent lines are no shortcut.
    - ``mix_tasks``: the control for single-task training; each sequence mixes its task with a
      second trained task of the kind at a weight w ~ U(0, 1): every line, the query included,
      is the second task with probability w.
    """

    label_noise: float = 0.0
    tail_noise: float = 0.0
    mix_tasks: bool = False


def _line_params(
    params: Sequence[int],
    kind: str,
    n_sequences: int,
    n_lines: int,
    corruption: Corruption,
    generator: torch.Generator,
) -> tuple[Int[Tensor, "seq line"], Bool[Tensor, "seq line"]]:
    """The task parameter of every line of every sequence (the last line is the query), and
    which lines were noised."""
    table = torch.tensor(list(params))
    drawn = table[torch.randint(len(params), (n_sequences, 1), generator=generator)]
    line_params = drawn.expand(n_sequences, n_lines).clone()
    if corruption.mix_tasks:
        second = table[torch.randint(len(params), (n_sequences, 1), generator=generator)]
        weight = torch.rand(n_sequences, 1, generator=generator)
        switched = torch.rand(n_sequences, n_lines, generator=generator) < weight
        line_params = torch.where(switched, second.expand_as(line_params), line_params)
    noised = torch.rand(n_sequences, n_lines, generator=generator) < corruption.label_noise
    n_demos = n_lines - 1
    tail = torch.randint(1, max(1, n_demos // 4) + 1, (n_sequences, 1), generator=generator)
    in_tail = torch.arange(n_lines) >= n_demos - tail  # [seq, line]
    tail_on = torch.rand(n_sequences, 1, generator=generator) < corruption.tail_noise
    noised |= in_tail & tail_on
    noised[:, -1] = False  # the query is always answered by its own task
    random_params = torch.randint(N_PARAMS[kind], (n_sequences, n_lines), generator=generator)
    return torch.where(noised, random_params, line_params), noised


def synthetic_batch(
    tokenizer,
    kind: str,
    params: Sequence[int],
    n_sequences: int,
    n_demos: int,
    generator: torch.Generator,
    separator_loss: bool = False,
    corruption: Corruption = Corruption(),
) -> tuple[Int[Tensor, "seq pos"], Int[Tensor, "seq pos"]]:
    """``n_sequences`` sequences of one task kind, each with a task parameter drawn from
    ``params`` (the b of plus-b, the i of ret-i or pair-i). Returns ``(input_ids, labels)``;
    with ``separator_loss`` the newline after each demonstration's answer is a label too;
    ``corruption`` noises or mixes the lines' tasks (:class:`Corruption`)."""
    n_lines = n_demos + 1  # the demonstrations, then the query with its answer
    clean = corruption == Corruption()
    if clean:  # the original draws, so clean batches stay as they were
        choice = torch.tensor(list(params))[
            torch.randint(len(params), (n_sequences, 1), generator=generator)
        ]
    noised = torch.zeros(n_sequences, n_lines, dtype=torch.bool)
    if kind == "plus":
        x = torch.randint(10, (n_sequences, n_lines), generator=generator)
        if not clean:
            choice, noised = _line_params(params, kind, n_sequences, n_lines, corruption, generator)
        x_ids = _char_ids(tokenizer, string.digits)[x][..., None]  # [seq, line, 1]
        y_ids = _char_ids(tokenizer, string.digits)[(x + choice) % 10][..., None]
    else:  # ret and pair draw the same letters, so ret's batches are as they always were
        noise = torch.rand(n_sequences, n_lines, 26, generator=generator)
        letters = noise.argsort(-1)[..., :8]  # 8 distinct letters per line
        if not clean:
            choice, noised = _line_params(params, kind, n_sequences, n_lines, corruption, generator)
        letter_ids = _char_ids(tokenizer, string.ascii_lowercase)
        x_ids = letter_ids[letters]  # [seq, line, 8]
        offsets = torch.arange(ANSWER_LENGTH[kind])
        index = choice.expand(n_sequences, n_lines)[..., None] + offsets  # [seq, line, answer]
        y_ids = letter_ids[letters.gather(-1, index)]  # [seq, line, answer]
    gt, newline = _char_ids(tokenizer, ">\n")
    shape = (n_sequences, n_lines, 1)
    lines = torch.cat(
        [x_ids, gt.expand(shape), y_ids, newline.expand(shape)], dim=-1
    )  # [seq, demo, line]
    labels = torch.full_like(lines, IGNORE)
    answer_length = y_ids.shape[-1]
    labels[..., -1 - answer_length : -1] = y_ids
    if separator_loss:
        labels[..., -1] = newline
    labels[noised] = IGNORE  # noise is context, never a target
    bos = torch.full((n_sequences, 1), tokenizer.bos_token_id)
    flat = lines.flatten(1)[:, :-1]  # the query line has no trailing newline
    flat_labels = labels.flatten(1)[:, :-1]
    return torch.cat([bos, flat], 1), torch.cat([torch.full_like(bos, IGNORE), flat_labels], 1)
