"""Hook points by kind and layer, as TransformerLens 4 ``TransformerBridge`` names them."""

from __future__ import annotations

from tslens.errors import TslensError

HOOK_KINDS: dict[str, str] = {
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "z": "blocks.{layer}.attn.hook_z",  # per head: [batch, pos, head, d_head]
    # the attention output before a post-attention norm (Gemma 2/3 only; see
    # tslens.engine.architecture.post_attention_norms): what that norm normalises
    "attn_pre_norm": "blocks.{layer}.ln1_post.hook_in",
    # attention probabilities: [batch, head, query pos, key pos] (heads BEFORE positions)
    "pattern": "blocks.{layer}.attn.hook_pattern",
}
HEADS_FIRST = {"pattern"}  # kinds whose activation puts the head axis before the positions


def hook_name(kind: str, layer: int) -> str:
    """``hook_name("resid_post", 3)`` -> ``"blocks.3.hook_resid_post"``."""
    if kind not in HOOK_KINDS:
        raise TslensError(f"unknown hook kind {kind!r}; use one of {', '.join(HOOK_KINDS)}")
    return HOOK_KINDS[kind].format(layer=layer)


def check_layers(model, layers) -> list[int]:
    """The layers as a list of ints, each checked against the model's depth."""
    n = model.cfg.n_layers
    out = list(range(n)) if layers is None else [int(layer) for layer in layers]
    bad = [layer for layer in out if not 0 <= layer < n]
    if bad:
        raise TslensError(f"layer {bad[0]} is out of range; this model has layers 0..{n - 1}")
    return out
