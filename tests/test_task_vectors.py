"""Task vectors, sweeps, geometry and ``tslens patch`` on the tiny character model (cheap); the
embedded model's real effect is checked in test_shipped_model.py."""

import json

import pytest
import torch

from tslens.analyses.layer.geometry import span_residual, vector_geometry
from tslens.analyses.layer.sweeps import lambda_points, patch_sweep, simplex_path
from tslens.analyses.layer.task_vectors import TaskVectors, mixture_vector, task_vectors
from tslens.cli import main
from tslens.engine.capture import capture_activations
from tslens.errors import TslensError
from tslens.prompts import build_mixture_prompts, build_query_prompts
from tslens.tasks import resolve_tasks


def test_task_vector_is_the_mean_final_token_residual(tiny_char):
    vectors = task_vectors(tiny_char, "plus2,plus5", n_prompts=5, n_examples=4, seed=3)
    assert vectors.vectors.shape == (2, tiny_char.cfg.n_layers, tiny_char.cfg.d_model)
    prompts = build_mixture_prompts(resolve_tasks("plus5"), [1.0], 5, 4, seed=3)
    assert all(p.text.endswith(">") for p in prompts)  # the final token is the separator
    acts = capture_activations(tiny_char, [p.text for p in prompts])["resid_post"]
    assert torch.allclose(vectors.vectors[1], acts.mean(0), atol=1e-6)
    mix = mixture_vector(tiny_char, "plus2,plus5", "1,0", n_prompts=5, n_examples=4, seed=3)
    first = capture_activations(
        tiny_char,
        [p.text for p in build_mixture_prompts(resolve_tasks("plus2,plus5"), [1, 0], 5, 4, 3)],
    )["resid_post"]
    assert torch.allclose(mix, first.mean(0), atol=1e-6)


def test_vector_files_round_trip_and_refuse_other_models(tiny_char, gpt2, tmp_path):
    vectors = task_vectors(tiny_char, "ret2,ret6", n_prompts=2, n_examples=3)
    vectors.save(tmp_path / "v.safetensors")
    loaded = TaskVectors.load(tmp_path / "v.safetensors", tiny_char)
    assert torch.equal(loaded.vectors, vectors.vectors) and loaded.tasks == ["ret2", "ret6"]
    with pytest.raises(TslensError, match="from a model with"):
        TaskVectors.load(tmp_path / "v.safetensors", gpt2)
    with pytest.raises(TslensError, match="no vector for plus2"):
        loaded.select(["plus2"])


def test_query_prompts_share_the_icl_prompts_queries():
    tasks = resolve_tasks("plus2,plus5")
    queries = build_query_prompts(tasks, 4, seed=7)
    icl = build_mixture_prompts(tasks, [0.5, 0.5], 4, 6, seed=7)
    assert [q.text for q in queries] == [p.text.split("\n")[-1] for p in icl]
    assert [q.answers for q in queries] == [p.answers for p in icl]


def test_sweep_layout_corners_and_icl(tiny_char):
    vectors = task_vectors(tiny_char, "plus2,plus5", n_prompts=3, n_examples=4)
    layer_sweep = patch_sweep(tiny_char, vectors, n_prompts=3)
    assert layer_sweep.probs.shape == (tiny_char.cfg.n_layers, 2, 2)
    assert set(layer_sweep.best_layer()) == {"plus2", "plus5"}
    sweep = patch_sweep(tiny_char, vectors, points=lambda_points([0, 0.5, 1]), layers=[1],
                        n_prompts=3, icl_examples=4)  # fmt: skip
    # lambda = 1 is the pure plus2 vector: the same number as the layer sweep's corner
    assert torch.allclose(sweep.probs[0, 2], layer_sweep.probs[1, 0], atol=1e-9)
    corners = sweep.corners()  # what tslens patch reports as its layer sweep
    assert torch.equal(corners.points, torch.eye(2, dtype=torch.float64))
    assert torch.allclose(corners.probs[0], layer_sweep.probs[1], atol=1e-9)
    assert patch_sweep(tiny_char, vectors, points=lambda_points([0.5]), n_prompts=3,
                       layers=[1]).corners() is None  # fmt: skip
    onward = patch_sweep(tiny_char, vectors, n_prompts=3, onward=True)  # multi-layer patching
    assert torch.allclose(onward.probs[-1], layer_sweep.probs[-1], atol=1e-9)
    assert not torch.allclose(onward.probs[0], layer_sweep.probs[0], atol=1e-6)
    out = sweep.to_json()
    assert out["lambdas"] == [0.0, 0.5, 1.0] and len(out["icl"]) == 3
    assert torch.allclose(simplex_path([1 / 3] * 3, [0, 0.5, 0.5], 3)[1],
                          torch.tensor([1 / 6, 5 / 12, 5 / 12], dtype=torch.float64))  # fmt: skip
    with pytest.raises(TslensError, match=r"\[0, 1\]"):
        lambda_points([1.2])


