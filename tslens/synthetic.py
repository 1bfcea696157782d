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

import torch
from jaxtyping import Int
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


def synthetic_batch(
    tokenizer,
    kind: str,
    params: Sequence[int],
    n_sequences: int,
    n_demos: int,
    generator: torch.Generator,
    separator_loss: bool = False,
) -> tuple[Int[Tensor, "seq pos"], Int[Tensor, "seq pos"]]:
    """``n_sequences`` sequences of one task kind, each with a task parameter drawn from
    ``params`` (the b of plus-b, the i of ret-i or pair-i). Returns ``(input_ids, labels)``;
    with ``separator_loss`` the newline after each demonstration's answer is a label too."""
    n_lines = n_demos + 1  # the demonstrations, then the query with its answer
    choice = torch.tensor(list(params))[
        torch.randint(len(params), (n_sequences, 1), generator=generator)
    ]
    if kind == "plus":
        x = torch.randint(10, (n_sequences, n_lines), generator=generator)
        x_ids = _char_ids(tokenizer, string.digits)[x][..., None]  # [seq, demo, 1]
        y_ids = _char_ids(tokenizer, string.digits)[(x + choice) % 10][..., None]
    else:  # ret and pair draw the same letters, so ret's batches are as they always were
        noise = torch.rand(n_sequences, n_lines, 26, generator=generator)
        letters = noise.argsort(-1)[..., :8]  # 8 distinct letters per line
        letter_ids = _char_ids(tokenizer, string.ascii_lowercase)
        x_ids = letter_ids[letters]  # [seq, demo, 8]
        index = choice[..., None] + torch.arange(ANSWER_LENGTH[kind])  # [seq, 1, answer]
        y_ids = letter_ids[letters.gather(-1, index.expand(-1, n_lines, -1))]  # [seq, demo, answer]
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
    bos = torch.full((n_sequences, 1), tokenizer.bos_token_id)
    flat = lines.flatten(1)[:, :-1]  # the query line has no trailing newline
    flat_labels = labels.flatten(1)[:, :-1]
    return torch.cat([bos, flat], 1), torch.cat([torch.full_like(bos, IGNORE), flat_labels], 1)
