"""``tslens doctor`` and the exactness gate: they pass on the installed (tested) libraries and
fail, in one line naming the fast path, when the cached continuation is broken on purpose."""

from contextlib import contextmanager

import pytest
import torch

import tslens.engine.continuation as continuation
from tslens.cli import main
from tslens.doctor import QUICK, diagnose, ensure_checked
from tslens.errors import TslensError


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TSLENS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _during_cached_forwards(monkeypatch, pre_hook=None, hook=None):
    """Install ``pre_hook`` / ``hook`` on every attention bridge while (and only while) the
    continuation primitive runs a cached forward."""
    real = continuation._bridges_see_the_cache

    @contextmanager
    def patched(model):
        bridges = continuation._attention_bridges(model)
        handles = [b.register_forward_pre_hook(pre_hook, with_kwargs=True)
                   for b in bridges if pre_hook] + [b.register_forward_hook(hook)
                   for b in bridges if hook]  # fmt: skip
        try:
            with real(model):
                yield
        finally:
            for handle in handles:
                handle.remove()

    monkeypatch.setattr(continuation, "_bridges_see_the_cache", patched)


def _shifted(module, args, output):
    return (output[0] + 1, *output[1:]) if isinstance(output, tuple) else output + 1


def _corrupt_continuations(monkeypatch):
    """Cached forwards that compute something else than a plain forward would (the cache is
    still extended as expected): only the comparison with the reference can tell."""
    _during_cached_forwards(monkeypatch, hook=_shifted)


def _without_cache(module, args, kwargs):
    return args, {n: v for n, v in kwargs.items() if n not in ("cache", "past_key_values")}


def _ignore_the_cache(monkeypatch):
    """Attention that never sees the cache: what transformers 5.24 did to TransformerLens 4.3
    before tslens followed its rename (continuations attended to themselves alone)."""
    _during_cached_forwards(monkeypatch, pre_hook=_without_cache)


def test_every_check_passes_on_the_installed_libraries():
    checks = diagnose(plan={"gemma3": None, "gpt2": ("cached continuation", "beam search")})
    assert len(checks) == 9
    assert all(c.ok for c in checks), [c.line() for c in checks if not c.ok]
    assert all(0 <= c.max_delta <= 1e-4 for c in checks)


def test_a_continuation_without_the_prompt_fails_the_checks(monkeypatch):
    _corrupt_continuations(monkeypatch)
    checks = {c.path: c for c in diagnose(plan=QUICK)}
    assert not checks["cached continuation"].ok and checks["cached continuation"].max_delta > 1e-3
    assert not checks["deletion rows"].ok and not checks["beam search"].ok
    assert not checks["tasks solved"].ok
    assert checks["packed scoring"].ok  # packed scoring continues no cache


def test_a_cache_the_layers_never_see_is_refused_loudly(monkeypatch):
    _ignore_the_cache(monkeypatch)
    checks = {c.path: c for c in diagnose(plan=QUICK)}
    assert "CacheAPIError" in checks["cached continuation"].error
    assert "not extended" in checks["cached continuation"].error


def test_doctor_exit_status_and_lines(monkeypatch, capsys):
    assert main(["doctor", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "transformers" in out and "all 5 checks agree" in out
    _corrupt_continuations(monkeypatch)
    assert main(["doctor", "--quick"]) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert any("cached continuation" in line and "max |Δ log p|" in line for line in failed)


def test_the_gate_runs_once_per_versions_and_refuses_a_broken_path(fresh_cache, monkeypatch):
    _corrupt_continuations(monkeypatch)
    with pytest.raises(TslensError, match=r"cached continuation fast path .*tslens doctor"):
        ensure_checked("cpu")
    assert not (fresh_cache / "doctor").exists() or not any((fresh_cache / "doctor").iterdir())
    monkeypatch.undo()
    monkeypatch.setenv("TSLENS_CACHE", str(fresh_cache))
    ensure_checked("cpu")
    assert len(list((fresh_cache / "doctor").iterdir())) == 1
    _corrupt_continuations(monkeypatch)  # a recorded pass is not re-run
    ensure_checked("cpu")


def test_an_analysis_refuses_to_run_on_a_broken_environment(fresh_cache, monkeypatch, capsys):
    _corrupt_continuations(monkeypatch)
    status = main(["probs", "--tasks", "plus2,plus5", "--n-prompts", "2", "--no-solved",
                   "--out", str(fresh_cache.parent / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "tslens doctor" in err[0]
    assert not (fresh_cache.parent / "out" / "probs.json").exists()


def test_the_fork_shares_tensors_and_leaves_the_prompts_cache_alone(tiny_char):
    from tslens.engine.continuation import continue_prefix, fork, left_pad, run_prefix
    from tslens.engine.lens import as_lens
    from tslens.engine.scoring import prompt_token_ids

    ids = prompt_token_ids(tiny_char, ["1>2\n3>", "4>5\n6>7\n8>"])
    batch = left_pad(ids, as_lens(tiny_char).pad_id, "cpu")
    _, cache = run_prefix(tiny_char, batch)
    keys = cache.layers[0].keys.clone()
    rows = torch.tensor([1, 0, 1])
    forked = fork(cache, rows)
    continue_prefix(tiny_char, forked, batch, rows, torch.tensor([[5], [6], [7]]))
    assert torch.equal(cache.layers[0].keys, keys) and cache.get_seq_length() == batch.ids.shape[1]
    assert forked.get_seq_length() == batch.ids.shape[1] + 1


def test_the_first_run_checks_save_nothing_into_the_commands_out(fresh_cache, capsys):
    """The gate runs inside the command's checkpointing: its batches must not land in --out
    (a refused command would then leave a half-written directory behind)."""
    out = fresh_cache.parent / "out"
    status = main(
        [
            "ablate",
            "--tasks",
            "plus1,plus2",
            "--kind",
            "resample",
            "--n-prompts",
            "1",
            "--out",
            str(out),
        ]
    )  # fmt: skip  (refused after the model loads)
    assert status == 2 and "at least 2 prompts" in capsys.readouterr().err
    assert len(list((fresh_cache / "doctor").iterdir())) == 1  # the checks did run
    assert not out.exists()
