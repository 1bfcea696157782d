"""Issue 6: scaling across models, generation collapse, and decoding that keeps K answers."""

import json

import pytest
import torch

from tslens._reference import answer_logprobs_naive
from tslens.analyses.prompt.collapse import OTHER, generation_collapse
from tslens.analyses.prompt.decoding import compare_decoders
from tslens.analyses.prompt.mixture import measure_mixture, stop_probability
from tslens.analyses.prompt.scaling import check_tokenizers, parameter_count, scale_study
from tslens.cli import main
from tslens.engine.decoders import sample_complete_answers
from tslens.engine.scoring import answer_logprobs, answer_token_logprobs
from tslens.engine.search import beam_complete_answers
from tslens.errors import TslensError
from tslens.prompts import build_mixture_prompts, load_prompt_file
from tslens.tasks import resolve_tasks


def _mixture(tasks, n, n_examples=20, seed=0, weights=None):
    task_list = resolve_tasks(tasks)
    weights = weights or [1 / len(task_list)] * len(task_list)
    prompts = build_mixture_prompts(task_list, weights, n, n_examples, seed)
    return [p.text for p in prompts], [list(p.answers) for p in prompts]


def test_per_token_logprobs_sum_to_the_exact_answer_logprob(gpt2):
    prompts, answers = _mixture("capital,continent", 2, n_examples=3)
    tokens = answer_token_logprobs(gpt2, prompts, answers)
    naive = answer_logprobs_naive(gpt2, prompts, answers)
    for i, row in enumerate(tokens):
        for k, lps in enumerate(row):
            assert len(lps) == len(
                gpt2.tokenizer(answers[i][k], add_special_tokens=False)["input_ids"]
            )
            assert lps.sum().item() == pytest.approx(naive[i, k].item(), abs=1e-3)


def test_greedy_and_sampled_decodes_are_scored_exactly_and_seeded(gpt2):
    prompts, _ = _mixture("capital,continent", 2, n_examples=3)
    greedy = sample_complete_answers(gpt2, prompts, 1, 0.0, max_new_tokens=4, finish_at_max=True)
    sampled = sample_complete_answers(gpt2, prompts, 3, 1.0, max_new_tokens=4, seed=7,
                                      finish_at_max=True)  # fmt: skip
    again = sample_complete_answers(gpt2, prompts, 3, 1.0, max_new_tokens=4, seed=7,
                                    finish_at_max=True)  # fmt: skip
    assert sampled == again  # same seed, same samples
    for i, prompt in enumerate(prompts):
        texts = [t for t, _ in greedy[i] + sampled[i] if t]
        probs = [p for t, p in greedy[i] + sampled[i] if t]
        exact = answer_logprobs(gpt2, [prompt], [texts], boundary="drop")[0].exp()
        for text, p, q in zip(texts, probs, exact.tolist(), strict=True):
            if q > 0:  # a decoded text that re-tokenizes differently is dropped by the scorer
                assert p == pytest.approx(q, rel=1e-3), text
    # greedy: each generated token is the argmax, so the scorer calls it greedy
    from tslens.engine.scoring import answer_is_greedy

    text = greedy[0][0][0]
    assert answer_is_greedy(gpt2, prompts[:1], [[text]])[0, 0]


def test_shipped_model_does_not_end_answers_so_solved_uses_answer_length(shipped):
    prompts, answers = _mixture("ret2,ret6", 8)
    assert stop_probability(shipped, prompts, answers) < 0.5
    # by length, the K-th best one-token continuation sets the bar
    found = beam_complete_answers(shipped, prompts, 4, max_new_tokens=1, finish_at_max=True)
    assert all(len(f) == 4 and all(len(a) == 1 for a in f) for f in found)
    result = measure_mixture(shipped, "ret2,ret6", n_prompts=8, n_examples=20)
    assert result.settings["complete_by"] == "length"
    assert result.solved.sum(-1).double().mean() < 2  # the last-demo follower solves ~1


