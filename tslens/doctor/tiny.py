"""Tiny models of every architecture tslens ships, built in seconds with random weights, for
the exactness checks (``tslens doctor``) and the tests.

- ``char-llama``: the character models' Llama (rotary, full multi-head attention);
- ``gpt2``: the GPT-2 architecture (learned positions, joint QKV, LayerNorm), char vocabulary;
- ``gemma3``: Gemma-3-shaped: sliding-window and full layers (window 8, far shorter than the
  check prompts), one key/value head for four query heads, q/k norms, post-attention and
  post-feedforward norms with Gemma's ``1 + weight`` gain, embedding scaling, tied unembedding;
- ``llama-gqa``: a Llama with four query heads sharing two key/value heads (SmolLM2's layout).

All use the character tokenizer (:func:`tslens.training.charlm.char_tokenizer`) and are written as
ordinary HF directories that :func:`tslens.sources.loader.load_model` boots.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tslens.training.charlm import build_char_model, char_tokenizer

KINDS = ("char-llama", "gpt2", "gemma3", "llama-gqa")


def _move_norms(model, low: float, high: float) -> None:
    """Norm gains away from their initial value, so that a wrong norm convention shows."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(low, high)


def write_tiny_gemma(out: Path, seed: int = 0, window: int = 8) -> Path:
    """The ``gemma3`` tiny model, saved in ``out``."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = char_tokenizer()
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=1, head_dim=32, sliding_window=window,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=512, query_pre_attn_scalar=32, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config).eval()
    _move_norms(model, -0.5, 0.5)  # Gemma's gains are 1 + weight, weight starting at 0
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)


def write_tiny_gqa_llama(out: Path, seed: int = 0) -> Path:
    """The ``llama-gqa`` tiny model, saved in ``out``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = char_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    _move_norms(model, 0.5, 1.5)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)


def write_tiny(kind: str, out: Path, seed: int = 0) -> Path:
    """Write the tiny model ``kind`` (one of :data:`KINDS`) into the directory ``out``."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars for a file of kilobytes
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if kind == "gemma3":
        return write_tiny_gemma(out, seed)
    if kind == "llama-gqa":
        return write_tiny_gqa_llama(out, seed)
    if kind in ("char-llama", "gpt2"):
        architecture = "llama" if kind == "char-llama" else "gpt2"
        build_char_model(out, n_layers=2, d_model=32, n_heads=2, n_ctx=512, seed=seed + 1,
                         architecture=architecture)  # fmt: skip
        return out
    raise ValueError(f"unknown tiny model {kind!r}; use one of {', '.join(KINDS)}")
