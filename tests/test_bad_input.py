"""Every subcommand against every family of bad input: sizes that cannot fit, devices that are
not there, broken model files, broken saved artefacts, and output locations that cannot be
written (or hold another run's results). Each case must exit 2 with one line that names the
problem, with no traceback, fast, and leave nothing behind: no output directory, no lock, no
probe, no partial state."""

import json
import shutil
import time
from pathlib import Path

import pytest

from tslens.cli import main
from tslens.sources.loader import PACKAGED_MODELS

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
    other = root / "other-recipe-run" / "checkpoint"
    other.mkdir(parents=True)
    (other / "trainer.json").write_text(json.dumps({"step": 1, "recipe": {"steps": 7}}))
    out["other-recipe-run"] = other.parent
    out["trained"] = model_copy("trained")
    (root / "empty-dir").mkdir()
    out["empty-dir"] = root / "empty-dir"
    ckpt = root / "train-run" / "checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"damaged")
    out["train-run"] = ckpt.parent
    return out


def _vectors_of_another_model(tmp_path: Path) -> Path:
    import torch

    from tslens.analyses.layer.task_vectors import TaskVectors

    path = tmp_path / "other.safetensors"
    TaskVectors("other", ["plus1", "plus2"], torch.zeros(2, 7, 12), "resid_post", {}).save(path)
    return path


# Each command that writes an --out directory, with arguments that would otherwise run.
WRITERS = {
    "probs": ["probs", *TASKS], "patch": ["patch", *TASKS], "heads": ["heads", *TASKS],
    "ablate": ["ablate", *TASKS], "demos": ["demos", *TASKS], "types": ["types", *TASKS],
    "atp": ["atp", *TASKS],
    "scale": ["scale", "--models", "tslens-char-3l4h", *TASKS], "decode": ["decode", *TASKS],
    "evaluate": ["evaluate", *TASKS], "train": ["train", "--steps", "2", "--no-eval"],
    "compare": ["compare", str(PACKAGED_MODELS / "tslens-char-3l4h" / "eval.json")],
}  # fmt: skip
OUT_CASES = [
    ("{file}", "is a file, not a directory"),
    ("{file}/sub", "lies below"),
    ("/proc/self/tslens-out/x", "cannot be created"),
]
PATH_CASES = [
    ("path", [*argv, "--out", out], message)
    for argv in WRITERS.values() for out, message in OUT_CASES
] + [
    ("path", [*argv, "--out", "{finished}"], "already holds")
    for name, argv in WRITERS.items() if name != "train"
]  # fmt: skip

