"""Evaluation of trained models: mixture curves, accuracy, summaries, the model card, and the
``tslens train`` / ``evaluate`` / ``compare`` commands (tiny models; the shipped model's own
figures are checked in test_shipped_model.py)."""

import json
import math

import pytest
import torch

from tslens.analyses.prompt.curves import MixtureCurve, mixture_curve, task_accuracy
from tslens.analyses.prompt.evaluation import Evaluation
from tslens.analyses.prompt.mixture import measure_mixture
from tslens.cli import main
from tslens.errors import TslensError
from tslens.tasks import resolve_tasks


def _curve(p0: list[float], p1: list[float]) -> MixtureCurve:
    n = len(p0)
    probs = torch.tensor([p0, p1], dtype=torch.float64).T
    return MixtureCurve(
        model="m",
        tasks=["plus2", "plus5"],
        shares=[i / (n - 1) for i in range(n)],
        probs=probs,
        other=1 - probs.sum(-1),
        sem=torch.zeros(n, 2),
        n_prompts=10,
        n_examples=20,
    )


def test_curve_summary_reads_calibration_half_point_and_monotonicity():
    curve = _curve([0.0, 0.3, 0.45, 0.8, 1.0], [1.0, 0.6, 0.45, 0.2, 0.0])
    summary = Evaluation("m", {"plus2": 1.0}, [curve], {}).curve_summary(curve)
    assert summary["max_dev"] == pytest.approx(0.05)  # |0.3 - 0.25|, |0.45 - 0.5|, |0.8 - 0.75|
    assert summary["at_half"] == pytest.approx({"p_task0": 0.45, "p_task1": 0.45, "other": 0.1})
    assert summary["monotone"]
    dip = _curve([0.0, 0.3, 0.2, 0.8, 1.0], [1.0, 0.6, 0.7, 0.2, 0.0])
    assert not Evaluation("m", {}, [dip], {}).curve_summary(dip)["monotone"]


def test_mixture_curve_points_are_measure_mixture_means(tiny_char):
    curve = mixture_curve(tiny_char, "plus2,plus5", shares=[0.0, 0.5], n_prompts=6, n_examples=6)
    half = measure_mixture(tiny_char, "plus2,plus5", [0.5, 0.5], 6, 6, solved=False)
    assert torch.allclose(curve.probs[1], half.probs.mean(0))
    assert curve.at(0.5)[2] == pytest.approx(half.other.mean().item())
    assert curve.to_json()["p_task0"] == curve.probs[:, 0].tolist()
    with pytest.raises(ValueError, match="exactly two"):
        mixture_curve(tiny_char, "plus2,plus5,plus7", shares=[0.5], n_prompts=2)


def test_accuracy_spans_families_and_is_a_share(tiny_char):
    accuracy = task_accuracy(tiny_char, "plus2,ret6", n_prompts=8, n_examples=4)
    assert list(accuracy) == ["plus2", "ret6"]
    assert all(a * 8 == int(a * 8) and 0 <= a <= 1 for a in accuracy.values())
    with pytest.raises(TslensError, match="one family"):
        resolve_tasks("plus2,ret6")
    assert len(resolve_tasks("plus2,ret6", same_family=False)) == 2


TINY_FLAGS = [
    "--tasks", "plus2,plus5,ret2,ret6", "--n-demos", "4", "--n-layers", "1", "--d-model", "32",
    "--n-heads", "2", "--n-ctx", "128", "--steps", "3", "--batch-size", "8",
    "--eval-prompts", "4",
]  # fmt: skip


