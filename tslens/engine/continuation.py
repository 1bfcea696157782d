"""The one cached-prefix primitive: run prompts once, then continue their KV cache, exactly.

Every fast path that reuses a prompt's computation goes through here: scoring answers behind
a cached prompt, the patch sweep's variant segments, demonstration-deletion rows, and beam /
branch / greedy decoding. Continuing a cache is where a library release can break us
silently, so it is done in one place and checked on every call:

- **The cache's name.** transformers < 5.24 takes the cache as ``past_key_values``; 5.24 renames
  it ``cache`` (the old name still works at the top level, with a deprecation warning) and
  hands it to each attention module as ``cache=``. TransformerLens 4.3's attention bridges read
  only ``past_key_values`` / ``layer_past``, so on 5.24 they never saw the cache: continuations
  silently attended to themselves alone. :func:`cache_names` reads both names from the
  installed model's own signatures, and while a cached forward runs, each attention bridge is
  handed the cache under the name it reads.
- **The check.** After every cached forward, each layer of the cache must hold exactly the
  tokens it held before plus the new ones; anything else raises :class:`CacheAPIError` naming
  the installed versions (and ``tslens doctor``), instead of returning wrong numbers.
- **Forks.** :func:`cached_forward` extends the cache it is given; a continuation that must
  leave the prompts' cache as it was runs on a :func:`fork`, which shares the cached tensors
  (a dynamic cache layer only ever replaces its tensors, ``torch.cat`` on update and indexing
  on row selection, never writes into them), so forking costs no copy of the keys and values.

The reference for all of it is a plain forward of the whole sequence (``tests/`` and
``tslens doctor`` compare against one on every architecture tslens ships).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from tslens.engine.architecture import attention_masks
from tslens.errors import TslensError

# The names a Hugging Face cache has gone by: the newest first.
KNOWN_CACHE_NAMES = ("cache", "past_key_values")


class CacheAPIError(TslensError):
    """The installed libraries pass the KV cache in a way tslens does not know."""


@dataclass
class PrefixBatch:
    """Left-padded prompts: ``ids``/``mask``/``positions`` are [batch, pos]; ``lengths`` [batch]."""

    ids: Int[Tensor, "batch pos"]
    mask: Int[Tensor, "batch pos"]
    positions: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]


def left_pad(seqs: Sequence[list[int]], pad_id: int, device: torch.device | str) -> PrefixBatch:
    """Pad token sequences on the left so that every prompt ends at the last position."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # real tokens at 0..len-1 whatever the padding
    lengths = mask.sum(-1)
    return PrefixBatch(ids.to(device), mask.to(device), positions.to(device), lengths.to(device))


def _versions() -> str:
    from importlib.metadata import version

    return f"transformers {version('transformers')}, transformer-lens {version('transformer-lens')}"


def _parameters(function) -> set[str]:
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


