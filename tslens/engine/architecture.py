"""Facts that differ between model architectures, kept in one place for every analysis.

- **Sliding-window attention** (Gemma 2/3, Mistral, some Qwen2 layers): a layer of type
  ``"sliding_attention"`` lets a query see only the ``sliding_window`` most recent positions.
  tslens builds its own block attention masks (answers packed behind prompts, variants in
  segments), and a 4-D mask handed to Hugging Face replaces the masks it would build per layer
  type; so :func:`attention_masks` returns one mask per layer type, the sliding one restricted
  by *position* distance (:func:`tslens.engine.continuation.new_cache` keeps every position,
  where HF's default cache drops keys older than the window).
- **BOS**: whether a BOS token starts every prompt is ``model.cfg.default_prepend_bos``;
  :func:`tslens.sources.loader.load_model` sets it from the tokenizer's own convention for converted
  pretrained models (see :func:`tslens.sources.gguf.tokenizer_adds_bos`).
- **Norms**: an RMSNorm's gain is ``weight`` in Llama but ``1 + weight`` in Gemma;
  :func:`rms_gain` measures it from the module itself, whatever the convention. Gemma 2/3 also
  wrap each attention output in its own RMSNorm before the residual add
  (:func:`post_attention_norms`), so a head's share of the residual is its ``z @ W_O`` through
  that norm with the scale frozen at the clean run (:mod:`tslens.analyses.head.logit_attribution`).
- **Grouped-query attention** needs nothing here: TransformerLens's ``hook_z`` is per query
  head, so per-head patching and ablation see ``n_heads`` heads whatever ``n_key_value_heads``.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

SLIDING = "sliding_attention"
FULL = "full_attention"


def hf_config(model):
    """The Hugging Face config behind a bridge (its text config for multimodal models)."""
    config = getattr(getattr(model, "original_model", None), "config", None)
    return getattr(config, "text_config", None) or config


def sliding_window(model) -> int | None:
    """The window of the model's sliding-attention layers, or None if it has none."""
    config = hf_config(model)
    layer_types = getattr(config, "layer_types", None) or ()
    window = getattr(config, "sliding_window", None)
    return int(window) if window and SLIDING in layer_types else None


def attention_masks(
    model,
    mask: Float[Tensor, "batch 1 query key"],
    query_positions: Int[Tensor, "batch query"],
    key_positions: Int[Tensor, "batch key"],
) -> Tensor | dict[str, Tensor]:
    """The additive mask as the model's layers need it: ``mask`` itself, or for a model with
    sliding-window layers ``{"full_attention": mask, "sliding_attention": mask + window}``
    where the window hides keys ``window`` or more positions before the query."""
    window = sliding_window(model)
    if window is None:
        return mask
    query = query_positions.to(mask.device)[:, None, :, None]
    key = key_positions.to(mask.device)[:, None, None, :]
    too_far = key <= query - window
    return {FULL: mask, SLIDING: mask.masked_fill(too_far, torch.finfo(mask.dtype).min)}


def _original(module):
    return getattr(module, "original_component", module)


def norm_eps(module) -> float:
    """The epsilon of a LayerNorm / RMSNorm module, whatever the attribute is called."""
    module = _original(module)
    for name in ("eps", "variance_epsilon", "epsilon"):
        value = getattr(module, name, None)
        if value is not None:
            return float(value)
    return 1e-5


@torch.no_grad()
def rms_gain(module) -> Float[Tensor, " d_model"]:
    """The elementwise gain ``g`` of an RMSNorm (``norm(x) = x / rms(x) * g``), measured by
    running it on a vector of ones: ``weight`` for Llama, ``1 + weight`` for Gemma (float64)."""
    module = _original(module)
    weight = module.weight
    ones = torch.ones(1, weight.shape[-1], dtype=weight.dtype, device=weight.device)
    return module(ones)[0].double() * (1.0 + norm_eps(module)) ** 0.5


def post_attention_norms(model) -> list | None:
    """Each block's norm between the attention output and the residual add (Gemma 2/3's
    ``post_attention_layernorm``), or None for models that add the attention output as is."""
    blocks = getattr(model, "blocks", None)
    if not blocks or not hasattr(blocks[0], "ln1_post"):
        return None
    return [block.ln1_post for block in blocks]
