"""The claims registry and ``tslens reproduce``: the rule language, verdicts (including "not
testable here"), the Fig. 2 presets and the a@b generator, and ``reproduce --quick`` end to
end on the shipped char model and the GPT-2 fixture."""

import json
import math
import random

import numpy as np
import pytest
import torch

from tslens.claims.measure import KINDS
from tslens.claims.registry import (
    VERDICTS,
    Claim,
    evaluate,
    holds,
    load_registry,
    split_rule,
    verdict,
)
from tslens.claims.schema import STATISTICS
from tslens.cli import main
from tslens.errors import TslensError
from tslens.presets import get_preset, presets
from tslens.tasks import resolve_tasks


def test_the_rule_language():
    assert split_rule("pair.min_accuracy >= 0.2") == ("pair.min_accuracy", ">=", [0.2])
    assert split_rule("in 0.7 1.3") == ("", "in", [0.7, 1.3])
    assert holds(">= 0.5", 0.5) and not holds(">= 0.5", 0.49) and holds("<= -0.2", -0.3)
    assert holds("in 0.7 1.3", 1.0) and not holds("in 0.7 1.3", 1.31)
    assert not holds(">= 0", math.nan)
    for bad in (">= x", "about 3", "in 1"):
        with pytest.raises(TslensError, match="cannot read rule"):
            split_rule(bad)
    stats = {"a": {"x": 0.75, "y": 0.25, "s": "text", "r": [0.5, 1.0]}}
    assert evaluate("a.x - a.y", stats) == 0.5 and evaluate("a.x / (a.y * 3)", stats) == 1.0
    assert math.isnan(evaluate("a.s", stats)) and math.isnan(evaluate("a.x / 0", stats))
    assert list(evaluate("a.r * 2 - a.y", stats)) == [0.75, 1.75]
    with pytest.raises(TslensError, match="cannot read statistic"):
        evaluate("__import__('os')", stats)


def record(values: dict, replicates: dict | None = None, reasons: dict | None = None) -> dict:
    """A measurement's record as :func:`tslens.claims.intervals.summarize` writes it."""
    replicates = replicates or {k: [v] * 10 for k, v in values.items()}
    return {"values": values, "replicates": replicates, "reasons": reasons or {},
            "n_prompts": {"prompts": 10}, "seeds": 1}  # fmt: skip


def test_verdicts_read_the_interval_and_name_their_number_and_rule():
    claim = Claim(id="c", source="s", statement="t", statistic="m.v", reads="r",
                  reproduced=">= 0.5", partly=">= 0.2", testable_if=("m.acc >= 0.3",))  # fmt: skip

    def judge(v, acc=1.0, spread=0.0):
        reps = {"v": list(np.linspace(v - spread, v + spread, 41)), "acc": [acc] * 41}
        return verdict(claim, {"m": record({"v": v, "acc": acc}, reps)})

    assert judge(0.6)["verdict"] == "reproduced" and judge(0.6)["interval"] == [0.6, 0.6]
    assert (judge(0.3)["verdict"], judge(0.3)["rule"]) == ("partly", ">= 0.2")
    assert judge(0.1)["verdict"] == "not reproduced"
    # the interval decides: a point above the threshold with an interval across it is not
    # "reproduced"; one across the weakest rule is "inconclusive"
    assert judge(0.6, spread=0.2)["verdict"] == "partly"
    wide = judge(0.3, spread=0.2)
    assert wide["verdict"] == "inconclusive" and "straddles >= 0.2" in wide["rule"]
    assert judge(0.1, spread=0.05)["verdict"] == "not reproduced"
    low = judge(0.9, acc=0.1)
    assert low["verdict"] == "not testable here" and "needs m.acc >= 0.3" in low["why"]
    gone = verdict(claim, {"m": {"unavailable": "prompt too long"}})
    assert gone["verdict"] == "not testable here" and "prompt too long" in gone["why"]
    assert judge(0.6)["n_prompts"] == {"m": {"prompts": 10}} and judge(0.6)["seeds"] == 1


