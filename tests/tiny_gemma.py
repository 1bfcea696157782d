"""A tiny Gemma-3-shaped model: sliding-window and full attention layers (window 8, far shorter
than the test prompts), one key/value head for four query heads, q/k norms, post-attention and
post-feedforward norms with Gemma's ``1 + weight`` gain, embedding scaling and a tied
unembedding; with the shipped character tokenizer, as an ordinary HF directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

CHAR_TOKENIZER = Path(__file__).resolve().parents[1] / "tslens" / "models" / "tslens-char-3l4h"


def write_tiny_gemma(out: Path, seed: int = 0, window: int = 8) -> Path:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=1, head_dim=32, sliding_window=window,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=512, query_pre_attn_scalar=32, tie_word_embeddings=True,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():  # Gemma's norms start at gain 1 + 0; move them so mistakes show
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(-0.5, 0.5)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(CHAR_TOKENIZER / name, out / name)
    return out
