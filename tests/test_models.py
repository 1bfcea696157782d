import json
from pathlib import Path

import pytest

from tslens.errors import TslensError
from tslens.sources.fixture import VOCAB_SHA256, _sha256, build_gpt2_small_fixture, gpt2_vocab_files
from tslens.sources.loader import load_model, resolve_model


def test_fixture_is_gpt2_small_with_the_real_bpe(gpt2):
    cfg = gpt2.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.n_ctx, cfg.d_vocab) == (
        12,
        12,
        768,
        1024,
        50257,
    )
    ids = gpt2.tokenizer("Hello world", add_special_tokens=False)["input_ids"]
    assert ids == [15496, 995]  # GPT-2's real ids
    assert "blocks.11.hook_resid_post" in gpt2.hook_dict
    assert "blocks.0.attn.hook_z" in gpt2.hook_dict
    assert gpt2.tslens_name == "gpt2-small-random"


def test_vocab_files_are_pinned():
    for name, path in gpt2_vocab_files().items():
        assert _sha256(path) == VOCAB_SHA256[name]


def test_fixture_directory_is_a_plain_hf_checkpoint():
    path = build_gpt2_small_fixture()
    assert json.loads((path / "config.json").read_text())["n_layer"] == 12
    assert (path / "model.safetensors").exists() and not list(path.glob("*.bin"))


def test_local_directory_and_errors(tiny_char_dir, tmp_path):
    assert resolve_model(str(tiny_char_dir)) == (str(tiny_char_dir), True)
    with pytest.raises(TslensError, match="does not exist"):
        resolve_model("./no/such/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TslensError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
    with pytest.raises(TslensError, match="unknown dtype"):
        load_model(str(tiny_char_dir), dtype="float8")


def test_hub_unreachable_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TslensError, match="cannot reach the Hugging Face hub.*--model /path"):
        load_model("openai-community/gpt2-not-cached")


def test_dtype_plumbing_on_cpu(tiny_char_dir):
    import torch

    model = load_model(str(tiny_char_dir), device="cpu", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_ci_runs_exactly_the_readme_test_command():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text()
    command = [line for line in ci.splitlines() if line and not line.startswith(("#", "set "))]
    assert len(command) == 1 and command[0] in readme


def test_device_map_plumbing_on_cpu(tiny_char_dir, tmp_path):
    from tslens.cli import main
    from tslens.cli.common import parse_device_map

    model = load_model(str(tiny_char_dir), device_map={"": "cpu"})
    assert str(next(model.original_model.parameters()).device) == "cpu"
    assert parse_device_map('{"": 0}', None) == {"": 0}
    assert parse_device_map("auto", None) == "auto"
    common = ["probs", "--tasks", "plus2,plus5", "--n-prompts", "2", "--out", str(tmp_path)]
    assert main([*common, "--device-map", "auto", "--device", "cpu"]) == 2
    assert main([*common, "--device-map", "everywhere"]) == 2
    assert main([*common, "--device-map", "{not json"]) == 2
    assert main([*common, "--device-map", '{"": "cpu"}', "--no-solved"]) == 0


def test_scoring_halves_the_batch_when_memory_runs_out(tiny_char, monkeypatch):
    import torch

    import tslens.engine.scoring as scoring
    from tslens.prompts import build_mixture_prompts
    from tslens.tasks import resolve_tasks

    prompts = build_mixture_prompts(resolve_tasks("plus2,plus5"), None, 6, 8)
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    expected = scoring.answer_logprobs(tiny_char, texts, answers, batch_size=6)
    real, sizes = scoring.forward_packed, []

    def small_memory(model, packed):
        sizes.append(packed.ids.shape[0])
        if packed.ids.shape[0] > 2:
            raise torch.OutOfMemoryError("simulated")
        return real(model, packed)

    monkeypatch.setattr(scoring, "forward_packed", small_memory)
    got = scoring.answer_logprobs(tiny_char, texts, answers, batch_size=6)
    assert sizes == [6, 3, 1, 1, 1, 1, 1, 1]  # halved until it fits, then kept
    assert torch.allclose(got, expected, atol=1e-5)
