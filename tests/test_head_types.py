"""Head typing (issue 25): the induction probe against a plain loop over attention patterns,
exact per-position head patching against one plain forward per variant on every architecture,
attribution patching against finite differences, the FV-vs-induction head sets, and the CLI."""

import json

import pytest
import torch

from tslens._reference import answer_logprobs_naive, demonstration_effects_naive
from tslens.analyses.head.atp import (
    agreement,
    exact_position_effects,
    gradient_estimates,
    top_overlap,
)
from tslens.analyses.head.averaging import averaging_test
from tslens.analyses.head.fv_vs_induction import head_sets
from tslens.analyses.head.induction import copying_scores, random_repeated_tokens
from tslens.analyses.head.types import evenness
from tslens.analyses.prompt.demonstrations import build_demo_prompts, demonstration_effects
from tslens.cli import main
from tslens.doctor.tiny import write_tiny_gemma
from tslens.engine.ablation import head_statistics
from tslens.hooks.ablate import ablating
from tslens.hooks.names import hook_name
from tslens.prompts import PromptSpec
from tslens.sources.loader import load_model
from tslens.tasks import resolve_tasks


@pytest.fixture(scope="module")
def gemma_like(tmp_path_factory):
    return load_model(str(write_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma"))), device="cpu")


def _demo_prompts(model, tasks, n_prompts=1, n_examples=3, template=None):
    prompts, _, spans = build_demo_prompts(
        model, resolve_tasks(tasks), PromptSpec(n_prompts, n_examples, 0, template)
    )
    return [p.text for p in prompts], [p.answers for p in prompts], spans


CASES = {
    "gpt2": ("capital,continent", None),
    "gemma_like": ("plus2,plus5", "spaced"),
    "tiny_char": ("plus2,plus5", None),
}


# --- the induction probe ------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["tiny_char", "gemma_like"])
def test_copying_scores_equal_a_loop_over_the_patterns(model_name, request):
    model = request.getfixturevalue(model_name)
    fast = copying_scores(model, n_sequences=3, length=6, seed=2, batch_size=2)
    tokens = random_repeated_tokens(model, 3, 6, seed=2)
    assert tokens.shape[1] in (12, 13) and (tokens[:, -6:] == tokens[:, -12:-6]).all()
    start = tokens.shape[1] - 12
    induction = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.float64)
    previous = torch.zeros_like(induction)
    for row in tokens:
        patterns = {}

        def keep(act, hook, patterns=patterns):
            patterns[hook.name] = act[0].double()

        names = [(hook_name("pattern", layer), keep) for layer in range(model.cfg.n_layers)]
        with torch.no_grad(), model.hooks(fwd_hooks=names):
            model(row[None])
        for layer in range(model.cfg.n_layers):
            p = patterns[hook_name("pattern", layer)]  # [head, query, key]
            for h in range(model.cfg.n_heads):
                q_ind = range(start + 6, start + 12)
                induction[layer, h] += sum(p[h, q, q - 5] for q in q_ind) / 6 / 3
                q_prev = range(start + 1, start + 12)
                previous[layer, h] += sum(p[h, q, q - 1] for q in q_prev) / 11 / 3
    assert torch.allclose(fast.induction.double(), induction, atol=1e-5)
    assert torch.allclose(fast.previous_token.double(), previous, atol=1e-5)


def test_evenness_is_one_for_an_even_spread_and_low_for_one_demonstration():
    mass = torch.zeros(2, 1, 2, 4)
    mass[:, 0, 0] = 0.2  # head 0: even over 4 demonstrations
    mass[:, 0, 1, 3] = 0.5  # head 1: all on one
    total, even = evenness(mass)
    assert torch.allclose(total, torch.tensor([[0.8, 0.5]]))
    assert even[0, 0] == pytest.approx(1.0) and even[0, 1] == pytest.approx(0.25)


# --- exact per-position head patching -----------------------------------------------------


def _naive_effect(model, text, answers, span, layer, head, mean):
    base = answer_logprobs_naive(model, [text], [answers])
    with ablating(model, {(layer, head): mean}, columns=torch.tensor(span)):
        patched = answer_logprobs_naive(model, [text], [answers])
    return (patched - base)[0]


def _check_exact(model, texts, answers, spans, picks):
    means = head_statistics(model, texts).mean_all
    fast = exact_position_effects(model, texts, answers, spans, means, batch_size=2)
    n = model.cfg
    assert fast.shape == (len(texts), len(answers[0]), n.n_layers, n.n_heads, len(spans[0]))
    for p, layer, head, j in picks:
        slow = _naive_effect(model, texts[p], answers[p], spans[p][j], layer, head,
                             means[layer, head])  # fmt: skip
        assert (fast[p, :, layer, head, j] - slow).abs().max() <= 2e-5
    assert fast.abs().max() > 1e-3  # the ablations do something
    return fast, means


@pytest.mark.parametrize("model_name", list(CASES))
def test_exact_position_patching_equals_one_forward_per_variant(model_name, request):
    model = request.getfixturevalue(model_name)
    tasks, template = CASES[model_name]
    n = 1 if model_name == "gpt2" else 2  # GPT-2 small: 288 variants of one prompt, ~10 s
    texts, answers, spans = _demo_prompts(model, tasks, n, 2, template)
    last = model.cfg.n_layers - 1
    picks = [(0, 0, 0, 0), (n - 1, last, model.cfg.n_heads - 1, 1), (n - 1, last // 2, 0, 1)]
    _check_exact(model, texts, answers, spans, picks)


def test_exact_position_patching_on_grouped_query_attention(tmp_path, monkeypatch):
    from tiny_gguf import build_llama, write_gguf

    monkeypatch.setenv("TSLENS_CACHE", str(tmp_path / "cache"))
    model = load_model(str(write_gguf(build_llama(), tmp_path / "tiny.gguf")), device="cpu")
    texts = ["the cat -> a\nthe rat -> an\nant ->", "a -> the\nrat ->"]
    answers = [[" the", " a"], [" an", " a rat"]]
    bos = 1 if model.cfg.default_prepend_bos and model.tokenizer.bos_token_id is not None else 0
    spans = [[list(range(bos, bos + 3)), list(range(bos + 3, bos + 7))]] * 2  # byte tokens
    _check_exact(model, texts, answers, spans, [(0, 0, 1, 0), (1, 1, 3, 1)])


@pytest.mark.parametrize("model_name", ["tiny_char", "gemma_like"])
def test_deletions_with_a_head_ablated_equal_the_plain_loop(model_name, request):
    """The averaging test's claim: a position-independent ablation keeps the cached-
    continuation deletion engine exact (every forward, prefix or row, sees the same head)."""
    model = request.getfixturevalue(model_name)
    tasks, template = CASES[model_name]
    tasks = resolve_tasks(tasks)
    spec = PromptSpec(2, 4, 0, template)
    intact = demonstration_effects(model, tasks, **spec.arguments())
    means = head_statistics(model, [p.text for p in intact.prompts]).mean_all
    with ablating(model, {(1, 0): means[1, 0]}):
        fast = demonstration_effects(model, tasks, **spec.arguments())
        slow = demonstration_effects_naive(model, fast)
    stacked = torch.cat([fast.base[:, None], fast.without_demo, fast.without_task], 1)
    assert (stacked.log() - slow.log()).abs().max() <= 1e-4
    assert (fast.base.log() - intact.base.log()).abs().max() > 1e-2  # the ablation acts


def test_averaging_test_measures_three_conditions(tiny_char):
    tasks = resolve_tasks("plus2,plus5")
    got = averaging_test(tiny_char, tasks, [(1, 0)], PromptSpec(2, 4, 0))
    assert set(got["conditions"]) == {"intact", "ablated", "control"}
    assert tuple(got["control"]) != (1, 0) and got["even_share"] == [0.5, 0.5]
    change = got["change"]["ablated"]["nearest_share"]
    for k, value in enumerate(change):
        before = got["conditions"]["intact"]["nearest_share"][k]
        after = got["conditions"]["ablated"]["nearest_share"][k]
        assert value == (None if before is None or after is None else pytest.approx(after - before))


# --- attribution patching -----------------------------------------------------------------


def _scaled(model, layer, head, cols, mean, eps):
    """A hook moving one head's z a fraction eps of the way to its mean at ``cols``."""

    def hook(act, hook):
        act = act.clone()
        act[:, cols, head] = act[:, cols, head] + eps * (mean - act[:, cols, head])
        return act

    return model.hooks(fwd_hooks=[(hook_name("z", layer), hook)])


@pytest.mark.parametrize("model_name", ["gpt2", "gemma_like"])
def test_atp_is_the_derivative_of_the_exact_effect(model_name, request):
    """AtP's estimate is the first-order term: a central finite difference of the exact
    effect along the same direction agrees with it."""
    model = request.getfixturevalue(model_name)
    tasks, template = CASES[model_name]
    texts, answers, spans = _demo_prompts(model, tasks, 2, 3, template)
    means = head_statistics(model, texts).mean_all
    atp = gradient_estimates(model, texts, answers, spans, means, "atp", batch_size=2)
    assert atp.shape == (2, 2, model.cfg.n_layers, model.cfg.n_heads, 3)
    flat = atp[0].flatten()
    eps = 1e-2
    checked = 0
    for index in flat.abs().topk(4).indices.tolist():
        k, layer, head, j = torch.unravel_index(torch.tensor(index), atp.shape[1:])
        k, layer, head, j = int(k), int(layer), int(head), int(j)
        mean, cols = means[layer, head], spans[0][j]
        with _scaled(model, layer, head, cols, mean, eps):
            up = answer_logprobs_naive(model, texts[:1], answers[:1])[0, k]
        with _scaled(model, layer, head, cols, mean, -eps):
            down = answer_logprobs_naive(model, texts[:1], answers[:1])[0, k]
        derivative = float(up - down) / (2 * eps)
        assert derivative == pytest.approx(float(flat[index]), rel=0.03, abs=1e-4)
        checked += 1
    assert checked == 4 and flat.abs().max() > 1e-3


def test_ig_and_agreement_report_on_the_gpt2_fixture(gpt2):
    """IG costs more forwards and gives another estimate; the agreement report is computed,
    whatever it says (the linear approximation's error is reported, not asserted small)."""
    texts, answers, spans = _demo_prompts(gpt2, "capital,continent", 1, 2)
    means = head_statistics(gpt2, texts).mean_all
    atp = gradient_estimates(gpt2, texts, answers, spans, means, "atp")
    ig = gradient_estimates(gpt2, texts, answers, spans, means, "ig", steps=4)
    exact = exact_position_effects(gpt2, texts, answers, spans, means)
    assert not torch.allclose(atp, ig)
    for estimate in (atp, ig):
        report = agreement(estimate.mean(0), exact.mean(0))
        assert len(report) == 2
        for entry in report:
            assert -1 <= entry["spearman_heads"] <= 1 and 0 <= entry["top10_variants"] <= 1
            assert entry["relative_error"] >= 0


def test_top_overlap_counts_shared_largest_magnitudes():
    a = torch.tensor([5.0, -4.0, 0.1, 0.2])
    assert top_overlap(a, torch.tensor([-9.0, 3.0, 0.0, 0.0]), 2) == 1.0
    assert top_overlap(a, torch.tensor([0.0, 0.0, 1.0, 1.0]), 2) == 0.0


# --- the FV vs induction head sets ----------------------------------------------------------


def test_head_sets_exclude_the_overlap_and_keep_the_sets_apart():
    fv = torch.tensor([[9.0, 8.0, 1.0], [7.0, 0.5, 0.2], [0.1, 0.0, 6.0]])
    induction = torch.tensor([[9.0, 0.0, 8.0], [0.1, 7.0, 0.2], [6.0, 0.3, 0.4]])
    sets = head_sets(fv, induction, ns=(1, 2), seed=0)
    assert sets["overlap"] == [(0, 0)]  # top-2 of both
    assert sets["fv"][2] == [(0, 1), (1, 0)] and sets["induction"][2] == [(0, 2), (1, 1)]
    for n in (1, 2):
        fv_set, ind_set, rand = (set(sets[s][n]) for s in ("fv", "induction", "random"))
        assert not fv_set & ind_set and not rand & (fv_set | ind_set) and len(rand) == n
        assert (0, 0) not in fv_set | ind_set | rand
    assert head_sets(fv, induction, (1, 2), seed=0) == sets  # seeded


# --- the CLI --------------------------------------------------------------------------------


def test_heads_types_cli_on_the_char_model(tiny_char_dir, tmp_path, capsys):
    out = tmp_path / "types"
    code = main(
        [
            "types",
            "--model",
            str(tiny_char_dir),
            "--tasks",
            "plus2,plus5",
            "--n-prompts",
            "3",
            "--n-examples",
            "4",
            "--ns",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads((out / "types.json").read_text())
    assert len(result["heads"]) == 4 and {"induction", "fv", "role"} <= set(result["heads"][0])
    assert set(result["fv_vs_induction"]["conditions"]) == {"fv", "induction", "random"}
    assert (out / "types.html").stat().st_size > 10_000
    assert "FV vs induction" in capsys.readouterr().out


def test_atp_cli_on_the_char_model(tiny_char_dir, tmp_path, capsys):
    out = tmp_path / "atp"
    code = main(
        [
            "atp",
            "--model",
            str(tiny_char_dir),
            "--tasks",
            "plus2,plus5",
            "--n-prompts",
            "2",
            "--n-examples",
            "3",
            "--steps",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads((out / "atp.json").read_text())
    assert set(result["agreement"]) == {"atp", "ig"} and len(result["exact"]) == 2
    assert "spearman" in capsys.readouterr().out


def test_demos_ablate_cli_on_the_char_model(tiny_char_dir, tmp_path):
    out = tmp_path / "demos"
    code = main(
        [
            "demos",
            "--model",
            str(tiny_char_dir),
            "--tasks",
            "plus2,plus5",
            "--n-prompts",
            "3",
            "--n-examples",
            "4",
            "--ablate",
            "1.0",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads((out / "demos.json").read_text())
    test = result["averaging_test"]
    assert test["heads"] == [[1, 0]] and set(test["conditions"]) == {"intact", "ablated", "control"}
    assert test["conditions"]["intact"]["nearest_share"] == result["nearest_share"]
