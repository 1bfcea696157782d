"""A few steps of a tiny model: data format, schedule, resume after interruption, loading."""

import pytest
import torch
from safetensors.torch import load_file

import tslens.training.train as train_module
from tslens.prompts import build_mixture_prompts
from tslens.tasks import resolve_tasks
from tslens.training.charlm import build_char_model, char_tokenizer
from tslens.training.synthetic import Corruption, synthetic_batch
from tslens.training.train import Recipe, learning_rate, train

TINY = dict(
    tasks=["plus2", "plus5", "ret2", "ret6"],
    n_demos=4,
    n_layers=1,
    d_model=32,
    n_heads=2,
    n_ctx=128,
    steps=6,
    batch_size=8,
    warmup=2,
    checkpoint_every=3,
)


def test_training_sequences_match_the_analysis_prompt_format():
    tok = char_tokenizer()
    gen = torch.Generator().manual_seed(0)
    ids, labels = synthetic_batch(tok, "plus", [2], 1, 4, gen)
    text = tok.decode(ids[0])
    prompt = build_mixture_prompts(resolve_tasks("plus2,plus5"), [1.0, 0.0], 1, 4)[0]
    assert text.startswith("<bos>") and text.count("\n") == prompt.text.count("\n") == 4
    lines = text.removeprefix("<bos>").split("\n")
    assert all(len(line) == 3 and line[1] == ">" for line in lines)
    assert all(int(line[2]) == (int(line[0]) + 2) % 10 for line in lines)
    answers = [tok.decode([int(i)]) for i in labels[0] if i != -100]
    assert answers == [line[2] for line in lines]  # loss on answers only
    ids, labels = synthetic_batch(tok, "ret", [6], 2, 3, gen)
    for line in tok.decode(ids[1]).removeprefix("<bos>").split("\n"):
        x, y = line.split(">")
        assert len(set(x)) == 8 and y == x[6]


def _line_tasks(tok, ids) -> list[list[int]]:
    """The plus-b parameter b of every line of every plus sequence."""
    rows = []
    for seq in ids:
        lines = tok.decode(seq).removeprefix("<bos>").split("\n")
        rows.append([(int(line[2]) - int(line[0])) % 10 for line in lines])
    return rows


def test_corruptions_noise_demonstrations_never_the_query_and_mix_only_trained_tasks():
    tok = char_tokenizer()
    clean = synthetic_batch(tok, "plus", [2], 4, 6, torch.Generator().manual_seed(0))
    same = synthetic_batch(
        tok, "plus", [2], 4, 6, torch.Generator().manual_seed(0), corruption=Corruption()
    )
    assert all(torch.equal(a, b) for a, b in zip(clean, same, strict=True))

    def lines(corruption, n_demos=12, params=(2,)):
        gen = torch.Generator().manual_seed(1)
        ids, _ = synthetic_batch(tok, "plus", list(params), 400, n_demos, gen, False, corruption)
        return torch.tensor(_line_tasks(tok, ids))  # [seq, line]

    noisy = lines(Corruption(label_noise=0.5))
    assert (noisy[:, -1] == 2).all()  # the query is always its own task
    gen = torch.Generator().manual_seed(1)
    ids, labels = synthetic_batch(tok, "plus", [2], 400, 12, gen, False, Corruption(0.5))
    answers = labels[:, 3::4]  # each line "x>y" then a newline; BOS first: y at 3, 7, ...
    labeled = answers != -100
    assert (noisy[labeled] == 2).all()  # noise is never a label ...
    assert abs((~labeled[:, :-1]).float().mean().item() - 0.5) < 0.03  # ... and only noise
    off = (noisy[:, :-1] != 2).float().mean().item()
    assert abs(off - 0.5 * 0.9) < 0.03  # a random task is task 2 itself a tenth of the time
    tail = lines(Corruption(tail_noise=1.0))
    assert (tail[:, :9] == 2).all() and (tail[:, -1] == 2).all()  # only the last 1..3 demos
    assert (tail[:, 11] != 2).float().mean().item() > 0.8
    mixed = lines(Corruption(mix_tasks=True), params=(2, 5))
    assert set(mixed.unique().tolist()) == {2, 5}
    per_sequence = (mixed == 5).float().mean(1)
    assert per_sequence.std() > 0.25  # each sequence has its own weight, not 50/50 everywhere


def test_a_nope_model_ignores_positions():
    model, _ = build_char_model(None, 1, 32, 2, 256, 0, "llama", "none")
    cos, sin = model.model.rotary_emb(torch.zeros(1, 1, 32), torch.arange(256)[None])
    assert sin.abs().max() < 1e-8 and (cos - 1).abs().max() < 1e-8
    with pytest.raises(ValueError, match="positions"):
        build_char_model(None, 1, 32, 2, 256, 0, "gpt2", "none")