def test_branch_decoding_keeps_the_greedy_answer_and_scores_every_branch(shipped):
    prompts, answers = _mixture("plus2,plus5", 12)
    out = compare_decoders(shipped, prompts, answers, width=3, max_new_tokens=1, finish_at_max=True)
    summary, rows = out["summary"], out["per_prompt"]
    assert summary["greedy"]["mean_recovered"] <= 1
    for row in rows:
        branches = [b["answer"] for b in row["branch"]]
        assert len(branches) == 3 and set(row["greedy"]) <= set(branches)
        assert row["recovered"]["branch"] >= row["recovered"]["greedy"]
    assert summary["branch"]["mean_recovered"] >= summary["beam"]["mean_recovered"] - 1e-9
    assert summary["branch"]["mean_recovered"] > summary["greedy"]["mean_recovered"]
    probs = [[b["prob"] for b in r["branch"]] for r in rows]
    texts = [[b["answer"] for b in r["branch"]] for r in rows]
    exact = answer_logprobs(shipped, prompts, texts).exp()
    assert torch.allclose(torch.tensor(probs, dtype=torch.float64), exact, atol=1e-5)
    with pytest.raises(TslensError, match="width"):
        compare_decoders(shipped, prompts, [a + ["x"] for a in answers], width=2)


def test_generation_collapse_numbers_agree_with_the_scorer(shipped):
    result = generation_collapse(shipped, "ret2,ret6", n_prompts=12, n_samples=6,
                                 max_new_tokens=1, finish_at_max=True)  # fmt: skip
    summary = result.summary()
    exact = answer_logprobs(shipped, [p.text for p in result.prompts],
                            [list(p.answers) for p in result.prompts]).exp()  # fmt: skip
    assert torch.allclose(result.step1_mass.double(), exact, atol=1e-5)
    # one-token answers: the first token is the answer, the greedy decode its argmax
    assert summary["conditional"]["ret2"][0] == pytest.approx(exact[:, 0].mean().item(), abs=1e-5)
    top = exact.argmax(-1)
    decided = exact.max(-1).values > 0.5
    assert torch.equal(result.greedy[decided], top[decided])
    assert summary["tasks_per_prompt_greedy"] <= 1
    assert OTHER not in result.greedy.tolist() or exact.sum(-1).min() < 0.5
    again = generation_collapse(shipped, "ret2,ret6", n_prompts=12, n_samples=6,
                                max_new_tokens=1, finish_at_max=True)  # fmt: skip
    assert torch.equal(result.sampled, again.sampled)


def test_scale_study_measures_the_same_prompts_on_each_model(shipped, tiny_char_dir):
    models = ["tslens-char-3l4h", str(tiny_char_dir)]
    study = scale_study(
        models, "plus2,plus5", [[0.5, 0.5], [0.7, 0.3]], n_prompts=8,
        load=lambda spec: shipped if spec == models[0] else _load(spec),
    )  # fmt: skip
    rows = study.rows
    assert [r["model"] for r in rows] == models and study.settings["token_level"]
    # 3 layers x (4 x 96^2 + 3 x 96 x 384 + 2 x 96) + final norm 96 + embed/unembed 2 x 100 x 96
    assert rows[0]["params"]["total"] == 462240
    assert rows[0]["params"]["total"] > rows[1]["params"]["total"] > 0
    shipped_probs = measure_mixture(shipped, "plus2,plus5", [0.7, 0.3], 8, 20, solved=False)
    assert rows[0]["mixtures"][1]["mean_probs"] == pytest.approx(
        shipped_probs.summary()["mean_probs"]
    )
    assert rows[0]["mixtures"][1]["weights"] == [0.7, 0.3]
    assert rows[0]["accuracy"] == {"plus2": 1.0, "plus5": 1.0}
    assert set(rows[1]["mixtures"][0]) >= {"kl", "kl_of_means", "mean_tasks_solved", "other"}


def _load(spec):
    from tslens.sources.loader import load_model

    return load_model(spec, device="cpu")


def test_parameter_count_leaves_out_embeddings(gpt2):
    counts = parameter_count(gpt2)
    assert counts["total"] == 124439808  # GPT-2 small, tied unembedding counted once
    assert counts["non_embedding"] == 124439808 - 50257 * 768 - 1024 * 768


