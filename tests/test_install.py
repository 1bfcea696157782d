"""What a fresh install gets: every fast-moving dependency bounded above by a release we ran,
the shipped constraints inside those bounds, and the README and CI installing with them."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
FAST_MOVING = ("torch", "transformers", "transformer-lens", "tokenizers", "accelerate",
               "datasets", "gguf")  # fmt: skip


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["gemma"]
    return {Requirement(d).name: Requirement(d) for d in deps}


def _constraints() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if "==" in line and not line.startswith("#")]
    return {name.lower(): version for name, version in pins}


def test_every_fast_moving_dependency_has_a_tested_upper_bound():
    requirements, pins = _requirements(), _constraints()
    for name in FAST_MOVING:
        spec = requirements[name].specifier
        assert any(s.operator in ("<", "<=") for s in spec), f"{name} has no upper bound"
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert spec.contains(pins[name]), f"{name}=={pins[name]} is outside {spec}"


def test_the_readme_and_ci_install_the_tested_set():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in (readme + ci).splitlines() if line.startswith("python3 -m venv")]
    installs = [part for line in commands for part in re.findall(r"pip install [^&]*", line)]
    assert len(commands) == 3 and len(installs) == 5
    assert all("-c constraints.txt" in part for part in installs)