def test_multi_layer_patch_equals_nested_single_layer_patches(tiny_char):
    from contextlib import ExitStack

    from tslens.engine.patching import patched_answer_logprobs
    from tslens.engine.scoring import answer_logprobs
    from tslens.hooks.patch import patching

    queries = build_query_prompts(resolve_tasks("plus2,plus5"), 3, seed=2)
    texts, answers = [q.text for q in queries], [q.answers for q in queries]
    v = torch.randn(2, tiny_char.cfg.d_model, generator=torch.Generator().manual_seed(0))
    both = patched_answer_logprobs(tiny_char, texts, answers, torch.tensor([[0, 1]]), v[None])
    with ExitStack() as stack:  # one-character answers: the prompt's last token is position -1
        for layer in (0, 1):
            rows = torch.full((3,), layer)
            stack.enter_context(patching(tiny_char, rows, v[layer].expand(3, -1)))
        nested = answer_logprobs(tiny_char, texts, answers, batch_size=3)
    assert torch.allclose(both[:, 0], nested, atol=1e-5)


def test_span_residual_and_geometry(tiny_char):
    basis = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    assert span_residual(torch.tensor([2.0, -1.0, 0]), basis) == pytest.approx(0, abs=1e-9)
    assert span_residual(torch.tensor([0, 0, 3.0]), basis) == pytest.approx(1)
    assert span_residual(torch.tensor([1.0, 0, 1.0]), basis) == pytest.approx(2**-0.5)
    geometry = vector_geometry(tiny_char, "plus2,plus5,plus7", n_prompts=4, n_examples=4,
                               layers=[1], methods=("lda", "pca"))  # fmt: skip
    assert geometry.mixtures == ["plus2+plus5", "plus2+plus7", "plus5+plus7", "uniform"]
    assert geometry.projections["lda"].shape == (1, 7 * 4, 2)
    assert geometry.centroid_distance.shape == (1, 4, 3)
    assert geometry.span_residual.shape == (1, 3) and 0.5 < geometry.random_residual[0] <= 1


def test_patch_cli_writes_results_and_rejects_bad_input(tiny_char_dir, tmp_path, capsys):
    common = ["--model", str(tiny_char_dir), "--n-prompts", "3", "--n-examples", "4"]
    vec = tmp_path / "v.safetensors"
    argv = ["patch", "--tasks", "plus2,plus5", *common, "--lambdas", "0:1:3", "--layers", "1:2",
            "--vectors", str(vec), "--out", str(tmp_path / "p")]  # fmt: skip
    assert main(argv) == 0 and vec.exists()
    result = json.loads((tmp_path / "p" / "patch.json").read_text())
    assert result["layers"] == [1] and result["lambdas"] == [0.0, 0.5, 1.0]
    assert len(result["probs"]) == 1 and len(result["probs"][0]) == 3
    assert len(result["probs"][0][0]) == 2 and len(result["other"][0]) == 3
    assert set(result["best_layer"]) == {"plus2", "plus5"} and len(result["icl"]) == 3
    assert "geometry" in result and "plotly" in (tmp_path / "p" / "patch.html").read_text()
    assert main(argv) == 0  # the second run reuses the saved vectors
    capsys.readouterr()
    other = tmp_path / "other.safetensors"
    TaskVectors("x", ["plus2", "plus5"], torch.zeros(2, 5, 7)).save(other)
    for bad, message in [
        (["--tasks", "plus2"], "at least two tasks"),
        (["--tasks", "plus2,plus5", "--lambdas", "0,1.5"], "[0, 1]"),
        (["--tasks", "plus2,plus5", "--lambdas", "a:b"], "cannot read --lambdas"),
        (["--tasks", "plus2,plus5", "--layers", "7"], "out of range"),
        (["--tasks", "plus2,plus5", "--layers", "5:9"], "selects no layer"),
        (["--tasks", "plus2,plus5", "--vectors", str(other)], "from a model with"),
    ]:
        assert main(["patch", *bad, *common, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
