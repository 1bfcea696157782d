"""Character-level vocabulary and small decoders (Llama or GPT-2) for the from-scratch study.

The tokenizer is a plain ``tokenizers`` WordLevel model that splits text into single
characters, saved as ``tokenizer.json`` so that ``AutoTokenizer`` and TransformerLens load it
with no custom code. Sequences start with ``<bos>`` (training and every analysis agree).
"""

from __future__ import annotations

import os
import string
from pathlib import Path

CHARS = string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation + " \n"
SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]


def char_tokenizer():
    """A fast tokenizer with one token per character of :data:`CHARS` plus special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + list(CHARS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # "." does not match "\n" in the Rust regex engine, so newlines are split first.
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
            pre_tokenizers.Split(Regex("."), behavior="isolated"),
        ]
    )
    core.decoder = decoders.Fuse()  # join characters back without spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )


ARCHITECTURES = ("llama", "gpt2")
POSITIONS = ("rotary", "none")


def check_architecture(architecture: str, positions: str = "rotary") -> None:
    """Raise ``ValueError`` (one line) unless :func:`build_char_model` can build this."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; use {' or '.join(ARCHITECTURES)}")
    if positions not in POSITIONS or (positions == "none" and architecture != "llama"):
        raise ValueError(
            f"positions {positions!r}: use rotary, or none with the llama architecture"
        )


def build_char_model(
    out_dir: str | os.PathLike[str] | None = None,
    n_layers: int = 3,
    d_model: int = 96,
    n_heads: int = 4,
    n_ctx: int = 1024,
    seed: int = 0,
    architecture: str = "llama",
    positions: str = "rotary",
):
    """A randomly initialised character-level decoder: ``llama`` (rotary positions, the
    default: it learns these tasks; a GPT-2 of the same size stayed on the ln(10) plateau in
    probes) or ``gpt2`` (learned absolute positions). ``positions="none"`` gives the llama
    no positional encoding (NoPE: only the causal mask tells positions apart), saved in its
    ``config.json`` as linear rope scaling by 1e12, which leaves every rotation below 1e-8
    radians over the context, so every loader (HF, TransformerLens) rebuilds the same model.

    Returns the HF model and tokenizer; with ``out_dir`` also saves both there as a local HF
    checkpoint that :func:`tslens.sources.loader.load_model` boots.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    check_architecture(architecture, positions)
    tokenizer = char_tokenizer()
    special = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    if architecture == "llama":
        config = LlamaConfig(
            hidden_size=d_model,
            intermediate_size=4 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=n_heads,
            num_key_value_heads=n_heads,
            max_position_embeddings=n_ctx,
            **special,
        )
        if positions == "none":
            config.rope_parameters = {"rope_type": "linear", "factor": 1e12, "rope_theta": 10000.0}
    else:
        config = GPT2Config(
            n_embd=d_model,
            n_layer=n_layers,
            n_head=n_heads,
            n_positions=n_ctx,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **special,
        )
    torch.manual_seed(seed)
    model = (LlamaForCausalLM if architecture == "llama" else GPT2LMHeadModel)(config)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    return model, tokenizer
