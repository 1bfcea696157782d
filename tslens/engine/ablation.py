"""Exact answer probabilities with attention heads ablated (zero, mean or resample), at the
prompt's final position or at every position.

- zero: the head's ``z`` is 0.
- mean: its mean over the prompt set, at the final position (scope ``final``) or over every
  real token (scope ``all``, one position-independent mean).
- resample: its value on another prompt of the set (a seeded derangement, so never the prompt
  itself). With scope ``all`` the source is aligned at the end: the target's ``j``-th token
  from the end gets the source's ``j``-th from the end; positions the source does not cover
  (it is shorter, or they hold the answer being scored) get the all-token mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from tslens.engine.batching import batched
from tslens.engine.lens import as_lens
from tslens.engine.packing import forward_packed, pack_answers, read_packed
from tslens.engine.tokens import answer_token_ids
from tslens.errors import TslensError
from tslens.hooks.ablate import ablating
from tslens.hooks.capture import capturing
from tslens.hooks.names import hook_name

KINDS = ("zero", "mean", "resample")
SCOPES = ("final", "all")
Head = tuple[int, int]


@dataclass
class HeadStatistics:
    """Every head's ``z`` over a prompt set (float32, CPU)."""

    final: Float[Tensor, "prompt layer head d_head"]  # at each prompt's final token
    mean_final: Float[Tensor, "layer head d_head"]
    mean_all: Float[Tensor, "layer head d_head"]  # over every real token of every prompt


@torch.inference_mode()
def head_statistics(model, texts: Sequence[str], batch_size: int | None = None) -> HeadStatistics:
    """One pass over ``texts`` collecting what mean and resample ablation need."""
    lens = as_lens(model)
    n_layers = lens.n_layers
    ids = lens.token_ids(texts)

    def run(chunk: list[int]) -> dict[str, Tensor]:
        """One batch's sum of ``z`` over its real tokens and ``z`` at its final tokens."""
        batch = lens.left_pad([ids[i] for i in chunk])
        sums: list[Tensor] = [torch.zeros(0)] * n_layers
        finals: list[Tensor] = [torch.zeros(0)] * n_layers

        def collect(layer: int):
            def hook(act: Tensor, hook) -> None:
                weights = batch.mask.to(act.device, act.dtype)[:, :, None, None]
                sums[layer] = (act * weights).sum((0, 1)).double().cpu()
                finals[layer] = act[:, -1].float().cpu()

            return hook

        hooks = [(hook_name("z", layer), collect(layer)) for layer in range(n_layers)]
        with lens.hooks(fwd_hooks=hooks):
            lens(batch.ids, attention_mask=batch.mask, position_ids=batch.positions,
                 logits_to_keep=1)  # fmt: skip
        return {"sums": torch.stack(sums), "finals": torch.stack(finals, dim=1)}

    batches = batched(
        lens,
        len(ids),
        run,
        kind="head-stats",
        key=lambda chunk: [[ids[i] for i in chunk]],
        batch_size=batch_size or lens.batch_size(max(len(i) for i in ids)),
    )
    parts = [got for _, got in batches]
    final = torch.cat([part["finals"] for part in parts])
    sums = torch.stack([part["sums"] for part in parts]).sum(0)
    n_tokens = sum(len(i) for i in ids)
    return HeadStatistics(final, final.mean(0), sums.float() / n_tokens)


def resample_sources(n: int, seed: int = 0) -> list[int]:
    """For each of ``n`` prompts, another prompt to take activations from: a derangement
    (no prompt is its own source), the same for the same seed."""
    if n < 2:
        raise TslensError("resample ablation needs at least 2 prompts (--n-prompts 2 or more)")
    order = np.random.default_rng([seed, 7]).permutation(n)
    sources = [0] * n
    for i in range(n):  # each prompt in the cycle takes from the next one
        sources[order[i]] = int(order[(i + 1) % n])
    return sources


def check_ablation(kind: str, scope: str) -> None:
    """Raise :class:`TslensError` on an unknown ablation kind or scope."""
    if kind not in KINDS:
        raise TslensError(f"unknown ablation kind {kind!r}; use one of {', '.join(KINDS)}")
    if scope not in SCOPES:
        raise TslensError(f"unknown ablation scope {scope!r}; use final or all")


