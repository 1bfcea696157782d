"""Head attribution and ablation: exactness of every fast path against the plain loop on the
GPT-2-small fixture, DLA adding up to the logits, and the CLI's outputs and errors."""

import json

import pytest
import torch

from tslens._reference import patched_answer_logprobs_loop
from tslens.analyses.head.ablation_study import head_importance, top_heads_per_task
from tslens.analyses.head.heads import all_heads, final_z, function_vector, task_shares
from tslens.analyses.head.logit_attribution import answer_first_tokens, direct_logit_attribution
from tslens.cli import main
from tslens.engine.ablation import ablated_answer_logprobs, head_statistics, resample_sources
from tslens.engine.patching import patched_answer_logprobs
from tslens.engine.scoring import answer_logprobs, prompt_token_ids
from tslens.prompts import build_mixture_prompts
from tslens.tasks import resolve_tasks


def _mixture(tasks="capital,continent", n=2, n_examples=4, **kw):
    prompts = build_mixture_prompts(resolve_tasks(tasks), None, n, n_examples, seed=0, **kw)
    return [p.text for p in prompts], [p.answers for p in prompts]


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("model_name", ["gpt2", "tiny_char"])
def test_dla_adds_up_to_the_models_logits(model_name, center, request):
    model = request.getfixturevalue(model_name)
    tasks = "capital,continent" if model_name == "gpt2" else "plus2,plus5"
    texts, answers = _mixture(tasks, n=3)
    tokens = answer_first_tokens(model, texts, answers)
    dla = direct_logit_attribution(model, texts, tokens, center=center, batch_size=2)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    assert dla.heads.shape == (3, 2, n_layers, n_heads) and dla.mlp.shape == (3, 2, n_layers)
    for i, text in enumerate(texts):  # the reference: one plain forward per prompt
        ids = torch.tensor([prompt_token_ids(model, [text])[0]])
        logits = model(ids)[0, -1].double()
        if center:
            logits = logits - logits.mean()
        expected = logits[torch.tensor(tokens[i])]
        assert torch.allclose(dla.logits[i], expected, atol=1e-4)
        assert torch.allclose(dla.total()[i], expected, atol=1e-3)
    if model_name == "tiny_char":  # bias-free: the attention bias contributes nothing
        assert dla.attn_bias.abs().max() == 0


def test_batched_head_patching_equals_the_per_head_loop(gpt2):
    # The fixture's random weights give answers P ~ 1e-19, so compare log-probabilities, with
    # patches large enough to move them far beyond the tolerance.
    clean_texts, answers = _mixture()
    corrupt_texts, _ = _mixture(shuffle_labels=True)
    layers, heads = all_heads(gpt2)
    pick = torch.arange(0, len(layers), 13)  # 12 heads spread over all layers
    clean = final_z(gpt2, clean_texts) * 30
    plain = answer_logprobs(gpt2, corrupt_texts, answers)
    options = dict(kind="z", heads=heads[pick])
    for vectors, per_prompt in [
        (clean[:, layers[pick], heads[pick]], True),  # each prompt's own clean activation
        (clean.mean(0)[layers[pick], heads[pick]], False),  # one vector for all (AIE)
    ]:
        args = (gpt2, corrupt_texts, answers, layers[pick], vectors)
        fast = patched_answer_logprobs(*args, **options, per_prompt=per_prompt, batch_size=5)
        loop = patched_answer_logprobs_loop(*args, **options, per_prompt=per_prompt)
        assert (fast - loop).abs().max() < 1e-3
        assert (loop - plain[:, None]).abs().max() > 1.0  # the patches do move the answers
    # a head patched with its own corrupted value changes nothing
    own = final_z(gpt2, corrupt_texts)[:, layers[pick], heads[pick]]
    same = patched_answer_logprobs(gpt2, corrupt_texts, answers, layers[pick], own, **options,
                                   per_prompt=True)  # fmt: skip
    assert (same - plain[:, None]).abs().max() < 1e-3


