"""Canary for the next library release: which newest release breaks which fast path?

Not part of the gating CI (it installs from the registry and takes ~15 min on 2 cores). It
builds a scratch venv with the tested set (``constraints.txt``), runs ``tslens doctor`` there
as the baseline, then upgrades one library at a time to its newest release (the others stay
pinned), and finally all of them together, running ``tslens doctor`` after each step (and, for
the all-newest step, the exactness tests too). It prints one line per library version and
check that fails, then a JSON summary line.

    python scripts/canary.py                  # scratch venv in a temporary directory
    python scripts/canary.py --venv /tmp/cv   # keep (and reuse) the venv
    python scripts/canary.py --with-torch     # also try the newest torch (GBs of CUDA wheels)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ["transformers", "transformer-lens", "tokenizers", "accelerate", "datasets", "gguf"]
EXACTNESS_TESTS = [
    "tests/test_doctor.py", "tests/test_architectures.py", "tests/test_gguf.py",
    "tests/test_demos.py", "tests/test_complete.py", "tests/test_scoring.py",
]  # fmt: skip


def sh(venv: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=ROOT, text=True,
                          capture_output=True, check=check)  # fmt: skip


def installed(venv: Path, name: str) -> str:
    out = sh(venv, "pip", "show", name, check=False).stdout
    found = re.search(r"^Version: (.+)$", out, re.M)
    return found.group(1) if found else "not installed"


def newest_on_index(venv: Path, name: str) -> str | None:
    out = sh(venv, "pip", "index", "versions", name, check=False).stdout
    found = re.search(rf"^{re.escape(name)} \(([^)]+)\)", out, re.M | re.I)
    return found.group(1) if found else None


def why_not(venv: Path, name: str, version: str) -> str:
    """pip's last error line for installing ``name==version`` (a dry run)."""
    run = sh(venv, "pip", "install", "--dry-run", f"{name}=={version}", check=False)
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    return errors[-1] if errors else "installs"


def doctor(venv: Path) -> tuple[int, list[str]]:
    """``tslens doctor``'s exit status and its failing lines."""
    run = sh(venv, "tslens", "doctor", check=False)
    lines = (run.stdout + run.stderr).splitlines()
    return run.returncode, [line for line in lines if line.startswith("FAIL") or "rror" in line]


def pin_back(venv: Path) -> None:
    sh(venv, "pip", "install", "-q", "-r", "constraints.txt")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=None)
    parser.add_argument("--with-torch", action="store_true")
    args = parser.parse_args()
    venv = args.venv or Path(tempfile.mkdtemp(prefix="tslens-canary-")) / "venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"scratch venv: {venv}", flush=True)
    sh(venv, "pip", "install", "-q", "-c", "constraints.txt", "torch==2.13.0", "-e",
       ".[test,gemma]")  # fmt: skip
    libraries = LIBRARIES + (["torch"] if args.with_torch else [])
    rows = []
    status, failed = doctor(venv)
    pinned = {name: installed(venv, name) for name in libraries}
    rows.append({"step": "pinned", "versions": pinned, "doctor": status, "failed": failed})
    print(f"pinned set {pinned}: doctor exit {status}", flush=True)
    for name in libraries:
        upgrade = sh(venv, "pip", "install", "-q", "-U", name, check=False)
        newest = installed(venv, name)
        if upgrade.returncode != 0:
            lines = (upgrade.stderr.strip().splitlines() or ["?"])[-1]
            rows.append({"step": name, "versions": {name: newest}, "install_error": lines})
            print(f"{name}: upgrade failed: {lines}", flush=True)
            pin_back(venv)
            continue
        if newest == pinned[name]:  # nothing changed: the pinned run stands for it
            status, failed = rows[0]["doctor"], rows[0]["failed"]
        else:
            status, failed = doctor(venv)
        rows.append({"step": name, "versions": {name: newest}, "doctor": status, "failed": failed})
        same = " (already the tested version)" if newest == pinned[name] else ""
        on_index = newest_on_index(venv, name)
        if on_index and on_index != newest:
            same += (
                f"; the newest release {on_index} does not install: {why_not(venv, name, on_index)}"
            )
            rows[-1]["newest_release"] = on_index
        print(f"{name} {newest}{same}: doctor exit {status}", flush=True)
        for line in failed:
            print(f"    {name} {newest} breaks: {line}", flush=True)
        pin_back(venv)
    sh(venv, "pip", "install", "-q", "-U", *libraries, check=False)
    newest = {name: installed(venv, name) for name in libraries}
    status, failed = doctor(venv)
    tests = sh(venv, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *EXACTNESS_TESTS,
               check=False)  # fmt: skip
    summary = (tests.stdout.strip().splitlines() or ["?"])[-1]
    failing_tests = re.findall(r"^FAILED (\S+)", tests.stdout, re.M)
    rows.append({"step": "all newest", "versions": newest, "doctor": status, "failed": failed,
                 "tests": summary, "failing_tests": failing_tests})  # fmt: skip
    print(f"all newest {newest}: doctor exit {status}; exactness tests: {summary}", flush=True)
    for line in failed + failing_tests:
        print(f"    breaks: {line}", flush=True)
    print(json.dumps({"canary": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