@torch.inference_mode()
def ablated_answer_logprobs(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    heads: Sequence[Head],
    kind: str = "mean",
    scope: str = "final",
    stats: HeadStatistics | None = None,
    seed: int = 0,
    batch_size: int | None = None,
) -> Float[Tensor, "prompt k"]:
    """log P(answer | prompt) with ``heads`` (``(layer, head)`` pairs) ablated (float64, CPU).

    ``stats`` are the heads' statistics over ``prompts`` (computed if not given; mean and
    resample ablation use them); ``seed`` picks the resample sources.
    """
    check_ablation(kind, scope)
    lens = as_lens(model)
    heads = [tuple(h) for h in heads]
    if kind != "zero" and stats is None:
        stats = head_statistics(lens, prompts, batch_size)
    sources = resample_sources(len(prompts), seed) if kind == "resample" else None
    prompt_ids = lens.token_ids(prompts)
    answer_ids = answer_token_ids(lens, prompts, answers, prompt_ids)
    k = len(answers[0])

    def values_for(rows: list[int]) -> dict | None:
        """Each head's replacement ``z`` for a batch (None: the aligned resample, which takes
        a forward of the sources and is computed inside the batch)."""
        if kind == "zero":
            return {h: torch.zeros(lens.d_head) for h in heads}
        if kind == "mean":
            mean = stats.mean_final if scope == "final" else stats.mean_all
            return {h: mean[h] for h in heads}
        if scope == "final":
            src = [sources[i] for i in rows]
            return {h: stats.final[src, h[0], h[1]][:, None] for h in heads}
        return None

    def key(rows: list[int]) -> list:
        values = values_for(rows)
        src = [prompt_ids[sources[i]] for i in rows] if values is None else []
        return [[prompt_ids[i] for i in rows], [answer_ids[i] for i in rows], heads, kind, scope,
                [] if values is None else [values[h] for h in heads], src,
                stats.mean_all if kind == "resample" and scope == "all" else []]  # fmt: skip

    def run(rows: list[int]) -> dict[str, Tensor]:
        packed = pack_answers([prompt_ids[i] for i in rows], [answer_ids[i] for i in rows],
                              lens.pad_id)  # fmt: skip
        width = max(len(prompt_ids[i]) for i in rows)
        columns = torch.tensor([width - 1]) if scope == "final" else None
        values = values_for(rows)
        if values is None:
            values = _aligned_resample(lens, [prompt_ids[sources[i]] for i in rows], heads,
                                       width, packed.ids.shape[1], stats)  # fmt: skip
        with ablating(lens, values, columns):
            logits = forward_packed(lens, packed)
        return {"logprobs": read_packed(logits, packed.reads, len(rows), k, greedy=False)[0]}

    out = torch.empty(len(prompts), k, dtype=torch.float64)
    batches = batched(
        lens,
        len(prompts),
        run,
        kind="ablate",
        key=key,
        batch_size=batch_size or lens.batch_size(max(map(len, prompt_ids)) + 8),
    )
    for rows, got in batches:
        out[rows] = got["logprobs"].cpu()
    return out


def _aligned_resample(
    model, source_ids: list[list[int]], heads: list[Head], width: int, total: int, stats
) -> dict[Head, Float[Tensor, "row col d_head"]]:
    """Each source prompt's ``z`` laid out on the target's columns, aligned at the prompt's
    end; uncovered columns hold the all-token mean."""
    batch = as_lens(model).left_pad(source_ids)
    src_width = batch.ids.shape[1]
    layers = sorted({layer for layer, _ in heads})
    with capturing(model, ("z",), layers, range(-src_width, 0)) as store:
        model(batch.ids, attention_mask=batch.mask, position_ids=batch.positions, logits_to_keep=1)
    # target column c (< width) is the (width-1-c)-th token from the end; so is source column
    # src_width - width + c, which holds a real token when it is not left of the source start
    src_col = src_width - width + torch.arange(width)
    start = src_width - batch.lengths.cpu()
    covered = (src_col[None, :] >= start[:, None]) & (src_col[None, :] >= 0)  # [row, width]
    values = {}
    for layer, head in heads:
        z = store["z"][layers.index(layer)][:, :, head].float().cpu()  # [row, src_width, d]
        full = stats.mean_all[layer, head].expand(len(source_ids), total, -1).clone()
        taken = z[:, src_col.clamp(min=0)]
        full[:, :width] = torch.where(covered[..., None], taken, full[:, :width])
        values[(layer, head)] = full
    return values
