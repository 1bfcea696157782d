"""``with lens.run(prompts, answers) as r: ...`` against the plain references and the
specialised verbs, on every architecture tslens ships: the char model, the GPT-2 fixture, the
tiny Gemma-3-shaped model (sliding window, post-attention norms) and the tiny grouped-query
GGUF Llama."""

import pytest
import torch
from tiny_gguf import build_llama, write_gguf

from tslens._reference import answer_logprobs_naive, patched_answer_logprobs_naive
from tslens.doctor.tiny import write_tiny_gemma
from tslens.engine import (
    ablated_answer_logprobs,
    capture_activations,
    head_statistics,
    patched_answer_logprobs,
)
from tslens.errors import TslensError
from tslens.prompts import PromptSpec
from tslens.sources.loader import load_model
from tslens.tasks import resolve_tasks

TOL = 1e-5


@pytest.fixture(
    scope="module", params=["char", pytest.param("gpt2", marks=pytest.mark.slow), "gemma", "gqa"]
)
def lens(request, tmp_path_factory):
    if request.param == "char":
        return load_model(device="cpu")
    if request.param == "gpt2":
        return load_model("gpt2-small-random", device="cpu")
    if request.param == "gemma":
        return load_model(str(write_tiny_gemma(tmp_path_factory.mktemp("gemma"))), device="cpu")
    path = write_gguf(build_llama(seed=0), tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    mp = pytest.MonkeyPatch()
    mp.setenv("TSLENS_CACHE", str(tmp_path_factory.mktemp("gqa-cache")))
    model = load_model(str(path), device="cpu")
    mp.undo()
    return model


@pytest.fixture(scope="module")
def prompts(lens):
    tasks = resolve_tasks("plus2,plus5")
    built = PromptSpec(n_prompts=4, n_examples=5, template="spaced").mixture(tasks)
    return [p.text for p in built], [p.answers for p in built]


def test_score_and_capture_in_one_pass_equal_the_references(lens, prompts):
    texts, answers = prompts
    with lens.run(texts, answers, batch_size=3) as r:
        scores = r.score()
        resid = r.capture("resid_post")
        z = r.capture("z", layers=[0])
    assert (scores.value - answer_logprobs_naive(lens, texts, answers)).abs().max() <= TOL
    ref = capture_activations(lens, texts, ["resid_post", "z"])
    assert (resid.value - ref["resid_post"]).abs().max() <= TOL
    assert (z.value - ref["z"][:, :1]).abs().max() <= TOL


def test_a_capture_only_run_needs_no_answers(lens, prompts):
    texts, _ = prompts
    with lens.run(texts) as r:
        mlp = r.capture("mlp_out", layers=[1])
    ref = capture_activations(lens, texts, ["mlp_out"], layers=[1])["mlp_out"]
    assert (mlp.value - ref).abs().max() <= TOL


@pytest.mark.parametrize("mode", ["replace", "add"])
def test_a_patched_run_equals_the_naive_patch_loop(lens, prompts, mode):
    texts, answers = prompts
    vector = torch.randn(lens.d_model, generator=torch.Generator().manual_seed(0)) * 3
    with lens.run(texts, answers, batch_size=2) as r:
        r.patch(1, vector, mode=mode)
        scores = r.score()
        after = r.capture("resid_post", layers=[1])
    slow = patched_answer_logprobs_naive(lens, texts, answers, torch.tensor([1]), vector[None],
                                         mode)[:, 0]  # fmt: skip
    assert (scores.value - slow).abs().max() <= TOL
    clean = answer_logprobs_naive(lens, texts, answers)
    assert (scores.value - clean).abs().max() > 1e-3  # the patch does something
    if mode == "replace":  # a capture reads what the run computed: the patched vector
        assert torch.allclose(after.value[:, 0], vector.expand(len(texts), -1), atol=1e-6)


def test_per_prompt_head_patches_equal_the_batched_verb(lens, prompts):
    texts, answers = prompts
    values = torch.randn(len(texts), lens.d_head, generator=torch.Generator().manual_seed(1))
    with lens.run(texts, answers) as r:
        r.patch(0, values * 4, kind="z", head=1)
        scores = r.score()
    fast = patched_answer_logprobs(lens, texts, answers, torch.tensor([0]),
                                   (values * 4)[:, None], kind="z", heads=torch.tensor([1]),
                                   per_prompt=True)[:, 0]  # fmt: skip
    assert (scores.value - fast).abs().max() <= TOL


def test_ablations_equal_the_ablation_verb(lens, prompts):
    texts, answers = prompts
    heads = [(0, 1), (1, 0)]
    with lens.run(texts, answers) as r:
        r.ablate(heads)
        zero = r.score()
    ref = ablated_answer_logprobs(lens, texts, answers, heads, kind="zero")
    assert (zero.value - ref).abs().max() <= TOL
    stats = head_statistics(lens, texts)
    with lens.run(texts, answers) as r:
        r.ablate({h: stats.mean_final[h] for h in heads})
        mean = r.score()
    ref = ablated_answer_logprobs(lens, texts, answers, heads, kind="mean", stats=stats)
    assert (mean.value - ref).abs().max() <= TOL


def test_results_are_read_after_the_block_and_scores_need_answers(lens, prompts):
    texts, answers = prompts
    with lens.run(texts, answers) as r:
        scores = r.score()
        with pytest.raises(TslensError, match="when the `with lens.run"):
            _ = scores.value
    with pytest.raises(TslensError, match="needs answers"), lens.run(texts) as r:
        r.score()
