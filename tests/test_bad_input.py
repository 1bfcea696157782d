"""Every subcommand against every family of bad input: sizes that cannot fit, devices that are
not there, broken model files, broken saved artefacts. Each case must exit 2 with one line that
names the problem, with no traceback, fast, and leave no output directory behind."""

import json
import shutil
import time
from pathlib import Path

import pytest

from tslens.cli import main
from tslens.models import PACKAGED_MODELS

TASKS = ["--tasks", "plus1,plus2"]
NO_GPU = "no CUDA GPU is available"
CONTEXT = "context of 256"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Broken models and artefacts, each made from a good one."""
    root = tmp_path_factory.mktemp("broken")
    good = PACKAGED_MODELS / "tslens-char-1l2h-d32"

    def model_copy(name: str) -> Path:
        return Path(shutil.copytree(good, root / name))

    trunc = model_copy("truncated")
    weights = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    (model_copy("bad-config") / "config.json").write_text("{not json")
    (model_copy("bad-tokenizer") / "tokenizer.json").write_text("{not json")
    (model_copy("no-config") / "config.json").unlink()
    flipped = model_copy("garbage-weights")
    (flipped / "model.safetensors").write_bytes(b"\x00" * 64)
    out = {
        "truncated": trunc, "bad-config": root / "bad-config",
        "bad-tokenizer": root / "bad-tokenizer", "no-config": root / "no-config",
        "garbage-weights": flipped,
    }  # fmt: skip
    artefacts = {
        "vectors.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{broken",
        "eval.json": b'{"curves": [',
        "prompts.jsonl": b'{"prompt": "3>4\\n5>"}\n{"prompt": ',
        "prompts.txt": b"\xff\xfe\xfa not utf-8",
        "recipe.toml": b"steps = = 3",
        "unknown.toml": b"stepz = 3\n",
        "task.csv": b'input,output\n"1,2\n',
        "model.gguf": b"GGUF\x03\x00\x00\x00 truncated",
        "long.txt": ("1>2\n" * 200 + "3>").encode(),
    }
    for name, content in artefacts.items():
        (root / name).write_bytes(content)
        out[name] = root / name
    ckpt = root / "train-run" / "checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"damaged")
    out["train-run"] = ckpt.parent
    return out


def _vectors_of_another_model(tmp_path: Path) -> Path:
    import torch

    from tslens.analyses.task_vectors import TaskVectors

    path = tmp_path / "other.safetensors"
    TaskVectors("other", ["plus1", "plus2"], torch.zeros(2, 7, 12), "resid_post", {}).save(path)
    return path


CASES = [
    # --- sizes that cannot fit, refused before any prompt set or weights ---------------------
    ("size", ["probs", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["patch", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["heads", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["ablate", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["demos", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["demos", *TASKS, "--heads", "0.7"], "heads 0..3"),
    ("size", ["scale", "--models", "tslens-char-1l2h-d32,tslens-char-3l4h", *TASKS,
              "--n-examples", "5000"], CONTEXT),
    ("size", ["decode", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["evaluate", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["decode", "--prompt-file", "{long.txt}"], CONTEXT),
    ("size", ["decode", *TASKS, "--max-new-tokens", "0"], ">= 1"),
    ("size", ["decode", *TASKS, "--width", "500"], "vocabulary has 100"),
    ("size", ["decode", "--tasks", "plus1,plus2,plus3", "--width", "2"], "raise --width"),
    ("size", ["patch", *TASKS, "--layers", "9"], "layers 0..2"),
    ("size", ["patch", *TASKS, "--layers", "5:9"], "selects no layer"),
    ("size", ["ablate", *TASKS, "--heads", "0.7"], "heads 0..3"),
    ("size", ["ablate", *TASKS, "--heads", "9.0"], "layers 0..2"),
    ("size", ["heads", *TASKS, "--fv-heads", "500"], "12 heads in all"),
    ("size", ["probs", *TASKS, "--n-prompts", "0"], ">= 1"),
    ("size", ["probs", *TASKS, "--batch-size", "0"], ">= 1"),
    ("size", ["ablate", *TASKS, "--n-random", "-1"], "must be >= 1"),
    ("size", ["scale", "--models", "tslens-char-3l4h", *TASKS, "--accuracy-prompts", "0"],
     ">= 1"),
    ("size", ["train", "--steps", "0", "--out", "{out}"], ">= 1"),
    ("size", ["train", "--n-ctx", "8", "--out", "{out}"], "shorter than a training sequence"),
    ("size", ["train", "--d-model", "10", "--n-heads", "4", "--out", "{out}"], "divisible"),
    # --- devices that are not there ----------------------------------------------------------
    ("device", ["probs", *TASKS, "--device", "cuda"], NO_GPU),
    ("device", ["patch", *TASKS, "--device", "cuda:1"], NO_GPU),
    ("device", ["heads", *TASKS, "--device", "tpu"], "unknown device"),
    ("device", ["ablate", *TASKS, "--device", "mps"], "MPS is not available"),
    ("device", ["scale", "--models", "tslens-char-3l4h", *TASKS, "--device", "cuda"], NO_GPU),
    ("device", ["decode", *TASKS, "--device", "cuda"], NO_GPU),
    ("device", ["evaluate", *TASKS, "--device", "cuda"], NO_GPU),
    ("device", ["train", "--device", "cuda", "--out", "{out}"], NO_GPU),
    ("device", ["probs", *TASKS, "--device-map", '{"": 0}'], NO_GPU),
    # --- broken model files ------------------------------------------------------------------
    ("model", ["probs", *TASKS, "--model", "{truncated}"], "cannot read model weights"),
    ("model", ["patch", *TASKS, "--model", "{bad-config}"], "cannot read model config"),
    ("model", ["heads", *TASKS, "--model", "{bad-tokenizer}"], "could not load the tokenizer"),
    ("model", ["ablate", *TASKS, "--model", "{no-config}"], "has no config.json"),
    ("model", ["scale", "--models", "tslens-char-3l4h,{truncated}", *TASKS],
     "cannot read model weights"),
    ("model", ["decode", *TASKS, "--model", "{garbage-weights}"], "cannot read model weights"),
    ("model", ["evaluate", *TASKS, "--model", "{bad-config}"], "cannot read model config"),
    ("model", ["probs", *TASKS, "--model", "{model.gguf}"], "not a readable GGUF file"),
    # --- broken saved artefacts --------------------------------------------------------------
    ("file", ["patch", *TASKS, "--vectors", "{vectors.safetensors}", "--n-prompts", "2"],
     "cannot read task vectors"),
    ("file", ["patch", *TASKS, "--vectors", "{other-vectors}", "--n-prompts", "2"],
     "from a model with 7 layers"),
    ("file", ["compare", "{eval.json}", "--out", "{out}"], "cannot read evaluation"),
    ("file", ["compare", "{truncated}/config.json", "--out", "{out}"], "not an eval.json"),
    ("file", ["decode", "--prompt-file", "{prompts.jsonl}"], "cannot read prompt file"),
    ("file", ["decode", "--prompt-file", "{prompts.txt}"], "cannot read prompt file"),
    ("file", ["train", "--recipe", "{recipe.toml}", "--out", "{out}"], "cannot read recipe"),
    ("file", ["train", "--recipe", "{unknown.toml}", "--out", "{out}"], "unknown keys stepz"),
    ("file", ["train", "--steps", "2", "--n-layers", "1", "--d-model", "16", "--n-heads", "2",
              "--no-eval", "--out", "{train-run}"], "cannot read checkpoint"),
    ("file", ["probs", "--tasks", "{task.csv},plus1"], "cannot read task file"),
    ("file", ["probs", *TASKS, "--out", "{partial}"], "partial run with other arguments"),
]  # fmt: skip


@pytest.mark.parametrize(("family", "argv", "message"), CASES,
                         ids=[f"{c[0]}-{c[1][0]}-{i}" for i, c in enumerate(CASES)])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(family, argv, message, files, tmp_path, capsys):
    paths = {name: str(path) for name, path in files.items()}
    paths["out"] = str(tmp_path / "out")
    paths["other-vectors"] = str(_vectors_of_another_model(tmp_path))
    partial = tmp_path / "partial" / ".tslens-partial"
    partial.mkdir(parents=True)
    (partial / "run.json").write_text(json.dumps({"seed": 99}))
    paths["partial"] = str(partial.parent)
    argv = [_fill(a, paths) for a in argv]
    if "--out" not in argv:
        argv += ["--out", paths["out"]]
    start = time.perf_counter()
    assert main(argv) == 2, argv
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tslens: error: "), err
    assert message in err, err
    assert "Traceback" not in err
    assert seconds < 20, f"{argv} took {seconds:.1f} s to refuse"
    if argv[0] != "train" or family != "file":
        assert not (tmp_path / "out").exists()  # nothing half-written


def _fill(arg: str, paths: dict[str, str]) -> str:
    for name, value in paths.items():
        arg = arg.replace("{" + name + "}", value)
    return arg


def test_the_table_covers_every_family_and_every_long_command():
    families = {family for family, _, _ in CASES}
    assert families == {"size", "device", "model", "file"} and len(CASES) >= 40
    commands = {argv[0] for _, argv, _ in CASES}
    assert {"probs", "patch", "heads", "ablate", "demos", "scale", "decode", "evaluate",
            "train", "compare"} <= commands  # fmt: skip
