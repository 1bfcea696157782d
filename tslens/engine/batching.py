"""The one batch loop of tslens: how many prompts go into one forward pass, what happens when
that is too many, and what a user sees while it runs.

:func:`batched` is the loop every engine function and analysis uses: it cuts the work into
chunks, shows one progress bar (items/s and ETA), saves and reuses each chunk's result through
:func:`tslens.engine.resume.cached` (so an interrupted run resumes), and retries a chunk that
runs out of accelerator memory with half as many items. On CPU the measured best is a small
batch (cache locality); on an accelerator the default is sized from the free memory and the
model's shape (:func:`default_batch_size`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from tslens.engine.resume import cached

R = TypeVar("R")
_BAR: contextvars.ContextVar[Any] = contextvars.ContextVar("tslens_bar", default=None)

GPT2_SMALL = 768 * 12  # d_model x n_layers of the model the CPU default was measured on


def default_batch_size(model, tokens_per_row: int = 512) -> int:
    """Prompts per forward when the caller does not say.

    CPU: about 1024 tokens x GPT-2 small's width and depth per forward: 2 prompts of 512 tokens
    for GPT-2 small on 2 cores (bigger batches lose cache locality), more for shorter prompts
    and smaller models (measured on 84-token prompts: 8 prompts per forward score 19-40%
    faster than 2 on GPT-2 small, SmolLM2-135M and Gemma-3-270M, whose 262k-vocabulary
    unembedding is streamed once per forward), between 2 and 64. CUDA: half the free memory
    over an estimate of one row's activations
    (``tokens_per_row`` tokens x layers x (residual + MLP + attention) in the model's dtype),
    between 1 and 256; :func:`batched` halves an estimate that turns out too high.
    """
    cfg = model.cfg
    device = torch.device(cfg.device)
    if device.type != "cuda":
        if device.type == "cpu":
            tokens = 2 * 512 * GPT2_SMALL / (cfg.d_model * cfg.n_layers * max(tokens_per_row, 1))
            return int(max(2, min(64, tokens)))
        return 32
    free, _ = torch.cuda.mem_get_info(device)
    dtype = getattr(cfg, "dtype", torch.float32)
    bytes_per = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    d_mlp = getattr(cfg, "d_mlp", None) or 4 * cfg.d_model
    per_token = cfg.n_layers * (6 * cfg.d_model + 2 * d_mlp + cfg.n_heads * tokens_per_row)
    per_row = tokens_per_row * per_token * bytes_per
    return int(max(1, min(256, free // 2 // max(per_row, 1))))


def batched(
    model,
    order: Sequence[int] | int,
    compute: Callable[[list[int]], R],
    *,
    batch_size: int,
    kind: str | None = None,
    key: Callable[[list[int]], Any] | None = None,
    desc: str = "",
    unit: str = "prompt",
    per_item: int = 1,
    progress: bool = False,
) -> Iterator[tuple[list[int], R]]:
    """Yield ``(chunk, compute(chunk))`` for consecutive chunks of ``order`` (item indices, or
    a count ``n`` for ``range(n)``) of up to ``batch_size`` items.

    - ``kind`` and ``key``: the chunk's result is ``cached(kind, model, key(chunk), ...)``:
      saved under the running command's ``--out`` and reused by a re-run (``key(chunk)`` must
      hold everything the result depends on besides the model). Without ``kind`` it is
      computed every time (e.g. sampling, whose result depends on a generator's state).
    - A chunk that runs out of accelerator memory is retried with half as many items, down to
      one, which raises (``compute`` must have no effect when it raises).
    - ``progress``: a bar named ``desc`` counting ``per_item`` ``unit`` s per item, with rate
      and ETA; code inside ``compute`` can name its stage on it with :func:`status`.
    """
    order = list(range(order)) if isinstance(order, int) else list(order)
    bar = tqdm(total=len(order) * per_item, desc=desc, unit=unit, disable=not progress,
               leave=False)  # fmt: skip
    token = _BAR.set(bar)
    try:
        start, size = 0, max(1, batch_size)
        while start < len(order):
            chunk = order[start : start + size]
            try:
                if kind is None:
                    result = compute(chunk)
                else:
                    parts = key(chunk) if key is not None else chunk
                    result = cached(kind, model, parts, lambda chunk=chunk: compute(chunk))
            except torch.OutOfMemoryError:
                if size == 1:
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                size = max(1, size // 2)
                continue
            start += len(chunk)
            bar.update(len(chunk) * per_item)
            yield chunk, result
    finally:
        _BAR.reset(token)
        bar.close()


def status(text: str) -> None:
    """Name the current stage on the innermost :func:`batched` progress bar (a no-op when
    there is none or it is hidden)."""
    bar = _BAR.get()
    if bar is not None and not bar.disable:
        bar.set_postfix_str(text, refresh=True)
