"""Long runs that survive interruption: finished batches are saved as they go, and the same
command run again picks them up.

The CLI wraps each long command in :func:`checkpointing` (its ``--out`` directory). Inside it,
the batched loops of the library (scoring, patch sweeps, head patching, beam search, activation
capture, ablation) compute each batch through :func:`cached`, which saves the batch's result
under ``OUT/.tslens-partial/`` keyed by a hash of everything the batch depends on (the model,
the token ids, the patch vectors, the options). A re-run computes the same keys, so it loads
every finished batch and computes only the rest: its results are those of an uninterrupted
run. Outside :func:`checkpointing` (notebooks, library calls) :func:`cached` just computes.

Also here: a lock file, so two runs cannot write one output directory at once, and a record of
the run's arguments, so a partial run is never mixed with a run of other arguments.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout
from torch import Tensor

from tslens.errors import TslensError, differing
from tslens.io import atomic_path, json_form

PARTIAL = ".tslens-partial"
LOCK = ".tslens-lock"
HOLDER = ".tslens-lock.json"


@dataclass
class Checkpoints:
    """The partial state of one run in ``out``."""

    out: Path
    saved: int = 0  # batches saved by this process
    loaded: int = 0  # batches found from an earlier, interrupted run

    @property
    def dir(self) -> Path:
        return self.out / PARTIAL


_ACTIVE: contextvars.ContextVar[Checkpoints | None] = contextvars.ContextVar(
    "tslens_checkpoints", default=None
)


def active() -> Checkpoints | None:
    """The checkpoints of the run in progress, if any."""
    return _ACTIVE.get()


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``out``'s run lock (an OS file lock through ``filelock``: released by the kernel
    when the process dies, so a killed run never leaves a stale lock) for the block."""
    lock = FileLock(out / LOCK)
    holder = out / HOLDER  # who holds it, for the message a second run prints
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            who = json.loads(holder.read_text())
        except (OSError, ValueError):  # not written yet, or already gone
            who = {}
        raise TslensError(
            f"another tslens run (pid {who.get('pid', '?')} on {who.get('host', '?')}) is "
            f"writing to {out}; wait for it, or use another --out"
        ) from None
    try:
        holder.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        yield
    finally:
        holder.unlink(missing_ok=True)
        # removed while still held, so the directory is left as found (only a run that opens
        # the old file in the microseconds between this unlink and the release could lock it)
        (out / LOCK).unlink(missing_ok=True)
        lock.release()


@contextmanager
def checkpointing(out: str | os.PathLike[str], arguments: dict[str, Any]) -> Iterator[Checkpoints]:
    """Lock ``out``, check or record ``arguments``, and make :func:`cached` save and reuse
    batch results there. On success the partial state is deleted; on an error or an
    interruption it stays for the next run of the same command."""
    state = Checkpoints(Path(out))
    created = not state.out.exists()
    found = state.dir.exists()  # another run's partial state: refused or resumed, never dropped
    state.out.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(state.out):
            yield from _run(state, arguments)
    finally:
        batches = [p for p in state.dir.glob("*") if p.name != "run.json"]
        if not batches and not found:  # nothing to resume: leave no state to refuse a re-run
            shutil.rmtree(state.dir, ignore_errors=True)
        if (
            created
            and state.saved == 0
            and not any(p.name not in (PARTIAL, LOCK, HOLDER) for p in state.out.iterdir())
        ):  # a run that failed before saving anything leaves no directory behind
            shutil.rmtree(state.out, ignore_errors=True)


def _run(state: Checkpoints, arguments: dict[str, Any]) -> Iterator[Checkpoints]:
    """Check or record the arguments, then make :func:`cached` use ``state``."""
    record = state.dir / "run.json"
    wanted = json_form(arguments)
    if record.exists():
        try:
            saved = json.loads(record.read_text())
        except (OSError, ValueError):
            saved = None
        if saved != wanted:
            changed = differing(saved, wanted) if isinstance(saved, dict) else ""
            raise TslensError(
                f"{state.out} holds a partial run with other arguments ("
                f"{changed or 'unreadable record'} differ); re-run that command to "
                f"finish it, use another --out, or delete {state.dir}"
            )
    else:
        state.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(record) as tmp:
            tmp.write_text(json.dumps(wanted, sort_keys=True, indent=1))
    token = _ACTIVE.set(state)
    try:
        yield state
    finally:
        _ACTIVE.reset(token)
    shutil.rmtree(state.dir, ignore_errors=True)  # only reached when the run succeeded


@contextmanager
def suspended() -> Iterator[None]:
    """Run the block with no active checkpoints: work that is not the command's own (the
    exactness checks a first run does) must not save batches into the command's ``--out``."""
    token = _ACTIVE.set(None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def model_key(model) -> list[Any]:
    """What identifies a model's computation: name, shape, dtype and a few of its weights."""
    cfg = model.cfg
    first = next(model.original_model.parameters()).detach().flatten()[:32].float().cpu()
    return [getattr(model, "tslens_name", ""), cfg.n_layers, cfg.d_model, cfg.n_heads,
            str(cfg.dtype), first]  # fmt: skip


def _digest(parts: Any, digest: Any) -> None:
    if isinstance(parts, Tensor):
        t = parts.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(parts, list | tuple) and parts and all(type(p) is int for p in parts):
        digest.update(b"I" + np.asarray(parts, dtype=np.int64).tobytes())  # token ids, fast
    elif isinstance(parts, list | tuple):
        digest.update(f"L{len(parts)}[".encode())
        for part in parts:
            _digest(part, digest)
        digest.update(b"]")
    else:
        digest.update(json.dumps(parts, sort_keys=True, default=str).encode())


def _has_foreign_hooks(model) -> bool:
    """Hooks someone else put on the model change what a batch computes without showing in
    its key, so batches run under them are never cached."""
    return any(hp._forward_hooks for hp in getattr(model, "hook_dict", {}).values())


def cached(kind: str, model, parts: Any, compute: Callable[[], Any]) -> Any:
    """``compute()``, saved under the active run's partial state and reused by a re-run.

    ``parts`` must hold everything the result depends on besides the model (token ids,
    vectors, options). ``compute`` returns a dict of tensors (saved as safetensors) or
    JSON-able data. Without :func:`checkpointing`, or with hooks active on the model, it
    simply computes."""
    state = _ACTIVE.get()
    if state is None or _has_foreign_hooks(model):
        return compute()
    digest = hashlib.sha256(kind.encode())
    _digest([model_key(model), parts], digest)
    stem = state.dir / f"{kind}-{digest.hexdigest()[:40]}"
    for suffix in (".safetensors", ".json"):
        file = stem.with_suffix(suffix)
        if file.exists():
            try:
                if suffix == ".json":
                    result = json.loads(file.read_text())
                else:
                    from safetensors.torch import load_file

                    result = load_file(file)
            except Exception:  # noqa: BLE001 - a damaged batch file is recomputed
                break
            state.loaded += 1
            return result
    result = compute()
    if isinstance(result, dict) and all(isinstance(v, Tensor) for v in result.values()):
        from safetensors.torch import save_file

        with atomic_path(stem.with_suffix(".safetensors")) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in result.items()}, tmp)
    else:
        with atomic_path(stem.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(result))
    state.saved += 1
    return result
