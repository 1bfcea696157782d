"""Long runs survive interruption: a run stopped part way keeps its finished batches, the same
command resumes to results identical to an uninterrupted run, other arguments are refused,
and two runs cannot share an output directory."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tslens.cli import main
from tslens.engine import patching, resume

PATCH = ["patch", "--tasks", "plus2,plus5", "--n-prompts", "6", "--lambdas", "0:1:3",
         "--batch-size", "2"]  # fmt: skip
HEADS = ["heads", "--tasks", "plus2,plus5", "--n-prompts", "4", "--batch-size", "2"]


def _interrupt_after(monkeypatch, calls: int | None) -> list:
    """Ctrl-C (KeyboardInterrupt) at the ``calls``-th batch of patched scoring (``None``:
    never); returns the list that counts the batches computed."""
    original, seen = patching._patch_chunk, []

    def stop(*args, **kwargs):
        seen.append(1)
        if len(seen) == calls:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(patching, "_patch_chunk", stop)
    return seen


@pytest.mark.parametrize(("argv", "result"), [(PATCH, "patch.json"), (HEADS, "heads.json")])
def test_an_interrupted_run_resumes_to_identical_results(argv, result, tmp_path, capsys,
                                                         monkeypatch):  # fmt: skip
    with monkeypatch.context() as patch:
        whole_batches = _interrupt_after(patch, None)
        assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / result).read_text())
    assert not (tmp_path / "whole" / resume.PARTIAL).exists()  # cleaned up after success

    out = tmp_path / "split"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 3)
        capsys.readouterr()
        assert main([*argv, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run the same command again to resume" in err
    saved = list((out / resume.PARTIAL).glob("*-*"))
    assert saved and not (out / result).exists() and not (out / resume.LOCK).exists()

    with monkeypatch.context() as patch:
        resumed_batches = _interrupt_after(patch, None)
        assert main([*argv, "--out", str(out)]) == 0
    resumed = json.loads((out / result).read_text())
    whole.pop("command", None), resumed.pop("command", None)
    assert resumed == whole
    assert not (out / resume.PARTIAL).exists()
    # the two batches finished before the interruption were loaded, not computed again
    assert len(resumed_batches) == len(whole_batches) - 2


def test_other_arguments_are_not_mixed_with_a_partial_run(tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2)
        assert main([*PATCH, "--out", str(out)]) == 130
    capsys.readouterr()
    assert main([*PATCH, "--seed", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "partial run with other arguments (seed differ)" in err


def test_two_runs_cannot_share_an_output_directory(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    hold = (  # another process in the middle of a run: it holds the lock, then is killed
        "import sys, time; from pathlib import Path; from tslens.engine.resume import _locked\n"
        "with _locked(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main([*PATCH, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"another tslens run (pid {holder.pid}" in err and err.count("\n") == 1
    finally:
        holder.kill()
        holder.wait()
    # killed, it left its holder record but the kernel released its lock: the next run goes on
    assert (out / resume.HOLDER).exists()
    assert main([*PATCH, "--out", str(out)]) == 0
    assert (out / "patch.json").exists()
    assert not (out / resume.HOLDER).exists() and not (out / resume.LOCK).exists()


def test_a_failed_run_leaves_no_directory_behind(tmp_path):
    assert main(["ablate", "--tasks", "plus2,plus5", "--kind", "nope", "--out",
                 str(tmp_path / "o")]) == 2  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_ctrl_c_on_a_real_process_then_resume(tmp_path):
    """The real signal: SIGINT a `tslens patch` process once it has saved batches."""
    out = tmp_path / "o"
    argv = [sys.executable, "-m", "tslens", *PATCH[:4], "24", *PATCH[5:-1], "1", "--out",
            str(out)]  # fmt: skip
    env = {**os.environ, "TSLENS_DEBUG": ""}
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / resume.PARTIAL).glob("patch-*"))) >= 2:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    ours = [line for line in err.splitlines() if line.startswith("tslens: ")]
    assert len(ours) == 1 and ours[0].startswith("tslens: interrupted;"), err
    assert "Traceback" not in err, err
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "patch.json").read_text())["n_prompts"] == 24


def test_batches_under_someone_elses_hooks_are_never_saved(tiny_char, tmp_path):
    import torch

    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.ones(2)}

    with resume.checkpointing(tmp_path / "o", {"a": 1}) as state:
        resume.cached("t", tiny_char, [1, 2], compute)
        resume.cached("t", tiny_char, [1, 2], compute)  # same key: loaded, not computed
        with tiny_char.hooks(fwd_hooks=[("blocks.0.hook_resid_post", lambda a, hook: a)]):
            resume.cached("t", tiny_char, [1, 2], compute)  # hooks change what it computes
        assert len(calls) == 2 and state.saved == 1 and state.loaded == 1
