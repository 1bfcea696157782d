"""The model context: a ``TransformerBridge`` with the conventions every analysis needs, read
from the model once.

A :class:`Lens` is what :func:`tslens.load_model` returns and what every engine function and
analysis takes. It answers the questions helpers used to re-ask the bridge at every call: how a
text is tokenized (BOS or not), which id pads a batch, how long the context is, whether some
layers see only a sliding window, whether attention outputs pass through their own norm before
the residual add (Gemma 2/3), how many key/value heads the query heads share, and how many
prompts fit one forward. Anything else is forwarded to the bridge, so ``lens.cfg``,
``lens.tokenizer``, ``lens.hooks(...)`` and ``lens(ids)`` work as on the bridge itself (the
way nnsight's ``LanguageModel`` wraps a model).

A bare bridge handed to a library function is wrapped by :func:`as_lens`, once per bridge.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from tslens.engine.architecture import post_attention_norms, sliding_window
from tslens.engine.batching import default_batch_size
from tslens.engine.continuation import PrefixBatch, left_pad
from tslens.engine.run import Run, run


@dataclass(frozen=True, eq=False)
class Lens:
    """A bridge and its frozen conventions (build one with :func:`as_lens`)."""

    bridge: Any = field(repr=False)
    name: str
    prepend_bos: bool  # whether a BOS token starts every prompt
    bos_id: int | None
    pad_id: int  # the tokenizer's pad token, else EOS, else 0
    n_ctx: int | None
    sliding_window: int | None  # the window of sliding-attention layers, None without any
    post_attention_norm: bool  # Gemma 2/3: each attention output has its own norm
    n_layers: int
    n_heads: int
    n_key_value_heads: int  # grouped-query attention when below n_heads
    d_model: int
    d_head: int
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def of(cls, bridge: Any) -> Lens:
        """Read the conventions from ``bridge`` (a ``TransformerBridge``)."""
        cfg, tok = bridge.cfg, bridge.tokenizer
        pad = next(i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None)
        return cls(
            bridge=bridge,
            name=getattr(bridge, "tslens_name", type(bridge).__name__),
            prepend_bos=bool(cfg.default_prepend_bos) and tok.bos_token_id is not None,
            bos_id=tok.bos_token_id,
            pad_id=int(pad),
            n_ctx=getattr(cfg, "n_ctx", None),
            sliding_window=sliding_window(bridge),
            post_attention_norm=post_attention_norms(bridge) is not None,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            n_key_value_heads=getattr(cfg, "n_key_value_heads", None) or cfg.n_heads,
            d_model=cfg.d_model,
            d_head=cfg.d_head,
            device=torch.device(cfg.device),
            dtype=getattr(cfg, "dtype", torch.float32),
        )

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text as tslens scores it: BOS (if the model uses one) + the text."""
        bos = [self.bos_id] if self.prepend_bos else []
        encoded = self.bridge.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [bos + ids for ids in encoded]

    def left_pad(self, rows: Sequence[list[int]]) -> PrefixBatch:
        """``rows`` left-padded into one batch on the model's device."""
        return left_pad(rows, self.pad_id, self.device)

    def batch_size(self, tokens_per_row: int = 512) -> int:
        """Prompts per forward when the caller does not say (:func:`default_batch_size`)."""
        return default_batch_size(self.bridge, tokens_per_row)

    def run(
        self,
        prompts: Sequence[str],
        answers: Sequence[Sequence[str]] | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> AbstractContextManager[Run]:
        """``with lens.run(prompts, answers) as r: r.patch(...); r.ablate(...);
        acts = r.capture(...); scores = r.score()``: interventions and reads declared in the
        block, computed in one pass at its end (:mod:`tslens.engine.run`)."""
        return run(self, prompts, answers, batch_size, progress)

    # Everything else is the bridge's: lens.cfg, lens.tokenizer, lens.blocks, lens.hooks(...).
    def __getattr__(self, name: str) -> Any:
        if name == "bridge":  # not yet set (copy/pickle protocols probe before __init__)
            raise AttributeError(name)
        return getattr(self.bridge, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.bridge(*args, **kwargs)


def as_lens(model: Any) -> Lens:
    """``model`` itself if it is a :class:`Lens`, else the Lens of the bridge, built once and
    kept on the bridge (so its conventions are read once, however many helpers ask)."""
    if isinstance(model, Lens):
        return model
    lens = model.__dict__.get("_tslens_lens")
    if lens is None or lens.prepend_bos != _bos_now(model) or lens.name != _name_now(model):
        lens = Lens.of(model)
        model.__dict__["_tslens_lens"] = lens  # nn.Module.__setattr__ would register nothing
    return lens


def _bos_now(bridge: Any) -> bool:
    return bool(bridge.cfg.default_prepend_bos) and bridge.tokenizer.bos_token_id is not None


def _name_now(bridge: Any) -> str:
    return getattr(bridge, "tslens_name", type(bridge).__name__)