def _attention_bridges(model) -> list[torch.nn.Module]:
    """The model's TransformerLens attention bridges (found once per model: walking every
    module costs ~3 ms, on every cached forward of a beam search)."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    found = vars(model).get("_tslens_attention_bridges")
    if found is None:
        found = [m for m in model.modules() if isinstance(m, AttentionBridge)]
        object.__setattr__(model, "_tslens_attention_bridges", found)  # not a submodule
    return found


@lru_cache(maxsize=32)
def _names_for(model_class: type, attention_class: type | None) -> tuple[str, str]:
    def known(function, where: str) -> str:
        found = [n for n in KNOWN_CACHE_NAMES if n in _parameters(function)]
        if not found:
            raise CacheAPIError(
                f"{where} takes none of the KV-cache arguments tslens knows "
                f"({', '.join(KNOWN_CACHE_NAMES)}) with {_versions()}; install the tested "
                "versions (pip install -c constraints.txt ...) and run `tslens doctor`"
            )
        return found[0]

    top = known(model_class.forward, model_class.__name__)
    layer = top if attention_class is None else known(attention_class.forward,
                                                      attention_class.__name__)  # fmt: skip
    return top, layer


def cache_names(model) -> tuple[str, str]:
    """``(top, layer)``: the argument the Hugging Face model behind ``model`` takes its KV cache
    by, and the one its attention modules receive it by (``"cache"`` from transformers 5.24
    on, ``"past_key_values"`` before). Raises :class:`CacheAPIError` for anything else."""
    bridges = _attention_bridges(model)
    original = getattr(bridges[0], "original_component", None) if bridges else None
    return _names_for(type(model.original_model), None if original is None else type(original))


def _rename_for_bridge(module, args, kwargs):
    """Forward pre-hook: hand an attention bridge the cache under the name it reads."""
    if kwargs.get("cache") is not None and kwargs.get("past_key_values") is None:
        kwargs = {**kwargs, "past_key_values": kwargs["cache"]}
    return args, kwargs


@contextmanager
def _bridges_see_the_cache(model) -> Iterator[None]:
    """While active, every attention bridge finds the cache where TransformerLens looks."""
    _, layer = cache_names(model)
    handles = []
    if layer != "past_key_values":  # TransformerLens 4.3 reads past_key_values / layer_past
        handles = [
            bridge.register_forward_pre_hook(_rename_for_bridge, with_kwargs=True)
            for bridge in _attention_bridges(model)
        ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def new_cache():
    """An empty KV cache that keeps every position of every layer. Hugging Face's default
    for a model with sliding-window layers drops keys older than the window, which would not
    line up with tslens's own (position-based) masks; without a config every layer is a full
    layer that is never truncated."""
    from transformers import DynamicCache

    return DynamicCache()


def _lengths(cache, n_layers: int) -> list[int]:
    return [cache.get_seq_length(layer) for layer in range(n_layers)]


def fork(cache, rows: Int[Tensor, " row"] | None = None):
    """A cache that starts as ``cache`` (its rows ``rows``, repeats allowed) and can be
    continued without changing ``cache``; the tensors are shared, not copied."""
    tensors = {
        id(t): t for layer in getattr(cache, "layers", ()) for t in vars(layer).values()
        if isinstance(t, Tensor)
    }  # fmt: skip
    forked = copy.deepcopy(cache, memo=tensors)
    if rows is not None:
        forked.batch_select_indices(rows)
    return forked


def stack_caches(caches: Sequence) -> object:
    """One cache holding the rows of ``caches`` one after the other (all of the same length;
    the tensors are concatenated once, the caches themselves are left as they were)."""
    stacked = fork(caches[0])
    for index, layer in enumerate(getattr(stacked, "layers", ())):
        parts = [cache.layers[index] for cache in caches]
        layer.keys = torch.cat([part.keys for part in parts], dim=0)
        layer.values = torch.cat([part.values for part in parts], dim=0)
    rows = sum(cache.layers[0].keys.shape[0] for cache in caches) if caches[0].layers else 0
    if not caches[0].layers or stacked.layers[0].keys.shape[0] != rows:
        raise CacheAPIError(f"could not stack KV caches with {_versions()}")
    return stacked


def cached_forward(
    model,
    ids: Int[Tensor, "batch new"],
    cache,
    attention_mask: Tensor | dict[str, Tensor],
    position_ids: Int[Tensor, "batch new"],
    logits_to_keep: int = 0,
    growth: Sequence[int] | None = None,
) -> Float[Tensor, "batch kept vocab"]:
    """One forward of ``ids`` that reads and extends ``cache`` (in place), with the masks and
    positions given (active hooks apply). Raises :class:`CacheAPIError` unless each layer of
    the cache grew by ``growth[layer]`` tokens (default: all ``ids.shape[1]``; less where
    :func:`tslens.hooks.entry.staggered_entry` runs a layer on some columns only)."""
    n_layers = model.cfg.n_layers
    growth = [ids.shape[1]] * n_layers if growth is None else list(growth)
    before = _lengths(cache, n_layers)
    top, _ = cache_names(model)
    with _bridges_see_the_cache(model):
        logits = model(
            ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=logits_to_keep,
            use_cache=True,
            **{top: cache},
        )
    after = _lengths(cache, n_layers)
    if [a - b for a, b in zip(after, before, strict=True)] != growth:
        raise CacheAPIError(
            f"the KV cache was not extended as expected (layer lengths {before} -> {after}, "
            f"expected +{growth}) with {_versions()}: cached continuations "
            "would be wrong; install the tested versions and run `tslens doctor`"
        )
    return logits


def run_prefix(model, batch: PrefixBatch) -> tuple[Float[Tensor, "batch vocab"], object]:
    """Run left-padded prompts once: their last position's log-probs (float32) and the KV
    cache that :func:`continue_prefix` and :func:`cached_forward` continue."""
    cache = new_cache()
    logits = cached_forward(model, batch.ids, cache, batch.mask, batch.positions, logits_to_keep=1)
    return torch.log_softmax(logits[:, -1].float(), dim=-1), cache


def run_prefix_packed(model, packed, width: int):
    """One forward of prompts with their answers packed behind them
    (:class:`tslens.engine.packing.PackedBatch`, prompts ``width`` wide), as the plain scorer runs
    them; returns the kept logits and the KV cache of the prompts alone (the answer columns
    dropped), ready for :func:`continue_prefix` with the matching :func:`left_pad` batch."""
    from tslens.engine.packing import packed_inputs

    cache = new_cache()
    ids, masks, positions = packed_inputs(model, packed)
    logits = cached_forward(model, ids, cache, masks, positions, logits_to_keep=packed.keep)
    cache.crop(width - packed.ids.shape[1])  # a negative count: drop the answer columns
    lengths = _lengths(cache, model.cfg.n_layers)
    if lengths != [width] * model.cfg.n_layers:
        raise CacheAPIError(f"cropping the KV cache to the prompts left {lengths}, not {width} "
                            f"tokens per layer, with {_versions()}")  # fmt: skip
    return logits, cache


def continue_prefix(
    model,
    cache,
    batch: PrefixBatch,
    rows: Int[Tensor, " row"],
    tokens: Int[Tensor, "row new"],
    offset: int = 0,
) -> Float[Tensor, "row new vocab"]:
    """Continue the cached prompts ``rows`` (repeats allowed) of ``batch`` with ``tokens``, each
    row seeing its whole prompt and its own continuation; log-probs (float32) out.

    ``cache`` must already be laid out row by row (``fork(prefix_cache, rows)``, or a cache
    this function extended before) and hold ``offset`` continuation tokens beyond the prompts;
    it is extended in place by ``tokens``.
    """
    new = tokens.shape[1]
    ones = torch.ones(len(rows), offset + new, dtype=torch.long, device=rows.device)
    mask = torch.cat([batch.mask[rows], ones], dim=1)
    positions = batch.lengths[rows, None] + offset + torch.arange(new, device=rows.device)
    logits = cached_forward(model, tokens, cache, mask, positions)
    return torch.log_softmax(logits.float(), dim=-1)


def continue_beams(
    model,
    cache,
    batch: PrefixBatch,
    prompts: Int[Tensor, " prompt"],
    tokens: Int[Tensor, "prompt beam"],
    sees: Bool[Tensor, "prompt beam cont"],
    step: int,
) -> Float[Tensor, "prompt beam vocab"]:
    """Feed every beam of the cached prompts ``prompts`` of ``batch`` its next token at once,
    the beams of a prompt side by side in that prompt's ONE row (tree attention): each beam's
    token sees its prompt, the earlier tokens of its own beam (``sees``: which of the ``cont``
    continuation columns already in the cache those are) and itself.

    The cache holds one row per prompt of ``prompts`` (no copy of the prompt per beam: a beam
    step reads and extends ``prompt × (pos + cont)`` keys, not ``prompt × beam × ...``) and
    ``cont = step × beam`` continuation columns; it is extended in place by ``beam`` columns.
    A step's tokens are at position ``len(prompt) + step``. Returns the logits
    (float32), not normalised: the beam search reads its candidates from them in place.
    """
    n, beams = tokens.shape
    device = tokens.device
    new = torch.eye(beams, dtype=torch.bool, device=device).expand(n, beams, beams)
    prompt = batch.mask[prompts].bool()[:, None, :].expand(n, beams, -1)
    allow = torch.cat([prompt, sees, new], dim=-1)[:, None]  # [prompt, 1, beam, key]
    mask = torch.zeros(allow.shape, device=device).masked_fill_(~allow, torch.finfo().min)
    start = batch.lengths[prompts, None]
    queries = (start + step).expand(n, beams)
    steps = torch.arange(sees.shape[-1] + beams, device=device) // beams  # column -> its step
    keys = torch.cat([batch.positions[prompts], start + steps], dim=-1)
    masks = attention_masks(model, mask, queries, keys)
    return cached_forward(model, tokens, cache, masks, queries).float()
