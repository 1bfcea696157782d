"""The compute floors the fast paths are measured against: for each, the least dense computation
that gives the same numbers, in plain PyTorch on a plain Hugging Face copy of the same weights
(no TransformerBridge, no tslens hooks), run in the same process as the fast path.

- scoring: one forward of the prompts with every answer's tokens packed behind them (each
  prompt once, each answer token once), logits only where an answer token is read;
- residual sweep (replace at ``resid_post`` of layer ``l``): each query's prefix once, its
  final token and answer tokens once unpatched, then per layer the variants' rows from block
  ``l + 1`` on (the patched vector *is* their residual there) and the unembedding + log-softmax
  at the answer-reading positions only;
- head patch / head ablation (a head's ``z`` at the final position): the prefix once, the
  unpatched rows once, then per layer the variants' rows from block ``l`` on, the head's slice
  of the output projection's input overwritten.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from tslens.engine.architecture import attention_masks
from tslens.engine.batching import default_batch_size
from tslens.engine.continuation import left_pad
from tslens.engine.lens import as_lens
from tslens.engine.packing import pack_answers, read_packed
from tslens.engine.patching import SegmentLayout
from tslens.engine.scoring import prompt_token_ids
from tslens.engine.tokens import answer_token_ids
from tslens.hooks.entry import staggered_entry


def plain_model(spec: str) -> nn.Module:
    """A plain Hugging Face copy of the model tslens loads as ``spec`` (float32, CPU)."""
    from transformers import AutoModelForCausalLM

    from tslens.sources.loader import resolve_model

    target, _ = resolve_model(spec)
    return AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()


def _decoder(plain: nn.Module) -> nn.Module:
    """The model without its unembedding (returns the final-normed residual)."""
    return plain.transformer if hasattr(plain, "transformer") else plain.get_decoder()


def decoder_layers(plain: nn.Module) -> list[nn.Module]:
    decoder = _decoder(plain)
    return list(getattr(decoder, "layers", None) or decoder.h)


def output_projection(layer: nn.Module) -> nn.Module:
    """The attention's output projection, whose input is the heads' ``z`` side by side."""
    attention = getattr(layer, "self_attn", None) or layer.attn
    return getattr(attention, "o_proj", None) or attention.c_proj


@torch.inference_mode()
def scoring_floor(plain: nn.Module, model, texts, answers) -> Tensor:
    """log P of every answer (float64 [prompt, k]); same packed batches as tslens's scorer."""
    prompt_ids = prompt_token_ids(model, texts)
    answer_ids = answer_token_ids(model, texts, answers, prompt_ids)
    size = default_batch_size(model, max(len(p) for p in prompt_ids))
    order = sorted(range(len(texts)), key=lambda i: len(prompt_ids[i]))
    out = torch.empty(len(texts), len(answers[0]), dtype=torch.float64)
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        packed = pack_answers([prompt_ids[i] for i in chunk], [answer_ids[i] for i in chunk],
                              as_lens(model).pad_id)  # fmt: skip
        masks = attention_masks(model, packed.mask, packed.positions, packed.positions)
        logits = plain(packed.ids, attention_mask=masks, position_ids=packed.positions,
                       logits_to_keep=packed.keep).logits  # fmt: skip
        out[chunk] = read_packed(logits, packed.reads, len(chunk), out.shape[1], greedy=False)[0]
    return out


def _unpatched(plain, layout, model, cache) -> Tensor:
    """The segment's residual entering every layer and after the last: [1, L + 1, s, d]."""
    layers = decoder_layers(plain)
    ids, masks, positions = layout.inputs(model, 1)
    entering: list[Tensor] = []
    hooks = [layer.register_forward_pre_hook(
        lambda _, args, kwargs: entering.append((args or (kwargs["hidden_states"],))[0]),
        with_kwargs=True) for layer in layers]  # fmt: skip
    hooks.append(layers[-1].register_forward_hook(
        lambda _, args, output: entering.append(output[0] if isinstance(output, tuple)
                                                else output)))  # fmt: skip
    try:
        plain(ids, attention_mask=masks, position_ids=positions,
              past_key_values=copy.deepcopy(cache), logits_to_keep=1)  # fmt: skip
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(entering, dim=1)


def _unembed(plain: nn.Module, hidden: Tensor) -> Tensor:
    logits = plain.get_output_embeddings()(hidden)
    cap = getattr(plain.config, "final_logit_softcapping", None)
    return logits if cap is None else torch.tanh(logits / cap) * cap


