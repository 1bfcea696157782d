"""Write a tiny Llama (grouped-query attention, byte-level BPE) as a GGUF file, as llama.cpp's
converter lays it out, so the GGUF path of tslens can be tested against the model it came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

BOS = "<s>"
MERGES = ["Ġ t", "Ġ a", "Ġt h", "- >", "Ġ -", "Ġ- >", "e r", "a n"]


def byte_vocab() -> list[str]:
    """256 byte tokens in GPT-2's byte alphabet, the merges' results, then the BOS token."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = list(bytes_to_unicode().values())
    for merge in MERGES:
        joined = merge.replace(" ", "")
        if joined not in tokens:
            tokens.append(joined)
    return [*tokens, BOS]


def build_llama(seed: int = 0):
    """A 2-layer Llama with 4 query heads sharing 2 key/value heads, random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(byte_vocab()),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=len(byte_vocab()) - 1,
        eos_token_id=len(byte_vocab()) - 1,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms away from 1, so a wrong norm mapping would show
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    return model


def _permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary re-ordering of q/k rows (transformers undoes it when reading)."""
    return (
        weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_gguf(model, path: Path, quant: str | None = None) -> Path:
    """Write ``model`` (from :func:`build_llama`) to ``path``; ``quant`` (e.g. ``"Q8_0"``)
    quantizes every matrix, norms stay float32."""
    import gguf

    cfg = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }  # fmt: skip
    for layer in range(cfg.num_hidden_layers):
        for hf, gg in per_layer.items():
            names[f"model.layers.{layer}.{hf}.weight"] = f"blk.{layer}.{gg}.weight"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    vocab = byte_vocab()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab)
    writer.add_token_types([1] * (len(vocab) - 1) + [3])  # the last one is a control token
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(len(vocab) - 1)
    writer.add_eos_token_id(len(vocab) - 1)
    writer.add_add_bos_token(True)
    qtype = None if quant is None else gguf.GGMLQuantizationType[quant]
    for hf_name, gg_name in names.items():
        weight = sd[hf_name]
        if gg_name.endswith("attn_q.weight"):
            weight = _permute(weight, cfg.num_attention_heads)
        elif gg_name.endswith("attn_k.weight"):
            weight = _permute(weight, cfg.num_key_value_heads)
        if qtype is not None and weight.ndim == 2:
            writer.add_tensor(gg_name, gguf.quants.quantize(weight, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(gg_name, weight.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def dequantized_copy(model, quant: str):
    """``model`` with every matrix replaced by its quantize -> dequantize round trip."""
    import copy

    import gguf

    qtype = gguf.GGMLQuantizationType[quant]
    out = copy.deepcopy(model)
    with torch.no_grad():
        for _name, param in out.named_parameters():
            if param.ndim == 2:
                packed = gguf.quants.quantize(param.numpy(), qtype)
                param.copy_(torch.from_numpy(gguf.quants.dequantize(packed, qtype)))
    return out
