"""Shared fixtures: the GPT-2-small fixture (real architecture and BPE, random weights) and a
tiny character-level Llama, both booted through ``tslens.sources.loader.load_model``."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TSLENS_DEBUG", "1")  # a bug in a CLI test shows its traceback
os.environ.setdefault("TSLENS_QUIET", "1")  # stderr holds only what a test looks for

# The jaxtyping shapes of the engine and the analyses are checked at every call in the tests
# (dtype, rank and named sizes agreeing across arguments), so an annotation cannot drift
# from what the code does. Installed before any tslens module is imported.
if os.environ.get("TSLENS_TYPECHECK", "1") == "1":
    from jaxtyping import install_import_hook

    install_import_hook(
        ["tslens.engine", "tslens.hooks", "tslens.analyses"], "typecheck.beartype_with_tower"
    )


@pytest.fixture(scope="session")
def gpt2():
    from tslens.sources.loader import load_model

    return load_model("gpt2-small-random", device="cpu")


@pytest.fixture(scope="session")
def shipped():
    """The embedded default model (trained: its answer probabilities are far from uniform)."""
    from tslens.sources.loader import load_model

    return load_model(device="cpu")


@pytest.fixture(scope="session")
def tiny_char_dir(tmp_path_factory):
    from tslens.training.charlm import build_char_model

    path = tmp_path_factory.mktemp("tiny_char")
    build_char_model(path, n_layers=2, d_model=32, n_heads=2, n_ctx=256, seed=1)
    return path


@pytest.fixture(scope="session")
def tiny_char(tiny_char_dir):
    from tslens.sources.loader import load_model

    return load_model(str(tiny_char_dir), device="cpu")


def pytest_sessionfinish(session, exitstatus):
    # A run that executes no test (nothing collected, everything skipped or deselected) must
    # not pass silently.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter else 0
    if exitstatus == 0 and passed == 0:
        session.exitstatus = 1


# The full tier (CI, `pytest`) runs everything; the unit tier (`pytest -m "not slow"`, under 2
# minutes on 2 cores) leaves out what loads the GPT-2-small fixture or a real model, runs
# notebooks, trains, or drives whole CLI commands.
SLOW_FILES = {
    "test_notebooks.py", "test_pretrained.py", "test_train.py", "test_install.py",
    "test_bad_input.py", "test_cli.py", "test_doctor.py", "test_dashboards.py",
    "test_evaluation.py", "test_resume.py",
}  # fmt: skip
SLOW_FIXTURES = {"gpt2", "shipped_gpt2", "gemma", "smollm2"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.name in SLOW_FILES or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