def test_two_token_answers_and_the_separator_loss():
    tok = char_tokenizer()
    ids, labels = synthetic_batch(tok, "pair", [3], 2, 4, torch.Generator().manual_seed(0), True)
    text = tok.decode(ids[0]).removeprefix("<bos>")
    prompt = build_mixture_prompts(resolve_tasks("pair3"), [1.0], 1, 4)[0]
    assert text.count("\n") == prompt.text.count("\n") == 4
    for line in text.split("\n"):
        x, y = line.split(">")
        assert len(set(x)) == 8 and y == x[3:5] == resolve_tasks("pair3")[0].answer(x)
    trained = [tok.decode([int(i)]) for i in labels[0] if i != -100]
    assert trained == list("".join(line.split(">")[1] + "\n" for line in text.split("\n")))[:-1]
    # without the separator loss only the answer characters are labels
    _, plain = synthetic_batch(tok, "pair", [3], 2, 4, torch.Generator().manual_seed(0))
    assert int((plain[0] != -100).sum()) == 2 * 5


def test_warmup_stable_decay():
    r = Recipe(steps=100, lr=1.0, warmup=10, decay_fraction=0.2)
    assert learning_rate(r, 0) == pytest.approx(0.1) and learning_rate(r, 50) == 1.0
    assert learning_rate(r, 90) == pytest.approx(0.5) and learning_rate(r, 99) < 0.1


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    recipe = Recipe(**TINY)
    straight = train(recipe, tmp_path / "a", progress=False)
    real_make_batch = train_module.make_batch

    def crash_at_step_4(recipe, tokenizer, step):
        if step == 4:
            raise KeyboardInterrupt
        return real_make_batch(recipe, tokenizer, step)

    monkeypatch.setattr(train_module, "make_batch", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, tmp_path / "b", progress=False)
    assert (tmp_path / "b" / "checkpoint" / "trainer.json").exists()
    monkeypatch.setattr(train_module, "make_batch", real_make_batch)
    resumed = train(recipe, tmp_path / "b", progress=False)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "b" / "checkpoint").exists()


def test_trained_directory_loads_and_scores(tmp_path):
    from transformers import AutoModelForCausalLM

    from tslens.analyses.prompt.mixture import measure_mixture
    from tslens.sources.loader import load_model

    out = train(Recipe(**{**TINY, "steps": 2}), tmp_path / "m", progress=False)
    assert AutoModelForCausalLM.from_pretrained(out) is not None
    assert Recipe.from_toml(out / "recipe.toml") == Recipe(**{**TINY, "steps": 2})
    model = load_model(str(out), device="cpu")
    result = measure_mixture(model, "plus2,plus5", n_prompts=3, n_examples=4, solved=False)
    assert result.probs.shape == (3, 2) and 0 < result.probs.sum(-1).max() < 1


def test_train_cli_flags_recipe_and_errors(tmp_path, capsys):
    from tslens.cli import main

    recipe = tmp_path / "r.toml"
    recipe.write_text(Recipe(**{**TINY, "steps": 1}).to_toml())
    assert (
        main(["train", "--recipe", str(recipe), "--n-heads", "4", "--out", str(tmp_path / "m")])
        == 0
    )
    assert Recipe.from_toml(tmp_path / "m" / "recipe.toml").n_heads == 4
    capsys.readouterr()  # the successful run's progress bar
    for bad, message in [
        (["--tasks", "plus2,capital"], "not a synthetic task"),
        (["--d-model", "30", "--n-heads", "4"], "not divisible"),
        (["--recipe", str(tmp_path / "missing.toml")], "cannot read recipe"),
        (["--architecture", "rwkv"], "unknown architecture"),
        (["--architecture", "gpt2", "--positions", "none"], "none with the llama"),
        (["--label-noise", "1.5"], "probabilities"),
        (["--tasks", "plus2,ret2", "--batch-size", "1"], "each task kind"),
    ]:
        assert main(["train", *bad, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err


def test_gpt2_architecture_trains_and_loads(tmp_path):
    from tslens.sources.loader import load_model

    recipe = Recipe(**{**TINY, "steps": 2, "architecture": "gpt2"})
    out = train(recipe, tmp_path / "g", progress=False)
    model = load_model(str(out), device="cpu")
    assert model.cfg.n_layers == 1 and "GPT2" in type(model.original_model).__name__


def test_init_from_starts_at_a_finished_runs_weights(tmp_path):
    first = train(Recipe(**TINY), tmp_path / "a", progress=False)
    frozen = Recipe(**{**TINY, "lr": 0.0, "init_from": str(first), "label_noise": 0.3})
    second = train(frozen, tmp_path / "b", progress=False)
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)  # lr 0: nothing moved
    fresh = train(Recipe(**{**TINY, "lr": 0.0}), tmp_path / "c", progress=False)
    assert not torch.equal(load_file(fresh / "model.safetensors")["lm_head.weight"],
                           a["lm_head.weight"])  # fmt: skip
