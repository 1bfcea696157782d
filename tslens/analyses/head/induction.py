"""Induction and previous-token scores of every attention head, on repeated random sequences.

Each sequence is ``[BOS] + r + r`` for ``length`` random tokens ``r`` (seeded; no special
tokens), the probe of Olsson et al. 2022 that Yin & Steinhardt 2025 also use:

- induction score: the mean attention from each token of the second copy to the token that
  followed its earlier occurrence (query ``q`` to key ``q - length + 1``); a head that
  completes ``A B ... A -> B`` puts its mass there.
- previous-token score: the mean attention from each token (after the first real one) to the
  token just before it.

Both are in [0, 1]. One forward per batch of sequences reads every layer's pattern and keeps
only the two scores per head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tslens.engine.batching import batched
from tslens.engine.lens import as_lens
from tslens.hooks.names import hook_name


def random_repeated_tokens(
    model, n_sequences: int = 20, length: int = 25, seed: int = 0
) -> Int[Tensor, "sequence pos"]:
    """``n_sequences`` rows of ``[BOS] + r + r`` (no BOS for a model that uses none), ``r``
    ``length`` tokens drawn uniformly from the vocabulary without its special tokens."""
    lens = as_lens(model)
    vocab = lens.cfg.d_vocab
    special = set(getattr(lens.tokenizer, "all_special_ids", []) or [])
    allowed = torch.tensor([t for t in range(vocab) if t not in special])
    generator = torch.Generator().manual_seed(seed)
    draws = allowed[torch.randint(len(allowed), (n_sequences, length), generator=generator)]
    rows = torch.cat([draws, draws], dim=1)
    if lens.prepend_bos:
        rows = torch.cat([torch.full((n_sequences, 1), lens.bos_id), rows], dim=1)
    return rows


@dataclass
class CopyingScores:
    """Every head's induction and previous-token score ``[layer, head]`` and the probe."""

    induction: Float[Tensor, "layer head"]
    previous_token: Float[Tensor, "layer head"]
    n_sequences: int
    length: int
    seed: int


@torch.inference_mode()
def copying_scores(
    model,
    n_sequences: int = 20,
    length: int = 25,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = False,
) -> CopyingScores:
    """Induction and previous-token scores of every head (see the module docstring)."""
    lens = as_lens(model)
    tokens = random_repeated_tokens(lens, n_sequences, length, seed)
    start = 1 if lens.prepend_bos else 0  # where r begins
    width = tokens.shape[1]
    queries = torch.arange(start + length, width)  # the second copy
    previous = torch.arange(start + 1, width)  # every real token but the first

    def run(chunk: list[int]) -> dict[str, Tensor]:
        sums = torch.zeros(2, lens.n_layers, lens.n_heads, dtype=torch.float64)

        def read(layer: int):
            def hook(pattern: Tensor, hook) -> None:  # [batch, head, query, key]
                p = pattern.double().cpu()
                sums[0, layer] = p[:, :, queries, queries - length + 1].mean(-1).sum(0)
                sums[1, layer] = p[:, :, previous, previous - 1].mean(-1).sum(0)

            return hook

        hooks = [(hook_name("pattern", layer), read(layer)) for layer in range(lens.n_layers)]
        ids = tokens[chunk].to(lens.device)
        with lens.hooks(fwd_hooks=hooks):
            lens(ids, logits_to_keep=1)
        return {"sums": sums}

    batches = batched(
        lens, n_sequences, run, kind="copying", desc="induction probe", unit="sequence",
        key=lambda chunk: [tokens[chunk].tolist()], progress=progress,
        batch_size=batch_size or lens.batch_size(width),
    )  # fmt: skip
    total = torch.stack([got["sums"] for _, got in batches]).sum(0) / n_sequences
    return CopyingScores(total[0].float(), total[1].float(), n_sequences, length, seed)