def _group_forward(plain, model, layout, cache, entry: int, entering: Tensor, head_patch=None):
    """The final-normed residual at the answer-reading columns for ``n`` variants entering at
    block ``entry`` with the residuals ``entering`` ([1, n * s, d]); ``head_patch = (heads
    [n], z [n, d_head])`` is written into the output projection's input of block ``entry``.
    Returns [n * reads, d]."""
    layers = decoder_layers(plain)
    s = layout.s
    n = entering.shape[1] // s
    seg_ids, masks, positions = layout.inputs(model, n)
    active = [0] * entry + [n * s] * (len(layers) + 1 - entry)
    hook = None
    if head_patch is not None:
        heads, z = head_patch

        def write(_, args):
            x = args[0].clone()
            x.view(*x.shape[:2], -1, z.shape[-1])[0, torch.arange(n) * s, heads] = z
            return (x,)

        hook = output_projection(layers[entry]).register_forward_pre_hook(write)
    try:
        with staggered_entry(layers, active, lambda *_: entering, layout.read_columns(n)):
            return _decoder(plain)(
                seg_ids,
                attention_mask=masks,
                position_ids=positions,
                past_key_values=copy.deepcopy(cache),
            ).last_hidden_state[0]
    finally:
        if hook is not None:
            hook.remove()


def _read_all(plain, layout, hidden: Tensor, n: int) -> Tensor:
    """One unembedding of every variant's read rows ([n * reads, d]; the weight matrix is read
    once, not once per group) and their answers' log P: [n, k]."""
    logits = _unembed(plain, hidden).view(n, len(layout.read_offsets), -1)
    return read_packed(logits, layout.variant_reads(n), n, layout.k, greedy=False)[0]


@torch.inference_mode()
def _sweep_floor(plain, model, texts, answers, entries: Tensor, enter, head_patch=None):
    """Per prompt: the prefix once, the unpatched rows once, then every group of variants
    with the same entry block in one forward from that block. ``enter(residual [1, s, d],
    variants, prompt) -> [1, n * s, d]`` builds a group's entering residuals;
    ``head_patch(variants, prompt) -> (heads, z)`` the head writes, if any."""
    from transformers import DynamicCache

    n_layers = len(decoder_layers(plain))
    prompt_ids = prompt_token_ids(model, texts)
    answer_ids = answer_token_ids(model, texts, answers, prompt_ids)
    out = torch.empty(len(texts), len(entries), len(answers[0]), dtype=torch.float64)
    for p, (ids, ans) in enumerate(zip(prompt_ids, answer_ids, strict=True)):
        prefix = left_pad([ids[:-1]], as_lens(model).pad_id, "cpu")
        cache = plain(prefix.ids, attention_mask=prefix.mask, position_ids=prefix.positions,
                      past_key_values=DynamicCache(), logits_to_keep=1).past_key_values  # fmt: skip
        layout = SegmentLayout(model, prefix, [ids[-1]], [ans])
        residuals = _unpatched(plain, layout, model, cache)
        hidden, order = [], []
        for entry in entries.unique().tolist():
            variants = (entries == entry).nonzero()[:, 0]
            patch = head_patch(variants, p) if head_patch and entry < n_layers else None
            entering = enter(residuals[:, entry], variants, p)
            hidden.append(_group_forward(plain, model, layout, cache, entry, entering, patch))
            order.append(variants)
        out[p, torch.cat(order)] = _read_all(plain, layout, torch.cat(hidden), len(entries))
    return out


def residual_sweep_floor(plain, model, texts, answers, layers: Tensor, vectors: Tensor):
    """Floor of :func:`tslens.engine.patching.patched_answer_logprobs` for replace-mode
    ``resid_post`` variants ``(layers[v], vectors[v])``: [prompt, variant, k] float64."""
    entries = layers + 1  # the patched vector is the final token's residual entering l + 1

    def enter(residual, variants, p):
        rows = residual.repeat(1, len(variants), 1)
        rows[0, torch.arange(len(variants)) * residual.shape[1]] = vectors[variants].to(rows)
        return rows

    return _sweep_floor(plain, model, texts, answers, entries, enter)


def head_patch_floor(plain, model, texts, answers, layers, heads, vectors: Tensor):
    """Floor of per-head ``z`` patching at the final position: variant ``v`` writes
    ``vectors[prompt, v]`` (``[prompt, variant, d_head]``) into head ``heads[v]`` of layer
    ``layers[v]``; each layer's variants are segments of one forward from that layer."""

    def enter(residual, variants, p):
        return residual.repeat(1, len(variants), 1)

    def head_patch(variants, p):
        return heads[variants], vectors[p, variants]

    entries = layers.masked_fill(layers < 0, len(decoder_layers(plain)))  # -1: the clean row
    return _sweep_floor(plain, model, texts, answers, entries, enter, head_patch)
