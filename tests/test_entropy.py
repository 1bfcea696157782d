"""The example analysis of docs/architecture.md (per-head attention entropy) against a plain
computation: one unpadded forward per prompt."""

from __future__ import annotations

import torch

from tslens.analyses.head.entropy import attention_entropy
from tslens.engine import as_lens
from tslens.hooks.capture import capturing


def plain_entropy(model, text: str) -> torch.Tensor:
    lens = as_lens(model)
    ids = torch.tensor([lens.token_ids([text])[0]], device=lens.device)
    layers = list(range(lens.n_layers))
    with torch.inference_mode(), capturing(lens, ["pattern"], layers, [-1]) as store:
        lens(ids)
    p = torch.stack(store["pattern"], 1)[0, :, 0].double()  # [layer, head, key]
    return -(p * p.clamp(min=1e-300).log()).sum(-1)


def test_attention_entropy_in_padded_batches_equals_one_prompt_at_a_time(tiny_char):
    texts = ["12+3=", "7+1=8\n3+3=", "9", "4+4=8\n"]
    fast = attention_entropy(tiny_char, texts, batch_size=3)  # batches of unequal lengths
    slow = torch.stack([plain_entropy(tiny_char, t) for t in texts])
    assert fast.shape == (len(texts), tiny_char.cfg.n_layers, tiny_char.cfg.n_heads)
    assert (fast - slow).abs().max() < 1e-5
    lengths = torch.tensor([len(as_lens(tiny_char).token_ids([t])[0]) for t in texts])
    even = attention_entropy(tiny_char, texts, normalized=True, batch_size=3)
    expected = slow / lengths.clamp(min=2).double().log()[:, None, None]
    assert (even - expected).abs().max() < 1e-5 and even.max() <= 1 + 1e-6