def test_a_nan_statistic_needs_the_measurements_reason():
    claim = Claim(id="c", source="s", statement="t", statistic="m.v", reads="r",
                  reproduced=">= 0.5")  # fmt: skip
    told = verdict(claim, {"m": record({"v": None}, reasons={"v": "one-token answers"})})
    assert told["verdict"] == "not testable here" and "one-token answers" in told["why"]
    with pytest.raises(TslensError, match="claim c: m.v has no value"):
        verdict(claim, {"m": record({"v": None})})


def test_a_statistic_over_two_measurements_gets_its_interval_from_their_replicates():
    claim = Claim(id="c", source="s", statement="t", statistic="a.x - b.y", reads="r",
                  reproduced=">= 0.2")  # fmt: skip
    a = record({"x": 0.5}, {"x": list(np.linspace(0.4, 0.6, 101))})
    b = record({"y": 0.1}, {"y": list(np.linspace(0.2, 0.0, 101))})  # replicate-wise: 0.2..0.6
    got = verdict(claim, {"a": a, "b": b})
    assert got["value"] == pytest.approx(0.4) and got["verdict"] == "reproduced"
    assert got["interval"][0] == pytest.approx(0.4 - 0.2 * 0.95, abs=0.02)


def write_registry(tmp_path, statistic="m.solved_fraction", condition="m.min_accuracy >= 0.2"):
    text = f"""
[measurements.m]
kind = "mixture"
tasks = "$pair"
[[claims]]
id = "typo-claim"
source = "s"
statement = "t"
statistic = "{statistic}"
reads = "r"
reproduced = ">= 0.5"
testable_if = ["{condition}"]
"""
    path = tmp_path / "claims.toml"
    path.write_text(text)
    return path


def test_the_registry_refuses_a_statistic_or_condition_nothing_produces(tmp_path):
    assert load_registry(write_registry(tmp_path)).claims[0].id == "typo-claim"
    for bad in ({"statistic": "m.solved_fracton"}, {"condition": "m.min_acuracy >= 0.2"},
                {"statistic": "n.solved_fraction"}):  # fmt: skip
        with pytest.raises(TslensError, match="claim typo-claim") as err:
            load_registry(write_registry(tmp_path, **bad))
        assert "\n" not in str(err.value)


def test_the_fig2_presets_are_the_papers_four_groups():
    assert set(presets()) == {"ops", "countries", "words", "add"}
    ops = get_preset("ops")
    assert (ops.tasks, ops.template, ops.n_examples) == (("copy_op1", "copy_op2", "add"),
                                                         "{x}={y}", 60)  # fmt: skip
    for preset in presets().values():
        resolve_tasks(list(preset.tasks))  # every task exists, one family
    with pytest.raises(TslensError, match="unknown preset"):
        get_preset("opz")


def test_the_ab_generator_draws_as_the_authors_generator_does():
    """Same call order on random.Random(seed): task order shuffled, two distinct operands in
    10..99 per demonstration, then query operands until the answers differ."""
    ops = get_preset("ops")
    prompts = ops.prompts(ops.spec(3))
    rng = random.Random(42)  # the check re-draws the first prompt by hand
    order = [0] * 20 + [1] * 20 + [2] * 20
    rng.shuffle(order)
    a, b = rng.sample(range(10, 100), k=2)
    assert list(prompts[0].demo_tasks) == order
    first = prompts[0].text.splitlines()[0]
    assert first == f"{a}@{b}=" + [str(a), str(b), str(a + b)][order[0]]
    for p in prompts:
        lines = p.text.splitlines()
        assert len(lines) == 61 and lines[-1].endswith("=") and "=" not in lines[-1][:-1]
        for line in lines[:-1]:
            x, y = line.split("=")
            left, right = map(int, x.split("@"))
            assert 10 <= left <= 99 and 10 <= right <= 99 and left != right
        assert len(set(p.answers)) == 3 and p.text.endswith(p.query + "=")
    assert ops.prompts(ops.spec(3)) == prompts  # same seed, same prompts