CASES = [
    # --- sizes that cannot fit, refused before any prompt set or weights ---------------------
    ("size", ["probs", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["patch", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["heads", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["ablate", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["demos", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["demos", *TASKS, "--heads", "0.7"], "heads 0..3"),
    ("size", ["demos", *TASKS, "--ablate", "4.0"], "layers 0..2"),
    ("size", ["types", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["types", *TASKS, "--ns", "0,2"], "positive counts"),
    ("size", ["atp", *TASKS, "--n-examples", "5000"], CONTEXT),
    ("size", ["atp", *TASKS, "--method", "atp,foo"], "unknown method 'foo'"),
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
    ("size", ["probs", *TASKS, "--seed", "-1"], "--seed must be >= 0"),
    ("size", ["patch", *TASKS, "--lambdas", "0:1:0"], "gives no lambda"),
    ("size", ["probs", "--preset", "opz"], "unknown preset 'opz'"),
    ("size", ["probs", "--preset", "ops", *TASKS], "--preset or --tasks"),
    ("size", ["reproduce", "--only", "xiong-f1,nope"], "unknown claim 'xiong-f1'"),
    ("size", ["reproduce", "--pair", "plus2"], "--pair needs two tasks"),
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
    ("model", ["probs", *TASKS, "--model", "{task.csv}"], "is a file, not a model directory"),
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
    ("file", ["decode", "--prompt-file", "{empty-dir}"], "prompt file"),
    ("file", ["train", "--recipe", "{empty-dir}", "--out", "{out}"], "Is a directory"),
    ("file", ["compare", "{empty-dir}", "--out", "{out}"], "cannot read evaluation"),
    # --- paths tslens writes: the wrong kind, below a file, unwritable, another run's --------
    *PATH_CASES,
    ("path", ["probs", *TASKS, "--out", "{finished-unrecorded}"], "no record of its arguments"),
    ("path", ["patch", *TASKS, "--vectors", "{empty-dir}"], "is a directory, not a file"),
    ("path", ["patch", *TASKS, "--vectors", "{file}/v.safetensors"], "its directory"),
    ("path", ["patch", *TASKS, "--vectors", "/proc/self/v/v.safetensors"], "cannot be created"),
    ("path", [*WRITERS["compare"], "--card", "{empty-dir}", "--out", "{out}"], "no README.md"),
    ("path", [*WRITERS["train"], "--out", "{trained}"], "trained with another recipe"),
    ("path", [*WRITERS["train"], "--out", "{other-recipe-run}"], "interrupted training run"),
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
    paths.update(_finished_outputs(tmp_path))
    argv = [_fill(a, paths) for a in argv]
    before = _tree(tmp_path), _tree(files["trained"]), _tree(files["other-recipe-run"])
    if "--out" not in argv:
        argv += ["--out", paths["out"]]
    start = time.perf_counter()
    assert main(argv) == 2, argv
    seconds = time.perf_counter() - start
    lines = capsys.readouterr().err.splitlines()
    err = lines[-1] if lines else ""
    assert err.startswith("tslens: error: ") and message in err, lines
    # one line: before it at most a status line or two (loading a model), never the refusal's
    assert all(line.startswith("tslens: ") and "error" not in line for line in lines[:-1]), lines
    if family in ("size", "path"):  # refused from the model's config, before any model loads
        assert len(lines) == 1, lines
    assert "Traceback" not in err
    assert seconds < 20, f"{argv} took {seconds:.1f} s to refuse"
    if argv[0] != "train" or family != "file":
        assert not (tmp_path / "out").exists()  # nothing half-written
    assert before == (_tree(tmp_path), _tree(files["trained"]), _tree(files["other-recipe-run"]))


def _finished_outputs(tmp_path: Path) -> dict[str, str]:
    """A regular file, and two directories that hold every command's results: one recorded
    as made with other arguments, one with no record (made by hand, or by an old version)."""
    (tmp_path / "a-file").write_text("not a directory")
    recorded, unrecorded = tmp_path / "finished", tmp_path / "finished-unrecorded"
    for out in (recorded, unrecorded):
        out.mkdir()
        for command in WRITERS:
            (out / f"{command}.json").write_text("{}")
        (out / "eval.json").write_text("{}")
    record = {command: {"seed": 99} for command in [*WRITERS, "evaluate"]}
    (recorded / ".tslens-finished.json").write_text(json.dumps(record))
    return {"file": str(tmp_path / "a-file"), "finished": str(recorded),
            "finished-unrecorded": str(unrecorded)}  # fmt: skip


def _tree(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path below ``root``, with a file's size and modification time (a directory's
    own time changes when a check's probe or a lock comes and goes again)."""
    return {
        str(p): None if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def _fill(arg: str, paths: dict[str, str]) -> str:
    for name, value in paths.items():
        arg = arg.replace("{" + name + "}", value)
    return arg


def test_the_table_covers_every_family_and_every_long_command():
    families = {family for family, _, _ in CASES}
    assert families == {"size", "device", "model", "file", "path"} and len(CASES) >= 80
    commands = {argv[0] for _, argv, _ in CASES}
    assert {"probs", "patch", "heads", "ablate", "demos", "scale", "decode", "evaluate",
            "train", "compare"} <= commands  # fmt: skip

    for argv in WRITERS.values():  # every command that writes, against every kind of bad --out
        for out, _ in OUT_CASES:
            assert [*argv, "--out", out] in [c[1] for c in CASES]


def test_an_unwritable_cache_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    monkeypatch.setenv("TSLENS_CACHE", str(tmp_path / "cache"))
    assert main(["probs", *TASKS, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "point TSLENS_CACHE at a writable directory" in err, err
    assert not (tmp_path / "out").exists()


def test_finished_results_are_replaced_by_the_same_run_and_refused_for_another(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["probs", *TASKS, "--n-prompts", "3", "--n-examples", "4", "--out", str(out)]
    assert main(argv) == 0
    first = (out / "probs.json").read_text()
    assert main(argv) == 0  # the same arguments: re-run, same numbers
    assert (out / "probs.json").read_text() == first
    capsys.readouterr()
    assert main([*argv, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "seed differ" in err and "--overwrite" in err, err
    assert (out / "probs.json").read_text() == first  # nothing touched
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    assert (out / "probs.json").read_text() != first
    assert main([*argv, "--seed", "1"]) == 0  # the record now names the new run
    patch = ["patch", *TASKS, "--n-prompts", "2", "--lambdas", "0,1", "--no-geometry"]
    assert main([*patch, "--out", str(out)]) == 0  # another command beside it is no conflict
