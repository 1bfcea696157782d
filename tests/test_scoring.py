"""The fast scorer against the plain one-forward-per-answer reference, and tokenization edges."""

import itertools

import pytest
import torch

from tslens._reference import answer_logprobs_naive
from tslens.engine.scoring import (
    TokenBoundaryError,
    answer_is_greedy,
    answer_logprobs,
    prompt_token_ids,
)
from tslens.errors import TslensError
from tslens.prompts import build_mixture_prompts
from tslens.tasks import resolve_tasks


def _check_same(fast, slow):
    assert fast.shape == slow.shape
    finite = torch.isfinite(slow)
    assert torch.equal(finite, torch.isfinite(fast))
    assert (fast[finite] - slow[finite]).abs().max() <= 1e-4  # log-prob, float32 forwards
    assert (fast.exp() - slow.exp()).abs().max() <= 1e-5


def test_fast_equals_naive_on_gpt2_k4_multitoken(gpt2):
    tasks = resolve_tasks("capital,continent,upper,currency")
    prompts = build_mixture_prompts(tasks, n_prompts=5, n_examples=8, seed=0)
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    lengths = [len(ids) for ids in gpt2.tokenizer([a for ans in answers for a in ans])["input_ids"]]
    assert max(lengths) >= 3  # multi-token answers really are exercised
    fast = answer_logprobs(gpt2, texts, answers, batch_size=3)  # a ragged last batch too
    _check_same(fast, answer_logprobs_naive(gpt2, texts, answers))


def test_ragged_answers_and_leading_space(gpt2):
    texts = ["Nepal-> Kathmandu\nFrance->", "Q: Nepal\nA:"]
    answers = [[" Paris", " Lyon", "Paris"], [" Kathmandu"]]
    fast = answer_logprobs(gpt2, texts, answers)
    assert fast.shape == (2, 3) and fast[1, 1:].eq(float("-inf")).all()
    _check_same(fast, answer_logprobs_naive(gpt2, texts, answers))


def test_answer_tokens_are_the_continuation(gpt2):
    ids = prompt_token_ids(gpt2, ["Nepal->", "Nepal-> Kathmandu"])
    assert ids[0][0] == gpt2.tokenizer.bos_token_id  # the bridge prepends BOS for GPT-2
    assert ids[1][: len(ids[0])] == ids[0] and len(ids[1]) - len(ids[0]) >= 2  # " Kathmandu"


def test_boundary_merge_is_detected_not_silently_scored(gpt2):
    # "France: " + "Paris" tokenizes as "France:" + " Paris": the prompt's trailing space token
    # is not a prefix of prompt+answer.
    with pytest.raises(TokenBoundaryError, match="task capital: answer 'Paris'"):
        answer_logprobs(gpt2, ["France: "], [["Paris"]], labels=["capital"])
    # "France:" + ":" becomes the single token "::"
    with pytest.raises(TokenBoundaryError):
        answer_logprobs(gpt2, ["France:"], [[" Paris", ":"]])
    dropped = answer_logprobs(gpt2, ["France:"], [[":", " Paris"]], boundary="drop")
    assert dropped[0, 0] == float("-inf") and torch.isfinite(dropped[0, 1])


def test_prompt_longer_than_context_is_refused(gpt2):
    with pytest.raises(TslensError, match="longer than the model's context of 1024"):
        answer_logprobs(gpt2, [" a b" * 700], [[" c"]])


def test_char_model_probabilities_form_a_distribution(tiny_char):
    # Single-character answers get exactly the next-token softmax of a direct forward pass,
    # and together all the mass that is not on special tokens.
    vocab = tiny_char.tokenizer.get_vocab()
    chars = [c for c in vocab if len(c) == 1]
    lp = answer_logprobs(tiny_char, ["3>5\n4>"], [chars])[0]
    ids = torch.tensor([prompt_token_ids(tiny_char, ["3>5\n4>"])[0]])
    softmax = tiny_char(ids)[0, -1].softmax(-1).double()
    expected = softmax[[vocab[c] for c in chars]]
    assert torch.allclose(lp.exp(), expected, atol=1e-6)
    special = softmax[[vocab[t] for t in tiny_char.tokenizer.all_special_tokens]].sum()
    assert lp.exp().sum().item() == pytest.approx(1.0 - special.item(), abs=1e-5)
    # and a two-character answer is the chain-rule product of its characters
    two = answer_logprobs(tiny_char, ["3>5\n4>", "3>5\n4>6"], [["6\n"], ["\n"]])
    first = answer_logprobs(tiny_char, ["3>5\n4>"], [["6"]])
    assert two[0, 0].item() == pytest.approx(first[0, 0].item() + two[1, 0].item(), abs=1e-5)


def test_fast_equals_naive_on_rotary_char_model(tiny_char):
    prompts = ["1>2\n3>", "abcdefgh>c\nqwertyui>", "5>"]
    answers = [["4", "45", "4\n"], ["e", "ee"], ["".join(p) for p in itertools.product("67", "89")]]
    fast = answer_logprobs(tiny_char, prompts, answers, batch_size=2)
    _check_same(fast, answer_logprobs_naive(tiny_char, prompts, answers))


def test_greedy_match_agrees_with_step_by_step_argmax_decoding(gpt2):
    texts = ["The capital of France ->", "one two ->"]
    greedy_answers = []
    for text in texts:
        ids = prompt_token_ids(gpt2, [text])[0]
        new = []
        with torch.inference_mode():
            for _ in range(2):
                new.append(int(gpt2(torch.tensor([ids + new]))[0, -1].argmax()))
        greedy_answers.append(gpt2.tokenizer.decode(new))
    answers = [[g, " Paris"] for g in greedy_answers]
    hits = answer_is_greedy(gpt2, texts, answers)
    assert hits[:, 0].all() and not hits[:, 1].any(), (greedy_answers, hits)
