"""Beam search over complete answers, checked against exhaustive enumeration on a tiny vocab."""

import itertools

import pytest
import torch

from tslens.analyses.prompt.mixture import tasks_solved
from tslens.engine.lens import as_lens
from tslens.engine.scoring import answer_logprobs
from tslens.engine.search import beam_complete_answers


def _exhaustive(model, prompt, alphabet, max_len):
    """Every answer of 1..max_len-1 alphabet characters followed by a newline, with its log-prob."""
    cands = ["".join(t) for n in range(1, max_len) for t in itertools.product(alphabet, repeat=n)]
    lp = answer_logprobs(model, [prompt], [[c + "\n" for c in cands]])[0]
    return {c: v.item() for c, v in zip(cands, lp, strict=True)}


def test_beam_finds_the_best_complete_answers(tiny_char):
    # A beam as wide as the vocabulary is exhaustive: with max_new_tokens=2 it sees every answer
    # of one character + newline, ranked by P(answer + newline), as enumeration does.
    vocab = [c for c in tiny_char.tokenizer.get_vocab() if len(c) == 1 and c != "\n"]
    prompt = "3>5\n4>"
    scores = _exhaustive(tiny_char, prompt, vocab, max_len=2)
    found = beam_complete_answers(tiny_char, [prompt], width=len(vocab), max_new_tokens=2)[0]
    assert found[:10] == sorted(scores, key=scores.get, reverse=True)[:10]
    # A narrow beam returns complete answers in the order of their probability.
    narrow = beam_complete_answers(tiny_char, [prompt], width=4, max_new_tokens=6)[0]
    lp = answer_logprobs(tiny_char, [prompt], [[a + "\n" for a in narrow]])[0]
    assert 0 < len(narrow) <= 4 and torch.all(lp[:-1] >= lp[1:] - 1e-6)


def test_tasks_solved_matches_definition(tiny_char):
    prompt = "1>2\n3>"
    answers = [["4", "9"]]
    lp = answer_logprobs(tiny_char, [prompt], answers)
    solved = tasks_solved(tiny_char, [prompt], answers, lp, width=20)
    cands = beam_complete_answers(tiny_char, [prompt], width=20, max_new_tokens=8)[0]
    everything = answer_logprobs(tiny_char, [prompt], [sorted(set(cands) | {"4", "9"})])[0]
    kth = everything.topk(2).values[-1]
    assert torch.equal(solved[0], lp[0] >= kth)


@pytest.mark.parametrize("max_new_tokens", [1, 3])
def test_branch_decoding_scores_its_answers_exactly(shipped, max_new_tokens):
    from tslens.engine.decoders import branch_complete_answers
    from tslens.engine.scoring import answer_logprobs
    from tslens.prompts import build_mixture_prompts
    from tslens.tasks import resolve_tasks

    prompts = build_mixture_prompts(resolve_tasks("plus2,plus5"), None, 3, 20, seed=0)
    texts = [p.text for p in prompts]
    found = branch_complete_answers(shipped, texts, width=3, max_new_tokens=max_new_tokens,
                                    finish_at_max=True)  # fmt: skip
    # the shipped model never learned to emit the newline: nothing completes without the flag
    assert branch_complete_answers(shipped, texts, width=3, max_new_tokens=2) == [[], [], []]
    for text, answers in zip(texts, found, strict=True):
        assert len(answers) == 3 and all(len(a) == max_new_tokens for a, _ in answers)
        assert len({a[0] for a, _ in answers}) == 3  # one branch per distinct first token
        probs = [p for _, p in answers]
        assert probs == sorted(probs, reverse=True)
        exact = answer_logprobs(shipped, [text], [[a for a, _ in answers]]).exp()[0]
        assert torch.allclose(torch.tensor(probs, dtype=torch.float64), exact, rtol=1e-4)


@pytest.mark.parametrize(
    ("model_name", "mode", "trust", "forward_batch"),
    [("shipped", "stop", True, None), ("shipped", "length", True, 1),
     ("shipped", "length", False, None), ("gpt2", "stop", True, 1), ("gpt2", "stop", False, None)],
)  # fmt: skip
def test_one_pass_tasks_solved_equals_the_three_pass_definition(
    model_name, mode, trust, forward_batch, request, monkeypatch
):
    import tslens.analyses.prompt.solved as solved_module
    from tslens.analyses.prompt.solved import score_and_solve
    from tslens.prompts import build_mixture_prompts
    from tslens.tasks import resolve_tasks

    monkeypatch.setattr(solved_module, "TRUST_BEAM_SCORES", trust)
    model = request.getfixturevalue(model_name)
    shipped = model_name == "shipped"  # its own template, which it solves
    prompts = build_mixture_prompts(resolve_tasks("plus2,plus5"), None, 6, 20 if shipped else 8,
                                    seed=3, template=None if shipped else "spaced")  # fmt: skip
    texts, answers = [p.text for p in prompts], [p.answers for p in prompts]
    # forward_batch=1: the packed forwards of a batch run one prompt each, their caches stacked
    options = dict(batch_size=3, complete_by=mode, forward_batch=forward_batch)
    logps, ends_by, solved = score_and_solve(model, texts, answers, **options)
    plain = answer_logprobs(model, texts, answers)
    assert ends_by == mode and (logps - plain).abs().max() < 1e-4
    assert torch.equal(solved, tasks_solved(model, texts, answers, plain, complete_by=mode))
    assert not shipped or 0 < solved.sum() < solved.numel()  # the comparison can tell


def test_answers_read_inside_their_newline_segments_equal_their_own_segments(gpt2):
    # score_and_solve scores each answer inside its answer+newline segment where the tokenizer
    # writes the newline after the answer's tokens; the reads must equal packing both.
    from tslens.analyses.prompt.solved import _with_prefix_reads
    from tslens.engine.packing import forward_packed, pack_answers, read_packed
    from tslens.engine.scoring import answer_token_ids, prompt_token_ids

    texts, answers = ["a b c:", "one two three four:"], [[" x", " yy"], [" zzz", " w"]]
    with_stop = [(*a, *(x + "\n" for x in a)) for a in answers]
    prompt_ids = prompt_token_ids(gpt2, texts)
    answer_ids = answer_token_ids(gpt2, texts, with_stop, prompt_ids)
    pad = as_lens(gpt2).pad_id
    both = pack_answers(prompt_ids, answer_ids, pad)
    alone = pack_answers(prompt_ids, [a[2:] for a in answer_ids], pad)
    with torch.inference_mode():
        separate = read_packed(forward_packed(gpt2, both), both.reads, 2, 4, greedy=False)[0]
        reads = _with_prefix_reads(alone.reads, 2)
        shared = read_packed(forward_packed(gpt2, alone), reads, 2, 4, greedy=False)[0]
    assert (separate - shared).abs().max() < 1e-5
    assert (separate[:, :2] - shared[:, 2:]).abs().min() > 1e-3  # the two halves differ


def test_beam_search_rows_do_not_depend_on_their_batch(gpt2):
    # beams of many prompts share one tree-attention row each; one prompt at a time must agree
    from tslens.engine.search import beam_search

    texts = ["a b c:", "one two three four five:", "x:"]
    together = beam_search(gpt2, texts, width=3, max_new_tokens=3, finish_at_max=True)
    alone = [beam_search(gpt2, [t], width=3, max_new_tokens=3, finish_at_max=True)[0]
             for t in texts]  # fmt: skip
    for a, b in zip(together, alone, strict=True):
        assert [c.text for c in a] == [c.text for c in b]
        assert max(abs(x.logprob - y.logprob) for x, y in zip(a, b, strict=True)) < 1e-5
