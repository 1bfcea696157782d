"""The real pretrained models, as the README's test command installs them: Gemma-3-270M and
SmolLM2-135M load from their packages (converted once into the cache), follow their own BOS
convention, score exactly, attribute exactly, and Gemma superposes tasks within a prompt.

Without the packages (a bare ``pip install -e '.[test]'``) these tests are skipped; in CI
(``CI`` set) a missing package is a failure, so the real-model tests can never silently vanish.
"""

import os

import pytest
import torch

from tslens._reference import answer_logprobs_naive
from tslens.analyses.head.logit_attribution import answer_first_tokens, direct_logit_attribution
from tslens.cli import main
from tslens.engine.scoring import answer_logprobs, prompt_token_ids
from tslens.prompts import build_mixture_prompts
from tslens.sources.loader import load_model
from tslens.sources.pretrained import PRETRAINED
from tslens.tasks import resolve_tasks


def _pretrained(name: str):
    entry = PRETRAINED[name]
    if not entry.installed():
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed in CI: {entry.install}")
        pytest.skip(f"{name} is not installed ({entry.install})")
    return load_model(name, device="cpu")


@pytest.fixture(scope="module")
def gemma():
    return _pretrained("gemma-3-270m")


@pytest.fixture(scope="module")
def smollm2():
    return _pretrained("smollm2-135m")


def _mixture(tasks: str, n: int, n_examples: int):
    prompts = build_mixture_prompts(resolve_tasks(tasks), None, n, n_examples, template="spaced")
    return [p.text for p in prompts], [p.answers for p in prompts]


@pytest.mark.parametrize(("name", "bos"), [("gemma", 2), ("smollm2", None)])
def test_bos_follows_the_models_own_tokenizer(name, bos, request):
    model = request.getfixturevalue(name)
    first = prompt_token_ids(model, ["France -> Paris"])[0][0]
    if bos is None:  # SmolLM2's BOS is the chat marker <|im_start|>: plain text goes without
        assert model.cfg.default_prepend_bos is False and first != model.tokenizer.bos_token_id
    else:
        assert model.cfg.default_prepend_bos is True and first == bos


@pytest.mark.parametrize("name", ["gemma", "smollm2"])
def test_packed_scoring_equals_the_plain_loop(name, request):
    model = request.getfixturevalue(name)
    texts, answers = _mixture("capital,continent,upper", 3, 6)  # multi-token answers, K = 3
    fast = answer_logprobs(model, texts, answers, batch_size=2)
    slow = answer_logprobs_naive(model, texts, answers)
    assert (fast - slow).abs().max() <= 1e-3
    assert (fast.exp() - slow.exp()).abs().max() <= 1e-5


@pytest.mark.parametrize("name", ["gemma", "smollm2"])
def test_dla_adds_up_to_the_logits(name, request):
    model = request.getfixturevalue(name)
    texts, answers = _mixture("first_letter,first_letter_upper", 2, 8)
    dla = direct_logit_attribution(model, texts, answer_first_tokens(model, texts, answers))
    assert dla.heads.shape[2:] == (model.cfg.n_layers, model.cfg.n_heads)
    assert (dla.total() - dla.logits).abs().max() <= 1e-3


def test_gemma_superposes_copy_tasks_within_prompts(gemma):
    from tslens import measure_mixture

    result = measure_mixture(gemma, "copy_op1,copy_op2", "0.5,0.5", n_prompts=16, n_examples=20,
                             template="spaced", solved=False)  # fmt: skip
    summary = result.summary()
    assert min(summary["mean_probs"]) > 0.1  # both tasks' answers get real probability
    assert summary["all_answers_share"] >= 0.25  # in the same prompts (measured: 6 of 16)
    # The model reads all the demonstrations, not the last one (the char models' shortcut).
    assert abs(summary["last_demo_gap"]) < 0.2
    single = measure_mixture(gemma, "copy_op1,copy_op2", "1,0", n_prompts=8, n_examples=20,
                             template="spaced", solved=False)  # fmt: skip
    assert single.probs[:, 0].mean() > 0.8 > result.probs[:, 0].mean()


def test_probs_cli_on_gemma_reports_prompts_with_every_answer(gemma, tmp_path, capsys):
    del gemma  # loaded (and converted) once by the fixture; the CLI loads from the cache
    argv = ["probs", "--model", "gemma-3-270m", "--tasks", "copy_op1,copy_op2", "--n-prompts",
            "4", "--n-examples", "10", "--no-solved", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "prompts holding every answer (each P >= 0.1):" in out
    import json

    saved = json.loads((tmp_path / "probs.json").read_text())
    assert saved["template"] == "spaced" and saved["per_prompt"][0]["prompt"].count(" -> ") == 10
    assert torch.tensor(saved["mean_probs"]).sum() <= 1