def test_probs_takes_a_preset(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["probs", "--preset", "ops", "--model", "gpt2-small-random", "--n-prompts", "2",
                 "--no-solved", "--out", str(out)]) == 0  # fmt: skip
    result = json.loads((out / "probs.json").read_text())
    assert result["tasks"] == ["copy_op1", "copy_op2", "add"] and result["seed"] == 42
    assert result["per_prompt"][0]["prompt"] == get_preset("ops").prompts(
        get_preset("ops").spec(2))[0].text  # fmt: skip
    capsys.readouterr()
    assert main(["probs", "--preset", "ops", "--tasks", "add", "--out", str(tmp_path / "x")]) == 2
    assert "--preset or --tasks" in capsys.readouterr().err


@pytest.mark.parametrize(
    "model", ["tslens-char-3l4h", pytest.param("gpt2-small-random", marks=pytest.mark.slow)]
)
def test_reproduce_quick_end_to_end(model, tmp_path, capsys):
    out = tmp_path / "claims"
    assert main(["reproduce", "--model", model, "--quick", "--out", str(out)]) == 0
    result = json.loads((out / "claims.json").read_text())
    registry = load_registry()
    claims = registry.claims
    assert [v["id"] for v in result["verdicts"]] == [c.id for c in claims]
    kinds = {registry.measurements[m].kind for m in result["statistics"]}
    assert kinds == set(KINDS)  # every kind of measurement ran
    for v in result["verdicts"]:
        assert v["verdict"] in VERDICTS
        assert ("why" in v) if v["verdict"] == "not testable here" else ("rule" in v)
        if v["verdict"] != "not testable here":  # a value, its interval, prompts and seeds
            assert isinstance(v["value"], float) and len(v["interval"]) == 2
            assert v["n_prompts"] and v["seeds"] == 1
    assert result["size"] == "quick" and result["settings"]["seeds"] == [0]
    # every measurement that ran produced exactly the statistics its kind declares, each with
    # an interval entry
    for name, produced in result["statistics"].items():
        if "unavailable" not in produced:
            declared = set(STATISTICS[registry.measurements[name].kind])
            assert set(produced["values"]) == declared == set(produced["intervals"]), name
            assert "replicates" not in produced  # kept in the cache, not in claims.json
    # the pair rule's outcome for every candidate
    assert result["pairs"] and all("passes" in row for row in result["pairs"])
    table = (out / "claims.md").read_text()
    assert table.count("\n| ") >= len(claims) + 1 and model in table and "95%" in table
    page = (out / "report.html").read_text()
    assert "Claims on" in page and claims[0].id in page and page.count("plotly") > 2
    # shared: each measurement ran once however many claims read it
    assert sorted(result["statistics"]) == sorted({m for c in claims for m in c.measurements()})
    if model == "gpt2-small-random":  # random weights: a negative control for every claim
        assert not {v["verdict"] for v in result["verdicts"]} & {"reproduced", "partly"}


