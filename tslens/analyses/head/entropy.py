"""How spread out each head's attention is at the answer position: the entropy of its
attention from the final token, per head and prompt (the example analysis of
``docs/architecture.md``: a study written only with the engine's public verbs).

A head that reads one token (a previous-token or copying head) has entropy near 0; a head that
averages over the ``n`` tokens it sees has entropy near ``log n``. Dividing by ``log`` of the
number of tokens the final position sees (``normalized``) makes prompts of different lengths
comparable: 1 is perfectly even attention.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from tslens.engine import Lens, as_lens, capture_activations


def attention_entropy(
    model: Lens,
    texts: Sequence[str],
    normalized: bool = False,
    batch_size: int | None = None,
    progress: bool = False,
) -> Float[Tensor, "prompt layer head"]:
    """Entropy (nats) of every head's attention from each text's final token (float64, CPU);
    with ``normalized``, divided by log(tokens the final token sees), so 1 is even attention.

    One batched capture of the attention pattern at the final position; each batch is reduced
    to its entropies before batches are joined (their key widths differ)."""
    lens = as_lens(model)
    lengths = [len(ids) for ids in lens.token_ids(texts)]

    def entropy(chunk: list[int], acts: dict[str, Tensor]) -> dict[str, Tensor]:
        p = acts["pattern"].double()  # [batch, layer, head, key]; padded keys have p = 0
        h = -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(-1)
        if normalized:
            seen = torch.tensor([lengths[i] for i in chunk], dtype=torch.float64)
            h = h / seen.clamp(min=2).log()[:, None, None]
        return {"entropy": h}

    return capture_activations(
        lens, texts, ("pattern",), positions=-1, batch_size=batch_size, progress=progress,
        reduce=entropy, reduce_key=normalized,
    )["entropy"]  # fmt: skip
