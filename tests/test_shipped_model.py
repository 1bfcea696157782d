"""The embedded default model: it loads with plain transformers and through tslens, its card
states what the analyses need, and (on small samples) it really performs the tasks and
superposes them, and its task vectors move its answers."""

import json

import torch

from tslens.analyses.layer.sweeps import patch_sweep
from tslens.analyses.layer.task_vectors import task_vectors
from tslens.analyses.prompt.curves import mixture_curve, task_accuracy
from tslens.engine.capture import capture_activations
from tslens.engine.patching import patched_answer_logprobs
from tslens.prompts import build_mixture_prompts, build_query_prompts
from tslens.sources.loader import DEFAULT_MODEL, PACKAGED_MODELS
from tslens.tasks import resolve_tasks
from tslens.training.train import Recipe

SHIPPED = PACKAGED_MODELS / DEFAULT_MODEL


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


def test_patching_reaches_the_answer_only_through_query_specific_residuals(shipped):
    """The final-token residual of an in-context plus2 prompt carries its answer from layer 0
    on: patched into the zero-shot query it gives that answer. The *mean* over queries (the
    task vector) does not: this small model encodes the answer, not the task, at the final
    token (measured and reported in docs/findings.md)."""
    tasks = resolve_tasks("plus2,plus5")
    icl = build_mixture_prompts(tasks, [1.0, 0.0], 12, 20, seed=1)
    queries = build_query_prompts(tasks, 12, seed=1)
    own = capture_activations(shipped, [p.text for p in icl], layers=[0])["resid_post"][:, 0]
    hits = [
        patched_answer_logprobs(shipped, [q.text], [q.answers], torch.tensor([0]), own[i : i + 1])
        for i, q in enumerate(queries)
    ]
    assert torch.cat(hits)[:, 0, 0].exp().mean() > 0.9
    vectors = task_vectors(shipped, tasks, n_prompts=30)
    sweep = patch_sweep(shipped, vectors, n_prompts=30)
    assert sweep.probs[:, 0, 0].max() < 0.5  # the averaged vector stays weak
