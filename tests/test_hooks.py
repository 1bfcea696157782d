"""Capture and patch hooks on the GPT-2-small fixture: shapes, exactness against plain runs,
identity patches, batched patch scoring against the per-variant loop, hook removal."""

import pytest
import torch

from tslens._reference import patched_answer_logprobs_naive
from tslens.engine.capture import capture_activations
from tslens.engine.patching import patched_answer_logprobs
from tslens.engine.scoring import answer_logprobs, prompt_token_ids
from tslens.errors import TslensError
from tslens.hooks.capture import capturing
from tslens.hooks.names import hook_name
from tslens.hooks.patch import convex_combination, patching

TEXTS = ["The capital of France ->", "Hi ->", "one two three four five six ->"]


def _hooks_attached(model) -> int:
    points = {id(hp): hp for hp in model.hook_dict.values()}  # aliases name a point twice
    return sum(len(hp._forward_hooks) for hp in points.values())


def test_capture_shapes_and_values_match_an_unpadded_cache(gpt2):
    kinds = ["resid_pre", "resid_post", "attn_out", "mlp_out", "z"]
    acts = capture_activations(gpt2, TEXTS, kinds, layers=[0, 5, 11], batch_size=2)
    d, h = gpt2.cfg.d_model, gpt2.cfg.n_heads
    assert acts["resid_post"].shape == (3, 3, d) and acts["z"].shape == (3, 3, h, d // h)
    two = capture_activations(gpt2, TEXTS, ["resid_post"], layers=[5], positions=[-2, -1])
    assert two["resid_post"].shape == (3, 1, 2, d)
    # Left padding in a batch changes nothing: compare with one unpadded prompt's own cache.
    ids = torch.tensor([prompt_token_ids(gpt2, [TEXTS[2]])[0]])
    _, cache = gpt2.run_with_cache(ids)
    for kind in kinds:
        ref = cache[hook_name(kind, 5)][0, -1]
        assert torch.allclose(acts[kind][2, 1], ref, atol=1e-4), kind
    assert torch.allclose(two["resid_post"][2, 0, 0], cache[hook_name("resid_post", 5)][0, -2],
                          atol=1e-4)  # fmt: skip
    with pytest.raises(ValueError, match="offsets from the end"):
        capture_activations(gpt2, TEXTS, positions=[0])
    with pytest.raises(TslensError, match="out of range"):
        capture_activations(gpt2, TEXTS, layers=[12])


def test_patching_the_runs_own_vector_reproduces_the_clean_run(gpt2):
    answers = [[" Paris", " Berlin"], [" there", " you"], [" seven", " 7"]]
    clean = answer_logprobs(gpt2, TEXTS, answers)
    own = capture_activations(gpt2, TEXTS, ["resid_post"], layers=[4])["resid_post"][:, 0]
    other = torch.randn_like(own)
    for i, text in enumerate(TEXTS):
        # lambda = 1 on the prompt's own vector, 0 on another: the clean run again
        vector = convex_combination(torch.stack([own[i], other[i]]), torch.tensor([[1.0, 0.0]]))
        patched = patched_answer_logprobs(gpt2, [text], [answers[i]], torch.tensor([4]), vector)
        assert torch.allclose(patched[0, 0], clean[i], atol=1e-4)


def test_batched_patch_scoring_equals_the_per_variant_loop(gpt2):
    texts, answers = TEXTS[:2], [[" Paris", " Berlin town"], [" there", " you"]]
    generator = torch.Generator().manual_seed(0)
    # out of layer order: the fast path runs them sorted by the layer each enters at
    layers = torch.tensor([11, -1, 3, 0, 3])
    vectors = torch.randn(5, gpt2.cfg.d_model, generator=generator) * 5
    for kind in ("resid_pre", "mlp_out"):  # hook points at a block's entry and inside it
        slow = patched_answer_logprobs_naive(gpt2, texts, answers, layers, vectors, kind=kind)
        fast = patched_answer_logprobs(gpt2, texts, answers, layers, vectors, kind=kind,
                                       batch_size=3)  # fmt: skip
        assert (fast - slow).abs().max() <= 1e-3, kind
    for mode in ("replace", "add"):
        slow = patched_answer_logprobs_naive(gpt2, texts, answers, layers, vectors, mode)
        for batch_size in (3, 64):  # variant groups split across forwards, and all in one
            fast = patched_answer_logprobs(gpt2, texts, answers, layers, vectors, mode,
                                           batch_size=batch_size)  # fmt: skip
            assert (fast.exp() - slow.exp()).abs().max() <= 1e-4
            assert (fast - slow).abs().max() <= 1e-3
    assert torch.allclose(fast[:, 1], answer_logprobs(gpt2, texts, answers), atol=1e-4)
    # A patch that changes something must show up (the comparison above is not vacuous).
    assert (slow[:, 1] - slow[:, 2]).abs().max() > 1e-2


def test_hooks_are_removed_even_after_an_exception(gpt2):
    before = _hooks_attached(gpt2)
    with pytest.raises(RuntimeError, match="boom"):
        with patching(gpt2, torch.tensor([2]), torch.zeros(1, gpt2.cfg.d_model)):
            assert _hooks_attached(gpt2) == before + 1
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        with capturing(gpt2, ["resid_post", "z"], [0, 1], [-1]):
            assert _hooks_attached(gpt2) == before + 4
            raise RuntimeError("boom")
    assert _hooks_attached(gpt2) == before


def test_convex_weights_must_lie_on_the_simplex():
    v = torch.randn(2, 3, 8)
    mid = convex_combination(v, torch.tensor([[0.5, 0.5]]))
    assert torch.allclose(mid[0], v.mean(0))
    for bad in ([[0.7, 0.7]], [[1.5, -0.5]], [[1.0]]):
        with pytest.raises(TslensError):
            convex_combination(v, torch.tensor(bad))
    with pytest.raises(TslensError, match="patch mode"):
        with patching(None, torch.tensor([0]), torch.zeros(1, 8), mode="swap"):
            pass