def test_token_level_metrics_across_tokenizers_are_refused(tmp_path):
    fingerprints = check_tokenizers(["tslens-char-3l4h", "gpt2-small-random"])
    assert fingerprints[0] != fingerprints[1]
    with pytest.raises(TslensError, match="share a tokenizer"):
        scale_study(["tslens-char-3l4h", "gpt2-small-random"], "plus2,plus5", token_level=True)
    args = ["scale", "--models", "tslens-char-3l4h,gpt2-small-random", "--tasks", "plus2,plus5",
            "--token-level", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    assert main(["scale", "--models", " , ", "--tasks", "plus2,plus5", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "scale.json").exists()


def test_scale_cli_writes_json_and_html(tmp_path, tiny_char_dir):
    args = ["scale", "--models", f"tslens-char-3l4h,{tiny_char_dir}", "--tasks", "ret2,ret6",
            "--weights", "0.5,0.5", "0.7,0.3", "--n-prompts", "4",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    data = json.loads((tmp_path / "scale.json").read_text())
    assert [len(m["mixtures"]) for m in data["models"]] == [2, 2]
    assert "first_token" in data["models"][0]["mixtures"][0]
    assert "plotly" in (tmp_path / "scale.html").read_text()


def test_decode_cli_from_tasks_and_from_a_prompt_file(tmp_path, capsys):
    out = tmp_path / "tasks"
    assert main(["decode", "--tasks", "ret2,ret6", "--n-prompts", "6", "--n-samples", "3",
                 "--width", "2", "--out", str(out)]) == 0  # fmt: skip
    data = json.loads((out / "decode.json").read_text())
    assert data["until"] == "length" and data["collapse"]["n_samples"] == 3
    assert set(data["decoding"]["summary"]) == {"greedy", "beam", "branch"}
    assert (out / "decode.html").exists()
    prompts, answers = _mixture("ret2,ret6", 2)
    rows = tmp_path / "prompts.jsonl"
    rows.write_text("\n".join(json.dumps({"prompt": p, "answers": a})
                              for p, a in zip(prompts, answers, strict=True)))  # fmt: skip
    assert load_prompt_file(rows) == (prompts, answers)
    assert main(["decode", "--prompt-file", str(rows), "--out", str(tmp_path / "file")]) == 0
    assert main(["decode", "--tasks", "ret1,ret2,ret3", "--width", "2",
                 "--out", str(tmp_path / "bad")]) == 2  # fmt: skip
    assert "raise --width" in capsys.readouterr().err
    text = tmp_path / "one.txt"
    text.write_text(prompts[0] + "\n")
    assert load_prompt_file(text) == ([prompts[0]], None)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n')
    assert main(["decode", "--prompt-file", str(bad), "--out", str(tmp_path / "b")]) == 2


def test_two_token_answers_collapse_and_branch_decoding_keeps_both(tmp_path):
    pair = _load("tslens-char-pair")  # trained with the separator loss: it ends its answers
    prompts, answers = _mixture("pair1,pair4", 12, seed=3)
    assert stop_probability(pair, prompts, answers) > 0.5
    out = compare_decoders(pair, prompts, answers, width=4, max_new_tokens=4)
    s = out["summary"]
    assert s["greedy"]["mean_recovered"] <= 1
    assert s["branch"]["mean_recovered"] > s["greedy"]["mean_recovered"]
    result = generation_collapse(pair, "pair1,pair4", n_prompts=12, n_samples=8, seed=3)
    summary = result.summary()
    for task in ("pair1", "pair4"):
        conditional, consistent = summary["conditional"][task], summary["consistent"][task]
        assert len(conditional) == 2 and consistent[1] <= consistent[0] + 1e-9
    step1 = result.step1_mass
    exact = answer_logprobs(pair, prompts, answers).exp()
    assert torch.allclose(step1.double(), exact, atol=1e-5)
    assert summary["tasks_per_prompt_greedy"] <= 1
