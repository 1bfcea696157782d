"""Answer tokens in context: which token ids an answer adds behind its prompt, and the
check that a prompt plus its answer fits the model's context. Written against the model
context (:class:`tslens.engine.lens.Lens`: ``token_ids``, ``n_ctx``), which the callers hold.
"""

from __future__ import annotations

from collections.abc import Sequence

from tslens.errors import TslensError


class TokenBoundaryError(TslensError):
    """An answer's first token merges with the prompt's last token."""


def answer_token_ids(
    lens,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    prompt_ids: Sequence[list[int]],
    labels: Sequence[str] | None = None,
    boundary: str = "raise",
) -> list[list[list[int] | None]]:
    """Token ids of every answer in context: ``tokens(prompt+answer)[len(tokens(prompt)):]``.

    Args:
        labels: a name per answer slot (e.g. the task names) used in error messages.
        boundary: what to do with an answer that is empty or merges with the end of its
            prompt: ``"raise"`` :class:`TokenBoundaryError`, or ``"drop"`` it (``None`` ids).
    """
    flat = [p + a for p, ans in zip(prompts, answers, strict=True) for a in ans]
    full_ids = iter(lens.token_ids(flat) if flat else [])
    out = []
    for prompt, ans, p_ids in zip(prompts, answers, prompt_ids, strict=True):
        row = []
        for k, answer in enumerate(ans):
            ids = next(full_ids)
            if ids[: len(p_ids)] != p_ids or len(ids) == len(p_ids):
                if boundary == "drop":
                    row.append(None)
                    continue
                who = f"task {labels[k]}" if labels else f"answer {k}"
                raise TokenBoundaryError(
                    f"{who}: answer {answer!r} merges with the prompt's end {prompt[-12:]!r} into "
                    "other tokens; use a template whose answer starts a new token (e.g. arrow, or "
                    "a separator before the answer)"
                )
            row.append(ids[len(p_ids) :])
        out.append(row)
    return out


def check_context(lens, prompt_ids: Sequence[list[int]], answer_ids) -> None:
    """Refuse a prompt plus answer longer than the model's context."""
    n_ctx = lens.n_ctx
    longest = max(
        len(p) + max((len(a) for a in ans if a is not None), default=0)
        for p, ans in zip(prompt_ids, answer_ids, strict=True)
    )
    if n_ctx and longest > n_ctx:
        raise TslensError(
            f"a prompt plus answer is {longest} tokens, longer than the model's context of "
            f"{n_ctx}; use fewer --n-examples"
        )