@pytest.mark.parametrize("kind", ["zero", "mean", "resample"])
def test_batched_head_importance_equals_ablating_one_head_at_a_time(shipped, kind):
    # the trained embedded model: its probability drops are large enough to compare
    texts, answers = _mixture("plus2,plus5", n=4, n_examples=8)
    stats = head_statistics(shipped, texts)
    importance = head_importance(shipped, texts, answers, kind, stats, seed=1)
    assert importance.shape == (2, 3, 4)
    assert importance.abs().max() > 0.05
    base = answer_logprobs(shipped, texts, answers).exp()
    for layer in range(3):
        for head in range(4):
            ablated = ablated_answer_logprobs(shipped, texts, answers, [(layer, head)], kind,
                                              "final", stats, seed=1).exp()  # fmt: skip
            expected = (base - ablated).mean(0)
            assert torch.allclose(importance[:, layer, head], expected, atol=1e-5)


def test_resample_from_an_identical_prompt_changes_nothing(tiny_char):
    texts, answers = _mixture("plus2,plus5", n=1, n_examples=5)
    texts, answers = texts * 2, answers * 2  # each copy's resample source is the other copy
    clean = answer_logprobs(tiny_char, texts, answers)
    for scope in ("final", "all"):
        ablated = ablated_answer_logprobs(tiny_char, texts, answers, [(0, 0), (1, 1)],
                                          "resample", scope)  # fmt: skip
        assert torch.allclose(ablated, clean, atol=1e-5)
    zero = ablated_answer_logprobs(tiny_char, texts, answers, [(0, 0), (1, 1)], "zero", "all")
    assert not torch.allclose(zero, clean, atol=1e-3)


def test_resample_sources_are_a_seeded_derangement():
    sources = resample_sources(7, seed=3)
    assert sorted(sources) == list(range(7)) and all(s != i for i, s in enumerate(sources))
    assert sources == resample_sources(7, seed=3)


def test_shuffled_labels_keep_inputs_query_and_answers():
    clean = build_mixture_prompts(resolve_tasks("plus2,plus5"), None, 3, 8, seed=4)
    shuffled = build_mixture_prompts(resolve_tasks("plus2,plus5"), None, 3, 8, 4,
                                     shuffle_labels=True)  # fmt: skip
    for a, b in zip(clean, shuffled, strict=True):
        assert (a.query, a.answers) == (b.query, b.answers)
        lines_a, lines_b = a.text.split("\n"), b.text.split("\n")
        assert [x.split(">")[0] for x in lines_a] == [x.split(">")[0] for x in lines_b]
        assert sorted(x.split(">")[1] for x in lines_a) == sorted(x.split(">")[1] for x in lines_b)
    assert any(a.text != b.text for a, b in zip(clean, shuffled, strict=True))


def test_task_shares_and_top_heads_per_task():
    scores = torch.zeros(2, 1, 3)
    scores[0, 0] = torch.tensor([1.0, 1.0, -1.0])
    scores[1, 0] = torch.tensor([0.0, 1.0, -2.0])
    shares, served = task_shares(scores)
    assert torch.allclose(shares[0, 0], torch.tensor([1.0, 0.0]))  # head 0 serves task 0 only
    assert torch.allclose(shares[0, 1], torch.tensor([0.5, 0.5]))  # head 1 serves both
    assert torch.allclose(served[0], torch.tensor([1.0, 2.0, 0.0]))
    # both tasks' best head is head 1; the K-head set still has K distinct heads
    importance = torch.tensor([[[1.0, 2.0, 0.0]], [[0.0, 3.0, 1.0]]])
    assert top_heads_per_task(importance) == [(0, 1), (0, 2)]


def test_function_vector_sums_the_top_heads_outputs(tiny_char):
    mean_z = torch.randn(tiny_char.cfg.n_layers, tiny_char.cfg.n_heads, tiny_char.cfg.d_head)
    scores = torch.zeros(tiny_char.cfg.n_layers, tiny_char.cfg.n_heads)
    scores[1, 0], scores[0, 1] = 2.0, 1.0
    vector, heads = function_vector(tiny_char, mean_z, scores, 2)
    assert heads == [(1, 0), (0, 1)]
    w_o = tiny_char.W_O.detach()
    assert torch.allclose(vector, mean_z[1, 0] @ w_o[1, 0] + mean_z[0, 1] @ w_o[0, 1], atol=1e-5)


