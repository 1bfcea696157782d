"""``tslens doctor``: are tslens's fast paths exact with the libraries installed here?

:func:`diagnose` builds the tiny models of every shipped architecture
(:mod:`tslens.doctor.tiny`) and runs every check of :mod:`tslens.doctor.checks` on each, or
runs them on a named model. :func:`ensure_checked` is the gate every analysis passes first:
the quick subset, run once per set of library versions (the result is cached under
``$TSLENS_CACHE/doctor``), so that a library release that changes what tslens relies on stops
the first run with one line instead of producing wrong numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tslens.doctor.checks import Check, run_checks
from tslens.doctor.tiny import KINDS, write_tiny
from tslens.errors import TslensError

log = logging.getLogger(__name__)

LIBRARIES = ("torch", "transformers", "transformer-lens", "tokenizers", "accelerate")
# The gate's subset: the continuation primitive and two of its users on the architecture with
# the most conventions (sliding window, one KV head); seconds on 2 cores.
QUICK = {
    "gemma3": (
        "packed scoring",
        "cached continuation",
        "deletion rows",
        "beam search",
        "tasks solved",
    )
}


def versions() -> dict[str, str]:
    """The installed version of each library tslens's exactness depends on, and Python's."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _load_tiny(kind: str, root: Path, device: str | None, dtype: str):
    from tslens.engine.lens import as_lens
    from tslens.sources.loader import load_model

    bridge = load_model(str(write_tiny(kind, root / kind)), device=device, dtype=dtype).bridge
    bridge.tslens_name = f"tiny-{kind}"
    return as_lens(bridge)  # read again: the name is part of the model's identity


def diagnose(
    model_name: str | None = None,
    device: str | None = None,
    dtype: str = "float32",
    n_prompts: int = 3,
    plan: dict[str, tuple[str, ...] | None] | None = None,
    on_check=None,
) -> list[Check]:
    """Run the exactness checks: on ``model_name`` if given, else on a tiny model of every
    architecture (``plan`` maps tiny-model kinds to the checks to run, ``None`` = all).
    ``on_check(check)`` is called as each check finishes (for printing as they come)."""
    results: list[Check] = []

    def run(model, name, paths):
        for check in run_checks(model, name, n_prompts, paths):
            results.append(check)
            if on_check is not None:
                on_check(check)

    if model_name is not None:
        from tslens.sources.loader import load_model

        run(load_model(model_name, device=device, dtype=dtype), model_name, None)
        return results
    with tempfile.TemporaryDirectory(prefix="tslens-doctor-") as tmp:
        for kind, paths in (plan or dict.fromkeys(KINDS)).items():
            run(_load_tiny(kind, Path(tmp), device, dtype), f"tiny-{kind}", paths)
    return results


def _record(device: str | None) -> Path:
    from tslens.io import cache_dir

    key = json.dumps({**versions(), "device": device or "auto"}, sort_keys=True)
    return cache_dir() / "doctor" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def ensure_checked(device: str | None = None) -> None:
    """Run the quick checks once for the installed library versions (a cached pass returns at
    once); raise :class:`TslensError` naming the first failing fast path if any fails."""
    from tslens.io import write_json_atomic

    record = _record(device)
    if record.exists():
        return
    from tslens.engine.resume import suspended

    log.info(
        "first run with these library versions: checking the fast paths against their plain "
        "references (once, a few seconds; tslens doctor runs them all)"
    )
    with suspended():  # the checks' batches are not the command's: keep them out of --out
        checks = diagnose(device=device, plan=QUICK)
    failed = [c for c in checks if not c.ok]
    if failed:
        first = failed[0]
        found = first.error or f"max |Δ log p| {first.max_delta:.1e}"
        names = ", ".join(f"{k} {v}" for k, v in versions().items() if k != "python")
        raise TslensError(
            f"the {first.path} fast path disagrees with its plain reference on {first.model} "
            f"({found}) with {names}: results would be wrong; run `tslens doctor` for every "
            "check, and install the tested versions (pip install -c constraints.txt ...)"
        )
    write_json_atomic(record, {"versions": versions(), "checks": [c.path for c in checks]})
    log.info("all %d checks agree with their references", len(checks))
