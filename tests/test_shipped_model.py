"""The embedded default model: it loads with plain transformers and through tslens, its card
states what the analyses need, and (on small samples) it really performs the tasks and
superposes them, and its task vectors move its answers."""

import json

import pytest
import torch

from tslens.analyses.curves import mixture_curve, task_accuracy
from tslens.analyses.sweeps import patch_sweep
from tslens.analyses.task_vectors import task_vectors
from tslens.models import DEFAULT_MODEL, PACKAGED_MODELS, load_model
from tslens.train import Recipe

SHIPPED = PACKAGED_MODELS / DEFAULT_MODEL


@pytest.fixture(scope="module")
def shipped():
    return load_model(device="cpu")


def test_default_model_is_the_shipped_trained_model():
    assert (SHIPPED / "config.json").exists(), "the embedded model must ship in the package"
    size = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert size <= 20 * 2**20
    recipe = Recipe.from_toml(SHIPPED / "recipe.toml")
    log = json.loads((SHIPPED / "train_log.json").read_text())
    assert log["step"] == recipe.steps == len(log["losses"])
    card = (SHIPPED / "README.md").read_text()
    for needle in ["<bos>", "tslens train --recipe", "Wall time", "## Evaluation"]:
        assert needle in card
    evaluation = json.loads((SHIPPED / "eval.json").read_text())
    assert evaluation["n_prompts"] >= 500 and set(evaluation["accuracy"]) == set(recipe.tasks)


def test_it_loads_with_plain_transformers_and_prepends_bos(shipped):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(SHIPPED)
    tokenizer = AutoTokenizer.from_pretrained(SHIPPED)
    assert shipped.cfg.default_prepend_bos and shipped.tokenizer.bos_token == "<bos>"
    ids = tokenizer("<bos>3>5\n4>", add_special_tokens=False, return_tensors="pt").input_ids
    assert ids.shape[1] == 7
    with torch.inference_mode():
        assert torch.allclose(hf(ids).logits, shipped(ids), atol=1e-4)


def test_it_solves_single_tasks_and_superposes_plus_pairs(shipped):
    accuracy = task_accuracy(shipped, "plus2,plus5,ret2,ret6", n_prompts=40)
    assert min(accuracy.values()) >= 0.9, accuracy
    curve = mixture_curve(shipped, "plus2,plus5", shares=[0.5], n_prompts=60)
    p_a, p_b, other = curve.at(0.5)
    assert p_a >= 0.25 and p_b >= 0.25 and other <= 0.1, (p_a, p_b, other)


def test_its_plus_vector_raises_its_answer_over_zero_shot(shipped):
    vectors = task_vectors(shipped, "plus2,plus5", n_prompts=30)
    sweep = patch_sweep(shipped, vectors, n_prompts=30)
    for k, task in enumerate(sweep.tasks):
        layer = sweep.layers.index(sweep.best_layer()[task])
        assert sweep.probs[layer, k, k] > sweep.baseline[k] + 0.2, (task, sweep.to_json())
