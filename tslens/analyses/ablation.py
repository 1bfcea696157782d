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

from tslens.batching import default_batch_size
from tslens.engine.continuation import left_pad
from tslens.errors import TslensError
from tslens.hooks.ablate import ablating
from tslens.hooks.capture import capturing
from tslens.hooks.names import hook_name
from tslens.packing import forward_packed, pack_answers, read_packed
from tslens.resume import cached
from tslens.scoring import answer_token_ids, pad_token_id, prompt_token_ids

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
    n_layers = model.cfg.n_layers

    def run(rows: list[list[int]]) -> dict[str, Tensor]:
        """One batch's sum of ``z`` over its real tokens and ``z`` at its final tokens."""
        batch = left_pad(rows, pad_token_id(model), model.cfg.device)
        sums: list[Tensor] = [torch.zeros(0)] * n_layers
        finals: list[Tensor] = [torch.zeros(0)] * n_layers

        def collect(layer: int):
            def hook(act: Tensor, hook) -> None:
                weights = batch.mask.to(act.device, act.dtype)[:, :, None, None]
                sums[layer] = (act * weights).sum((0, 1)).double().cpu()
                finals[layer] = act[:, -1].float().cpu()

            return hook

        hooks = [(hook_name("z", layer), collect(layer)) for layer in range(n_layers)]
        with model.hooks(fwd_hooks=hooks):
            model(batch.ids, attention_mask=batch.mask, position_ids=batch.positions,
                  logits_to_keep=1)  # fmt: skip
        return {"sums": torch.stack(sums), "finals": torch.stack(finals, dim=1)}

    ids = prompt_token_ids(model, texts)
    batch_size = batch_size or default_batch_size(model, max(len(i) for i in ids))
    parts = [
        cached("head-stats", model, [rows], lambda rows=rows: run(rows))
        for rows in (ids[start : start + batch_size] for start in range(0, len(ids), batch_size))
    ]
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
    heads = [tuple(h) for h in heads]
    if kind != "zero" and stats is None:
        stats = head_statistics(model, prompts, batch_size)
    sources = resample_sources(len(prompts), seed) if kind == "resample" else None
    prompt_ids = prompt_token_ids(model, prompts)
    answer_ids = answer_token_ids(model, prompts, answers, prompt_ids)
    out = torch.empty(len(prompts), len(answers[0]), dtype=torch.float64)
    batch_size = batch_size or default_batch_size(model, max(map(len, prompt_ids)) + 8)
    pad = pad_token_id(model)
    for start in range(0, len(prompts), batch_size):
        rows = list(range(start, min(start + batch_size, len(prompts))))
        packed = pack_answers([prompt_ids[i] for i in rows], [answer_ids[i] for i in rows], pad)
        width = max(len(prompt_ids[i]) for i in rows)
        columns = torch.tensor([width - 1]) if scope == "final" else None
        if kind == "zero":
            values = {h: torch.zeros(model.cfg.d_head) for h in heads}
        elif kind == "mean":
            mean = stats.mean_final if scope == "final" else stats.mean_all
            values = {h: mean[h] for h in heads}
        elif scope == "final":
            src = [sources[i] for i in rows]
            values = {h: stats.final[src, h[0], h[1]][:, None] for h in heads}
        else:
            src = [prompt_ids[sources[i]] for i in rows]
            values = None  # computed inside the batch (it takes a forward of the sources)
        key = [[prompt_ids[i] for i in rows], [answer_ids[i] for i in rows], heads, kind, scope,
               [] if values is None else [values[h] for h in heads], src if values is None else
               [], stats.mean_all if kind == "resample" and scope == "all" else []]  # fmt: skip

        def run(packed=packed, values=values, columns=columns, width=width, rows=rows) -> dict:
            if values is None:
                values = _aligned_resample(model, [prompt_ids[sources[i]] for i in rows], heads,
                                           width, packed.ids.shape[1], stats)  # fmt: skip
            with ablating(model, values, columns):
                logits = forward_packed(model, packed)
            return {
                "logprobs": read_packed(
                    logits, packed.reads, len(rows), out.shape[1], greedy=False
                )[0]
            }

        out[rows] = cached("ablate", model, key, run)["logprobs"].cpu()
    return out


def _aligned_resample(
    model, source_ids: list[list[int]], heads: list[Head], width: int, total: int, stats
) -> dict[Head, Float[Tensor, "row col d_head"]]:
    """Each source prompt's ``z`` laid out on the target's columns, aligned at the prompt's
    end; uncovered columns hold the all-token mean."""
    batch = left_pad(source_ids, pad_token_id(model), model.cfg.device)
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