def test_train_evaluates_and_writes_the_model_card(tmp_path, capsys):
    out = tmp_path / "tiny-model"
    assert main(["train", *TINY_FLAGS, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "plus2/plus5: max |P(task0) - d|" in stdout
    evaluation = json.loads((out / "eval.json").read_text())
    assert set(evaluation["accuracy"]) == {"plus2", "plus5", "ret2", "ret6"}
    assert [c["tasks"] for c in evaluation["curves"]] == [["plus2", "plus5"], ["ret2", "ret6"]]
    assert all(len(c["p_task0"]) == 11 and c["n_prompts"] == 4 for c in evaluation["curves"])
    card = (out / "README.md").read_text()
    assert "tslens train " + " ".join(TINY_FLAGS) in card  # the exact command
    for needle in ["<bos>", "## Prompt format", "Wall time", "| ret6 |", "| 0.5 |", "cpu"]:
        assert needle in card
    assert "plotly" in (out / "eval.html").read_text()
    # Running the same command again finds the run finished: no retraining, same weights.
    weights = (out / "model.safetensors").read_bytes()
    assert main(["train", *TINY_FLAGS, "--no-eval", "--out", str(out)]) == 0
    assert (out / "model.safetensors").read_bytes() == weights


def test_evaluate_and_compare_commands(tmp_path, tiny_char_dir, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--pairs", "plus2/plus5", "--n-prompts", "3", "--n-examples", "4"]
    assert main(["evaluate", "--model", str(tiny_char_dir), *common, "--out", str(a)]) == 0
    assert main(["evaluate", "--model", str(tiny_char_dir), *common, "--seed", "1",
                 "--tasks", "ret2", "--out", str(b)]) == 0  # fmt: skip
    assert json.loads((b / "eval.json").read_text())["accuracy"].keys() == {"ret2"}
    assert main(["compare", str(a / "eval.json"), str(b / "eval.json"),
                 "--out", str(tmp_path / "c")]) == 0  # fmt: skip
    assert len(json.loads((tmp_path / "c" / "compare.json").read_text())["rows"]) == 2
    card_dir = tmp_path / "model"
    card_dir.mkdir()
    (card_dir / "README.md").write_text("# m\n\n## Study\n\nold\n\n## Files\n\nkeep\n")
    for _ in range(2):  # repeatable: the section is replaced, not appended again
        assert main(["compare", str(a / "eval.json"), "--title", "Study", "--note", "reading",
                     "--card", str(card_dir), "--out", str(tmp_path / "card")]) == 0  # fmt: skip
    card = (card_dir / "README.md").read_text()
    assert card.count("## Study") == 1 and "old" not in card and "reading" in card
    assert card.index("## Study") < card.index("## Files") and "keep" in card
    capsys.readouterr()
    for argv, message in [
        (["evaluate", "--model", str(tiny_char_dir), "--out", "x"], "--tasks"),
        (["evaluate", "--model", str(tiny_char_dir), "--pairs", "plus2/ret2", "--out", "x"],
         "one family"),
        (["compare", str(tmp_path / "nope.json"), "--out", "x"], "cannot read evaluation"),
        (["compare", str(tiny_char_dir / "config.json"), "--out", "x"], "not an eval.json"),
    ]:  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err


def test_last_demo_gap_and_within_prompt_share_detect_a_per_prompt_choice():
    from tslens.analyses.prompt.mixture import MixtureResult
    from tslens.prompts import MixturePrompt

    def result(probs, last_tasks):
        prompts = [MixturePrompt("", "", ("a", "b"), (1 - t, t)) for t in last_tasks]
        return MixtureResult("m", ["a", "b"], [0.5, 0.5], prompts, torch.tensor(probs))

    follower = result([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], [0, 1, 0])
    assert follower.last_demo_gap(task=0) == pytest.approx(1.0)
    assert follower.last_demo_gap() == pytest.approx(1.0)  # both tasks' gaps are 1
    assert follower.all_answers_share() == 0
    blender = result([[0.5, 0.5], [0.5, 0.5], [0.6, 0.4]], [0, 1, 1])
    assert blender.last_demo_gap(task=0) == pytest.approx(-0.05)
    assert blender.last_demo_gap(task=1) == pytest.approx(-0.05)
    assert blender.all_answers_share() == 1 and blender.summary()["all_answers_share"] == 1
    assert math.isnan(result([[1.0, 0.0]], [0]).last_demo_gap(task=0))
    assert result([[1.0, 0.0]], [0]).summary()["last_demo_gap"] is None  # JSON has no NaN
