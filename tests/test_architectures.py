"""Every fast path against its plain reference on a tiny Gemma-3-shaped model (sliding window
8, far shorter than the prompts; one KV head; post-attention norms; ``1 + weight`` gains; tied
unembedding), and the architecture facts tslens reads from it."""

import pytest
import torch

from tslens._reference import (
    answer_logprobs_naive,
    patched_answer_logprobs_loop,
    patched_answer_logprobs_naive,
)
from tslens.analyses.head.ablation_study import head_importance
from tslens.analyses.head.logit_attribution import answer_first_tokens, direct_logit_attribution
from tslens.doctor.tiny import write_tiny_gemma
from tslens.engine.ablation import ablated_answer_logprobs, head_statistics
from tslens.engine.architecture import post_attention_norms, rms_gain, sliding_window
from tslens.engine.decoders import branch_complete_answers
from tslens.engine.patching import patched_answer_logprobs
from tslens.engine.scoring import answer_logprobs, prompt_token_ids
from tslens.prompts import build_mixture_prompts
from tslens.sources.loader import load_model
from tslens.tasks import resolve_tasks


@pytest.fixture(scope="module")
def gemma_like(tmp_path_factory):
    return load_model(str(write_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma"))), device="cpu")


@pytest.fixture(scope="module")
def mixture():
    prompts = build_mixture_prompts(resolve_tasks("plus2,plus5"), None, 3, 6, template="spaced")
    return [p.text for p in prompts], [p.answers for p in prompts]


def test_the_architecture_facts(gemma_like, mixture):
    assert sliding_window(gemma_like) == 8
    assert len(prompt_token_ids(gemma_like, mixture[0])[0]) > 3 * 8  # the window really bites
    norms = post_attention_norms(gemma_like)
    assert norms is not None and len(norms) == 3
    weight = norms[0].original_component.weight
    assert torch.allclose(rms_gain(norms[0]), 1 + weight.double(), atol=1e-6)  # Gemma's 1 + w


def test_scoring_with_a_sliding_window_equals_the_plain_loop(gemma_like, mixture):
    texts, answers = mixture
    fast = answer_logprobs(gemma_like, texts, answers, batch_size=2)
    assert (fast - answer_logprobs_naive(gemma_like, texts, answers)).abs().max() <= 1e-5


def test_residual_patch_sweep_equals_the_naive_loop(gemma_like, mixture):
    texts, answers = mixture
    layers = torch.tensor([-1, 0, 1, 2, 2])
    vectors = torch.randn(5, gemma_like.cfg.d_model, generator=torch.Generator().manual_seed(1))
    for mode in ("replace", "add"):
        fast = patched_answer_logprobs(gemma_like, texts, answers, layers, vectors * 3, mode)
        slow = patched_answer_logprobs_naive(gemma_like, texts, answers, layers, vectors * 3, mode)
        assert (fast - slow).abs().max() <= 1e-5
        assert (slow[:, 0] - slow[:, 3]).abs().max() > 1e-2  # the patches do something


def test_head_patching_equals_the_per_head_loop(gemma_like, mixture):
    texts, answers = mixture
    layers, heads = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 3, 1, 2])
    vectors = torch.randn(3, 4, gemma_like.cfg.d_head, generator=torch.Generator().manual_seed(0))
    args = (gemma_like, texts, answers, layers, vectors * 3)
    fast = patched_answer_logprobs(*args, kind="z", heads=heads, per_prompt=True, batch_size=3)
    loop = patched_answer_logprobs_loop(*args, kind="z", heads=heads, per_prompt=True)
    assert (fast - loop).abs().max() <= 1e-5
    assert (loop - answer_logprobs(gemma_like, texts, answers)[:, None]).abs().max() > 1e-2


def test_head_ablation_ranking_equals_one_head_at_a_time(gemma_like, mixture):
    texts, answers = mixture
    stats = head_statistics(gemma_like, texts)
    importance = head_importance(gemma_like, texts, answers, "zero", stats)
    base = answer_logprobs(gemma_like, texts, answers)
    for layer, head in [(0, 0), (1, 2), (2, 3)]:
        ablated = ablated_answer_logprobs(gemma_like, texts, answers, [(layer, head)], "zero",
                                          "final", stats)  # fmt: skip
        expected = (base.exp() - ablated.exp()).mean(0)
        assert torch.allclose(importance[:, layer, head], expected, atol=1e-7)
        assert not torch.allclose(ablated, base, atol=1e-4)  # zeroing a head does something


def test_dla_through_post_attention_norms_adds_up(gemma_like, mixture):
    texts, answers = mixture
    tokens = answer_first_tokens(gemma_like, texts, answers)
    dla = direct_logit_attribution(gemma_like, texts, tokens, batch_size=2)
    assert (dla.total() - dla.logits).abs().max() <= 1e-3
    logits = gemma_like(torch.tensor([prompt_token_ids(gemma_like, texts[:1])[0]]))[0, -1]
    centered = (logits - logits.mean()).double()[torch.tensor(tokens[0])]
    assert torch.allclose(dla.logits[0], centered, atol=1e-4)
    assert dla.heads.abs().max() > 1e-3  # the heads are attributed, not zeroed away


def test_branch_decoding_over_the_cache_is_exact(gemma_like, mixture):
    texts, _ = mixture
    found = branch_complete_answers(gemma_like, texts, width=3, max_new_tokens=3,
                                    finish_at_max=True)  # fmt: skip
    for text, row in zip(texts, found, strict=True):
        exact = answer_logprobs(gemma_like, [text], [[a for a, _ in row]]).exp()[0]
        assert torch.allclose(torch.tensor([p for _, p in row], dtype=torch.float64), exact,
                              rtol=1e-4)  # fmt: skip