def test_reproduce_refuses_unknown_claims_in_one_line(tmp_path, capsys):
    assert main(["reproduce", "--only", "nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown claim 'nope'" in err[0]
    assert not (tmp_path / "o").exists()


def test_measurements_that_resolve_to_the_same_analysis_run_once(monkeypatch, shipped):
    from tslens.claims import measure, reproduce
    from tslens.claims.intervals import Sample
    from tslens.claims.registry import Measurement, Registry

    calls = []

    def count(s, m, seed):
        calls.append(m.name)
        return Sample({"prompts": {"x": np.ones(4)}}, lambda d: {"solved_fraction": 1.0})

    monkeypatch.setitem(measure.KINDS, "mixture", count)
    ours = {"a": Measurement("a", "mixture", {"tasks": "$pair"}),
            "b": Measurement("b", "mixture", {"tasks": ["plus2", "plus5"]}),
            "c": Measurement("c", "mixture", {"tasks": ["plus1", "plus5"]})}  # fmt: skip
    claims = [Claim(id=n, source="s", statement="t", statistic=f"{n}.solved_fraction",
                    reads="r", reproduced=">= 1") for n in ours]  # fmt: skip
    registry = Registry({"pair": ["plus2", "plus5"]}, ours, claims)
    result = reproduce.reproduce(shipped, quick=True, registry=registry, pair=["plus2", "plus5"])
    assert calls == ["a", "c"] and result.statistics["b"]["same_as"] == "a"
    assert [v["verdict"] for v in result.verdicts] == ["reproduced"] * 3


def test_an_interrupted_reproduce_resumes_measurement_by_measurement(tmp_path, monkeypatch):
    from tslens.claims import measure

    argv = ["reproduce", "--quick", "--only", "xiong-f1-within-prompt,xiong-f2-calibration",
            "--out", str(tmp_path / "o")]  # fmt: skip
    mixture = measure.KINDS["mixture"]

    def interrupted(s, m, seed):
        raise KeyboardInterrupt

    def saved(s, m, seed):
        pytest.fail("curve ran again: it was saved by the interrupted run")

    with monkeypatch.context() as patch:  # "curve" runs before "pair" (alphabetical order)
        patch.setitem(measure.KINDS, "mixture", interrupted)
        assert main(argv) == 130
    with monkeypatch.context() as patch:
        patch.setitem(measure.KINDS, "curve", saved)
        patch.setitem(measure.KINDS, "mixture", mixture)
        assert main(argv) == 0
    result = json.loads((tmp_path / "o" / "claims.json").read_text())
    assert sorted(result["statistics"]) == ["curve", "pair"]


def test_a_mixture_skips_its_beam_search_below_its_accuracy_floor(shipped):
    from tslens.claims.intervals import summarize
    from tslens.claims.prompt_measures import mixture
    from tslens.claims.registry import Measurement
    from tslens.claims.setting import Setting
    from tslens.engine.lens import as_lens

    setting = Setting(as_lens(shipped), {"pair": ["plus2", "plus5"]}, None, 20, quick=True)
    ran = summarize([mixture(setting, Measurement("m", "mixture", {"tasks": "$pair"}), 0)])
    skipped = summarize([mixture(setting, Measurement(
        "m", "mixture", {"tasks": "$pair", "search_if_accuracy": 1.5}), 0)])  # fmt: skip
    assert ran["values"]["solved_fraction"] is not None
    assert skipped["values"]["solved_fraction"] is None
    assert "search_if_accuracy" in skipped["reasons"]["solved_fraction"]
    same = ("all_answers_share", "min_accuracy", "last_demo_gap")
    assert [ran["values"][k] for k in same] == [skipped["values"][k] for k in same]


def test_the_pair_rule_compares_the_first_token_that_writes_something(shipped):
    """Gemma writes " 34" as "▁", "3", "4": a shared whitespace token must not make two
    numeric answers look alike (the char model splits the same way)."""
    from tslens.claims.pairs import deciding_tokens
    from tslens.engine.lens import as_lens

    lens = as_lens(shipped)
    (row,) = deciding_tokens(lens, ["12@34="], [[" 34", "  57", " "]])
    three, five, space = (lens.token_ids([c])[0][-1] for c in "35 ")
    assert row == [three, five, space]  # an all-whitespace answer keeps its last token


def test_the_pair_rule_passes_and_fails_for_its_stated_reasons(shipped):
    from tslens.claims.pairs import check_pairs
    from tslens.engine.lens import as_lens
    from tslens.prompts import PromptSpec

    rule = load_registry().pairs
    candidates = [["plus2", "plus5"], ["first_letter", "first_letter_upper"]]
    rows = check_pairs(as_lens(shipped), candidates, rule, PromptSpec(8, 20, 0, None))
    trained, untrained = rows
    assert trained["passes"] and trained["why"] == "" and min(trained["accuracy"]) >= 0.5
    assert not untrained["passes"]
    assert "case variants on 1.00" in untrained["why"]  # and alone it cannot do them either
    assert "alone" in untrained["why"]


def test_the_null_pair_skips_tasks_whose_answers_coincide():
    """add_digits writes what add writes, and the word family's other tasks are the pair's
    case variants: neither is a null pair for the geometry."""
    from tslens.claims.pairs import answers_coincide, null_pair

    assert null_pair(["copy_op1", "copy_op2"]) == ["add", "add_en"]  # not add, add_digits
    assert null_pair(["capital", "continent"]) == ["upper", "currency"]
    add, add_digits, add_en = resolve_tasks(["add", "add_digits", "add_en"])
    assert answers_coincide(add, add_digits, ["12@34", "5@6"])
    assert not answers_coincide(add, add_en, ["12@34", "5@6"])
    with pytest.raises(TslensError, match="no two other tasks"):
        null_pair(["first_letter", "last_letter"])


def test_the_beam_search_gate_reads_the_accuracy_pooled_over_every_seed(shipped, monkeypatch):
    """One seed's few prompts below the floor must not leave that seed unsearched (and the
    pooled statistic NaN) when the pooled accuracy, which the claims' gates read, is above."""
    from tslens.claims import prompt_measures
    from tslens.claims.intervals import summarize
    from tslens.claims.registry import Measurement
    from tslens.claims.setting import Setting
    from tslens.engine.lens import as_lens

    def hits(lens, names, n_prompts, n_examples, seed, template, batch_size):
        miss = seed == 1  # seed 1 gets plus5 wrong on every prompt: 2/3 pooled
        return {n: torch.full((n_prompts,), not (miss and n == "plus5")) for n in names}

    monkeypatch.setattr(prompt_measures, "task_hits", hits)
    setting = Setting(as_lens(shipped), {"pair": ["plus2", "plus5"]}, None, 20, quick=False)

    def run(floor: float) -> dict:
        m = Measurement("m", "mixture", {"tasks": "$pair", "search_if_accuracy": floor})
        return summarize([prompt_measures.mixture(setting, m, seed) for seed in setting.seeds])

    searched, skipped = run(0.5), run(0.9)
    assert all(v is not None for v in searched["by_seed"]["solved_fraction"])
    assert searched["values"]["solved_fraction"] is not None
    assert searched["values"]["min_accuracy"] == pytest.approx(2 / 3)
    assert skipped["by_seed"]["solved_fraction"] == [None, None, None]
    assert "pooled over the seeds" in skipped["reasons"]["solved_fraction"]


def test_heads_are_ranked_once_per_run_and_judged_on_each_seeds_held_out_prompts(monkeypatch):
    """Ranked per seed on a full run's few prompts, the top FV heads changed with the seed
    (Gemma-3-270M, 3 prompts a seed): the ranking is made once, on rank_prompts prompts."""
    from tslens.claims import head_measures
    from tslens.claims.registry import Measurement
    from tslens.claims.setting import Setting

    ranked, judged = [], []

    def type_heads(lens, tasks, spec, **kw):
        ranked.append((spec.n_prompts, spec.seed))
        return types

    def fv_vs_induction(lens, tasks, types, spec, **kw):
        judged.append((spec.n_prompts, spec.seed))
        cond = {"1": {"hits": [[1, 0], [1, 1]], "heads": [[0, 0]], "share_drop": 0.0}}
        return {"tasks": ["plus2", "plus5"], "baseline": {"hits": [[1, 1], [1, 1]]},
                "conditions": {c: cond for c in head_measures.CONDITIONS}}  # fmt: skip

    class types:
        @staticmethod
        def fv_induction_spearman() -> float:
            return 0.0

    monkeypatch.setattr(head_measures, "type_heads", type_heads)
    monkeypatch.setattr(head_measures, "fv_vs_induction", fv_vs_induction)
    setting = Setting(None, {"pair": ["plus2", "plus5"]}, None, 20, quick=False, seed=5)
    m = Measurement("heads", "heads", {"tasks": "$pair", "prompts": [4, 21],
                                       "rank_prompts": [4, 12]})  # fmt: skip
    for seed in setting.seeds:
        head_measures.heads(setting, m, seed)
    assert ranked == [(12, 5)]
    assert judged == [(7, 5 + head_measures.HELD_OUT), (7, 6 + head_measures.HELD_OUT),
                      (7, 7 + head_measures.HELD_OUT)]  # fmt: skip