def test_heads_and_ablate_cli_on_the_tiny_model(tiny_char_dir, tmp_path, capsys):
    model = ["--model", str(tiny_char_dir)]
    assert main(["heads", "--tasks", "plus2,plus5", "--n-prompts", "3", "--n-examples", "4",
                 *model, "--out", str(tmp_path / "h")]) == 0  # fmt: skip
    heads = json.loads((tmp_path / "h" / "heads.json").read_text())
    assert heads["methods"] == ["dla", "patch", "aie"] and heads["tasks"] == ["plus2", "plus5"]
    for method in heads["methods"]:
        scores = torch.tensor(heads["scores"][method])
        assert scores.shape == (2, 2, 2)  # [task, layer, head]
        assert torch.tensor(heads["shares"][method]).shape == (2, 2, 2)  # [layer, head, task]
        layer_shares = torch.tensor(heads["layer_shares"][method])  # [layer, task]
        assert layer_shares.shape == (2, 2)
        assert all(abs(sum(row) - 1) < 1e-6 or sum(row) == 0 for row in layer_shares.tolist())
    fv = heads["function_vectors"]["plus2"]
    assert len(fv["probs_by_layer"]) == 2 and len(fv["heads"]) == 1
    assert (tmp_path / "h" / "heads.html").stat().st_size > 10_000
    assert main(["ablate", "--tasks", "plus2,plus5,plus7", "--n-prompts", "4", "--n-examples",
                 "4", "--n-random", "2", *model, "--out", str(tmp_path / "a")]) == 0  # fmt: skip
    ablate = json.loads((tmp_path / "a" / "ablate.json").read_text())
    for condition in ("baseline", "one_head", "k_heads", "random"):
        assert len(ablate[condition]["probs"]) == 3 and 0 <= ablate[condition]["other"] <= 1
    assert len(ablate["one_head"]["heads"]) == 1 and len(ablate["k_heads"]["heads"]) == 3
    assert [len(s["tasks"]) for s in ablate["by_k"]] == [1, 2, 3]
    assert (tmp_path / "a" / "ablate.html").exists()
    assert main(["ablate", "--tasks", "plus2,plus5", "--heads", "1.0,0.1", "--kind", "zero",
                 "--n-prompts", "2", "--n-examples", "4", "--n-random", "1", *model,
                 "--out", str(tmp_path / "g")]) == 0  # fmt: skip
    given = json.loads((tmp_path / "g" / "ablate.json").read_text())
    assert given["k_heads"]["heads"] == [[1, 0], [0, 1]] and given["one_head"]["heads"] == [[1, 0]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["ablate", "--heads", "5.0"], "layer 5 is out of range"),
        (["ablate", "--heads", "0.9"], "layer 0 has heads 0..1"),
        (["ablate", "--heads", "x"], "cannot read head"),
        (["ablate", "--kind", "bogus"], "unknown ablation kind"),
        (["ablate", "--scope", "middle"], "unknown ablation scope"),
        (["ablate", "--kind", "resample", "--n-prompts", "1"], "at least 2 prompts"),
        (["heads", "--method", "dla,foo"], "unknown method 'foo'"),
    ],
)
def test_bad_input_exits_2_with_one_line(tiny_char_dir, tmp_path, capsys, args, message):
    argv = [*args, "--tasks", "plus2,plus5", "--model", str(tiny_char_dir), "--n-examples", "3",
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_top_heads_matter_more_than_random_heads_on_the_embedded_model(shipped):
    from tslens.analyses.head.ablation_study import ablation_study

    study = ablation_study(shipped, resolve_tasks("plus2,plus5"), kind="mean", n_prompts=40,
                           n_examples=20, n_random=5).to_json()  # fmt: skip
    for k in range(2):
        assert study["k_heads"]["probs"][k] < study["random"]["probs"][k] - 0.05
        assert study["one_head"]["probs"][k] < study["baseline"]["probs"][k] - 0.1
    assert study["k_heads"]["other"] > study["random"]["other"]


def test_every_task_heatmap_puts_layer_0_on_top():
    from tslens.report.heads import score_heatmaps

    scores = {"dla": [[[0.1, -0.2], [0.3, 0.0]], [[0.0, 0.5], [-0.1, 0.2]]]}
    figure = score_heatmaps({"tasks": ["a", "b"], "scores": scores}, "dla")
    axes = [figure.layout[name] for name in figure.layout if name.startswith("yaxis")]
    assert len(axes) == 2 and all(axis.autorange == "reversed" for axis in axes)
