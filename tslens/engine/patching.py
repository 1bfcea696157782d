"""Exact answer probabilities under final-position patches, for many patch variants at once.

A variant is ``(layer, vector)``: the residual (or another hook kind) of the prompt's final
token at ``layer`` is replaced by (or added to) the vector. Such a patch changes nothing before
the final token, so the keys/values of the prompt's prefix are the same for every variant.
:func:`patched_answer_logprobs` therefore runs each prefix once, repeats its KV cache for all
variants, and continues with one batched forward of ``[final token, packed answers]`` per
variant row (answers packed as in :func:`tslens.engine.packing.pack_answers`).
``patched_answer_logprobs_naive`` (private, in ``tslens/_reference.py``) is the plain
reference: one full forward with a hook per prompt, variant and answer; the two agree to
float32 precision (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tslens.engine.architecture import attention_masks
from tslens.engine.batching import batched
from tslens.engine.continuation import cached_forward, fork, run_prefix
from tslens.engine.lens import as_lens
from tslens.engine.packing import pack_answers, read_packed
from tslens.engine.tokens import answer_token_ids
from tslens.hooks.capture import capturing
from tslens.hooks.entry import staggered_entry
from tslens.hooks.patch import patching


def patch_token_ids(model, prompts, answers):
    """Prompt and answer token ids of a patched run; a prompt needs two tokens (its final one
    is patched, the rest is the shared prefix)."""
    lens = as_lens(model)
    prompt_ids = lens.token_ids(prompts)
    if min(len(p) for p in prompt_ids) < 2:
        raise ValueError("a patched prompt needs at least two tokens (BOS counts)")
    return prompt_ids, answer_token_ids(lens, prompts, answers, prompt_ids)


@torch.inference_mode()
def patched_answer_logprobs(
    model,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
    layers: Int[Tensor, " variant"] | Int[Tensor, "variant m"],
    vectors: Float[Tensor, "variant d"]
    | Float[Tensor, "variant m d"]
    | Float[Tensor, "prompt variant d"]
    | Float[Tensor, "prompt variant m d"],
    mode: str = "replace",
    kind: str = "resid_post",
    batch_size: int | None = None,
    progress: bool = False,
    heads: Int[Tensor, " variant"] | None = None,
    per_prompt: bool = False,
) -> Float[Tensor, "prompt variant k"]:
    """log P(answer | prompt, patch) for every prompt, variant and answer (float64, CPU).

    Args:
        prompts: texts ending right before their answers; the patch hits their final token.
        answers: per prompt, the same number K of candidate answers.
        layers, vectors: the variants; layer -1 means no patch (a clean reference row); a
            2-D ``layers[variant, j]`` with ``vectors[variant, j]`` patches several layers.
        mode, kind: as in :func:`tslens.hooks.patch.patching`.
        batch_size: variant rows per continuation forward (default: see
            :func:`_rows_per_forward`).
        heads: per variant, the attention head whose ``z`` the vector replaces (``kind="z"``,
            vectors ``[variant, d_head]``): per-head activation patching.
        per_prompt: ``vectors`` is ``[prompt, variant, ...]``, a patch per prompt and variant
            (e.g. each prompt's own clean activation).
    """
    lens = as_lens(model)
    prompt_ids, answer_ids = patch_token_ids(lens, prompts, answers)
    layers = torch.as_tensor(layers)
    if not per_prompt:
        vectors = vectors.expand(len(prompts), *vectors.shape)  # a view, no copy
    n_var, k = len(layers), len(answers[0])
    rows_per_forward = batch_size or _rows_per_forward(lens, answer_ids)
    out = torch.empty(len(prompts), n_var, k, dtype=torch.float64)

    def run(chunk: list[int]) -> dict[str, Tensor]:
        return {"logprobs": _patch_chunk(lens, prompt_ids, answer_ids, chunk, layers, vectors,
                                         mode, kind, heads, rows_per_forward)}  # fmt: skip

    batches = batched(
        lens, len(prompts), run, kind="patch", desc="patching", unit="row", per_item=n_var,
        key=lambda chunk: [[prompt_ids[i] for i in chunk], [answer_ids[i] for i in chunk],
                           layers, vectors[chunk], mode, kind, heads, rows_per_forward],
        batch_size=max(1, rows_per_forward // n_var), progress=progress,
    )  # fmt: skip
    for chunk, got in batches:
        out[chunk] = got["logprobs"].cpu()
    return out


def _rows_per_forward(model, answer_ids) -> int:
    """Default variant rows per continuation forward: as many as keep one forward's segment
    columns within 1024 (a forward's attention spans all its segments) and its read logits
    within 512 MiB. Each forward streams the whole unembedding matrix for a handful of rows
    per variant, so on CPU big forwards pay: measured on Gemma-3-270M (262k vocabulary), 512
    rows per forward run a layer sweep 3x faster than 32; on GPT-2 small 256 beat 32 and 1024."""
    columns = 1 + max(sum(len(a) - 1 for a in ans) for ans in answer_ids)
    reads = max(len(a) for ans in answer_ids for a in ans)
    budget = min(1024 // columns, 2**29 // (4 * model.cfg.d_vocab * reads))
    return max(16 * as_lens(model).batch_size(), budget)


def _patch_chunk(
    model, prompt_ids, answer_ids, chunk, layers, vectors, mode, kind, heads, rows_per_forward
) -> Float[Tensor, "prompt variant k"]:
    """Every variant of :func:`patched_answer_logprobs` on the prompts ``chunk``."""
    prefix = as_lens(model).left_pad([prompt_ids[i][:-1] for i in chunk])
    _, cache = run_prefix(model, prefix)
    layout = SegmentLayout(model, prefix, [prompt_ids[i][-1] for i in chunk],
                       [answer_ids[i] for i in chunk])  # fmt: skip
    residuals = layout.residuals(model, cache)
    # variants in order of the layer they enter at, so one forward's variants skip the same
    # blocks and each block runs a prefix of the columns (see tslens.hooks.entry)
    entries = entry_layers(layers, model.cfg.n_layers)
    order = torch.argsort(entries, stable=True)
    out = torch.empty(len(chunk), len(layers), len(answer_ids[chunk[0]]), dtype=torch.float64)
    variants_per_forward = max(1, rows_per_forward // len(chunk))
    for v0 in range(0, len(layers), variants_per_forward):
        variants = order[v0 : v0 + variants_per_forward]
        out[:, variants] = layout.run(
            model, cache, residuals, layers[variants], entries[variants],
            vectors[chunk][:, variants], mode, kind,
            None if heads is None else torch.as_tensor(heads)[variants],
        )  # fmt: skip
    return out


def entry_layers(layers: Int[Tensor, " variant"] | Int[Tensor, "variant m"], n_layers: int):
    """The block each variant must start at: its lowest patched layer, or ``n_layers`` for an
    unpatched variant (layer -1), whose final residual is the clean one."""
    per_variant = layers.reshape(len(layers), -1)  # multi-layer variants: one row each
    return per_variant.masked_fill(per_variant < 0, n_layers).min(-1).values


class SegmentLayout:
    """The continuation of a chunk of prompts with many variants in one forward.

    Row ``p`` holds, behind the cached prefix of prompt ``p``, one segment per variant: the
    final token, then the answers packed as in :func:`pack_answers`. A block mask lets each
    segment see the prefix and itself only, and its positions restart after the prefix, so
    each segment is scored exactly as if it were alone; the patch of variant ``j`` hits the
    first column of segment ``j``. The prefix cache is used as it is, never repeated.

    Below its lowest patched layer a segment is the same unpatched computation as every other,
    so :meth:`residuals` computes that once and each segment enters the stack at its own layer
    (:func:`tslens.hooks.entry.staggered_entry`); only the answer-reading columns reach the
    unembedding.
    """

    def __init__(self, model, prefix, last_tokens, answer_ids) -> None:
        self.prefix, self.n_p = prefix, len(last_tokens)
        self.segment = pack_answers([[t] for t in last_tokens], answer_ids, as_lens(model).pad_id)
        self.s = self.segment.ids.shape[1]  # the final token, then the answers' tokens
        self.k = len(answer_ids[0])
        # the segment columns some answer token is read from, and each read's index among them
        self.read_offsets, self.read_index = torch.unique(self.segment.reads[:, 1],
                                                          return_inverse=True)  # fmt: skip

    def inputs(self, model, n_v: int):
        """``ids, masks, positions`` for ``n_v`` segments per row, on the model's device (the
        masks as :func:`tslens.engine.architecture.attention_masks` gives them)."""
        segment, prefix, s = self.segment, self.prefix, self.s
        ids = segment.ids.repeat(1, n_v)
        positions = segment.positions.repeat(1, n_v) + prefix.lengths.cpu()[:, None]
        blocks = torch.block_diag(*[torch.ones(s, s)] * n_v).bool()
        own = segment.mask[:, 0].repeat(1, n_v, n_v)  # [p, v*s, v*s]; only diagonal blocks
        own = own.masked_fill(~blocks, torch.finfo(own.dtype).min)
        see_prefix = torch.zeros(self.n_p, n_v * s, prefix.ids.shape[1])
        see_prefix.masked_fill_(prefix.mask.cpu()[:, None, :] == 0, torch.finfo().min)
        device = model.cfg.device
        mask = torch.cat([see_prefix, own], dim=-1)[:, None].to(device)
        keys = torch.cat([prefix.positions.cpu(), positions], dim=-1)
        masks = attention_masks(model, mask, positions, keys)
        return ids.to(device), masks, positions.to(device)

    def residuals(self, model, cache) -> Float[Tensor, "prompt layer_and_final s d_model"]:
        """The unpatched segment's residual entering every block, and after the last one."""
        ids, masks, positions = self.inputs(model, 1)
        last = model.cfg.n_layers - 1
        with (
            capturing(model, ("resid_pre",), range(last + 1), range(-self.s, 0)) as pre,
            capturing(model, ("resid_post",), [last], range(-self.s, 0)) as post,
        ):
            cached_forward(model, ids, fork(cache), masks, positions, logits_to_keep=1)
        return torch.stack([*pre["resid_pre"], post["resid_post"][0]], dim=1)

    def run(self, model, cache, residuals, layers, entries, vectors, mode, kind, heads):
        """log P of every answer under every variant: ``[prompt, variant, k]`` (CPU). The
        variants come in order of their ``entries`` (see :func:`entry_layers`)."""
        n_p, n_v, s, n_layers = self.n_p, len(layers), self.s, model.cfg.n_layers
        ids, masks, positions = self.inputs(model, n_v)
        entry_rows = torch.arange(n_p).repeat_interleave(n_v)  # patch (p, j) -> batch row p
        entry_columns = (torch.arange(n_v) * s).repeat(n_p)
        row_layers = layers.repeat(n_p, *[1] * (layers.ndim - 1))
        row_heads = None if heads is None else heads.repeat(n_p)
        active = [s * int((entries <= layer).sum()) for layer in range(n_layers + 1)]

        def entering(layer: int, n_columns: int) -> Tensor:
            return residuals[:, layer].repeat(1, n_columns // s, 1)

        with (
            patching(model, row_layers, vectors.flatten(0, 1), entry_columns, mode, kind,
                     row_heads, rows=entry_rows),
            staggered_entry(list(model.blocks), active, entering, self.read_columns(n_v)),
        ):  # fmt: skip
            logits = cached_forward(model, ids, fork(cache), masks, positions,
                                    growth=active[:n_layers])  # fmt: skip
        sums, _, _ = read_packed(
            logits.view(n_p * n_v, len(self.read_offsets), -1), self.variant_reads(n_v),
            n_p * n_v, self.k, greedy=False,
        )  # fmt: skip
        return sums.view(n_p, n_v, -1).cpu()

    def read_columns(self, n_v: int) -> Int[Tensor, " col"]:
        """The columns of ``n_v`` segments that some answer token is read from."""
        return (torch.arange(n_v)[:, None] * self.s + self.read_offsets).flatten()

    def variant_reads(self, n_v: int) -> Int[Tensor, "read 4"]:
        """:func:`read_packed`'s reads for logits at :meth:`read_columns` viewed as
        ``[prompt * n_v, read column, vocab]``: segment ``j`` of prompt ``p`` is row
        ``p * n_v + j``."""
        row, _, tok, slot = self.segment.reads.unbind(-1)
        return torch.stack(
            [(row * n_v)[:, None] + torch.arange(n_v), self.read_index[:, None].expand(-1, n_v),
             tok[:, None].expand(-1, n_v), slot[:, None].expand(-1, n_v)], dim=-1,
        ).flatten(0, 1)  # fmt: skip
