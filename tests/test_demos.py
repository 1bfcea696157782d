"""Demonstration attribution: the packed deletion forward against plain forwards, the
demonstration spans, the summaries' arithmetic, attention masses, and ``tslens demos``."""

import json

import pytest
import torch

from tslens._reference import demonstration_effects_naive
from tslens.analyses.head.demo_attention import attention_to_demonstrations, head_summary
from tslens.analyses.prompt.demonstrations import (
    DemoEffects,
    build_demo_prompts,
    deletion_logprobs,
    demonstration_effects,
)
from tslens.cli import main
from tslens.doctor.tiny import write_tiny_gemma
from tslens.prompts import PromptSpec
from tslens.sources.loader import load_model
from tslens.tasks import resolve_tasks


def _stacked(effects: DemoEffects) -> torch.Tensor:
    return torch.cat([effects.base[:, None], effects.without_demo, effects.without_task], 1)


@pytest.mark.parametrize("template", ["spaced", "qa"])
def test_deleting_demonstrations_in_one_packed_forward_matches_plain_forwards(gpt2, template):
    tasks = resolve_tasks("capital,continent")  # multi-token answers on the GPT-2 BPE
    effects = demonstration_effects(gpt2, tasks, n_prompts=3, n_examples=4, template=template)
    naive = demonstration_effects_naive(gpt2, effects)
    # compared as log-probabilities: a random model's multi-token answers have tiny P
    assert torch.allclose(_stacked(effects).log(), naive.log(), atol=2e-4)
    # and they move when demonstrations go
    assert (effects.without_demo.log() - effects.base[:, None].log()).abs().max() > 1e-2


def test_deletions_respect_a_sliding_window(tmp_path):
    """Gemma-3-shaped model with an 8-token sliding window: the deleted prompts' positions
    (hence which keys each window holds) must be those of the prompt without the tokens."""
    model = load_model(str(write_tiny_gemma(tmp_path)), device="cpu")
    effects = demonstration_effects(model, resolve_tasks("plus2,plus5"), 2, 6, template="spaced")
    naive = demonstration_effects_naive(model, effects)
    assert torch.allclose(_stacked(effects).log(), naive.log(), atol=2e-4)


def test_deletion_rows_handle_deletions_at_the_start_and_the_end(shipped):
    prompts = [[1, 5, 6, 7, 8, 9, 10], [1, 11, 12, 13]]
    deletions = [[[0, 1], [6], [2, 4]], [[1, 2], [0], [3]]]
    answers = [[[14], [15, 16]], [[17, 18], [19]]]
    got = deletion_logprobs(shipped, prompts, deletions, answers)
    with torch.inference_mode():
        for b in range(2):
            variants = [prompts[b]] + [
                [t for i, t in enumerate(prompts[b]) if i not in d] for d in deletions[b]
            ]
            for v, seq in enumerate(variants):
                for k, a in enumerate(answers[b]):
                    logits = shipped(torch.tensor([seq + a]))[0, len(seq) - 1 : -1]
                    lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(a)[:, None]).sum()
                    assert abs(float(lp) - float(got[b, v, k])) < 1e-4


@pytest.mark.parametrize("template", ["spaced", "qa"])
def test_demonstration_spans_are_the_demonstration_lines(gpt2, template):
    tasks = resolve_tasks("capital,continent")
    prompts, tmpl, spans = build_demo_prompts(gpt2, tasks, PromptSpec(2, 5, 0, template))
    ids = gpt2.tokenizer([p.text for p in prompts], add_special_tokens=False)["input_ids"]
    bos = len(prompts[0].text) and int(gpt2.cfg.default_prepend_bos)
    for prompt, p_ids, demo_spans in zip(prompts, ids, spans, strict=True):
        pieces = [gpt2.tokenizer.decode([p_ids[t - bos] for t in s]) for s in demo_spans]
        assert "".join(pieces) + prompt.text[len("".join(pieces)) :] == prompt.text
        assert len(pieces) == 5 and all(piece.endswith(tmpl.sep) for piece in pieces)
        assert prompt.text.endswith(prompt.text[len("".join(pieces)) :])  # the query is left


def test_summaries_on_known_numbers():
    """Two tasks, three demonstrations (tasks 0, 1, 0): hand-made probabilities."""
    from tslens.prompts import MixturePrompt

    prompt = MixturePrompt("", "q", ("a", "b"), (0, 1, 0))
    effects = DemoEffects(
        tasks=["A", "B"], prompts=[prompt], spans=[[[1], [2], [3]]],
        base=torch.tensor([[0.5, 0.3]], dtype=torch.float64),
        without_demo=torch.tensor([[[0.4, 0.3], [0.6, 0.1], [0.2, 0.4]]], dtype=torch.float64),
        without_task=torch.tensor([[[0.1, 0.6], [0.7, 0.05]]], dtype=torch.float64),
    )  # fmt: skip
    assert torch.allclose(effects.by_task(), torch.tensor([[-0.4, 0.3], [0.2, -0.25]]).double())
    # task A's single effects: 0.1 (distance 3) and 0.3 (distance 1, the nearest)
    assert effects.nearest_share()[0] == pytest.approx(0.3 / 0.4)
    assert effects.nearest_share()[1] == pytest.approx(1.0)
    by_distance = effects.by_distance()
    a = by_distance["tasks"][0]
    assert a["same"] == [pytest.approx(0.3), None, pytest.approx(0.1)]
    assert a["other"][1] == pytest.approx(-0.1)  # deleting B's demo raises P(A)
    assert a["uniform"][0] == pytest.approx(0.4 / 2)
    assert a["nearest"] == [0.5, None, None]
    assert effects.last_demo_gap() == [None, None]  # one prompt: one side is empty
    # A: single effects 0.1 + 0.3 against 0.4 for the group; B: 0.2 against 0.25
    assert effects.additivity() == [pytest.approx(1.0), pytest.approx(0.2 / 0.25)]


def test_attention_masses_are_the_pattern_summed_over_each_demonstration(shipped):
    tasks = resolve_tasks("plus2,plus5")
    prompts, _, spans = build_demo_prompts(shipped, tasks, PromptSpec(3, 5))
    mass = attention_to_demonstrations(shipped, [p.text for p in prompts], spans, batch_size=2)
    ids = torch.tensor([shipped.tokenizer.bos_token_id] + shipped.tokenizer(
        prompts[2].text, add_special_tokens=False)["input_ids"])[None]  # fmt: skip
    _, cache = shipped.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"))
    pattern = cache["blocks.1.attn.hook_pattern"][0, :, -1]  # [head, key]
    assert torch.allclose(mass[2, 1, :, 3], pattern[:, spans[2][3]].sum(-1), atol=1e-6)
    demo_tasks = torch.tensor([p.demo_tasks for p in prompts])
    summary = head_summary(mass, demo_tasks, ["a", "b"], [(2, 1)])
    assert summary["heads"][0]["layer"] == 2 and summary["heads"][0]["top"]
    assert all(0 <= s <= 1 + 1e-6 for h in summary["heads"] for s in h["nearest_share"])


def test_demos_cli_writes_json_and_dashboard(tmp_path, capsys):
    out = tmp_path / "d"
    argv = ["demos", "--tasks", "plus2,plus5", "--n-prompts", "4", "--n-examples", "6"]
    assert main([*argv, "--heads", "2.1", "--out", str(out)]) == 0
    result = json.loads((out / "demos.json").read_text())
    assert {"tasks", "per_prompt", "by_task", "by_distance", "heads"} <= set(result)
    assert len(result["per_prompt"]) == 4 and len(result["per_prompt"][0]["demos"]) == 6
    assert result["heads"]["heads"][0]["layer"] == 2
    page = (out / "demos.html").read_text()
    assert "plotly" in page[:200000] and "<th>additivity</th>" in page
    header = page[page.index("<table>") : page.index("</tr>")]  # every row fits the header
    first_row = page[page.index("</tr>") : page.index("</tr>", page.index("</tr>") + 5)]
    assert header.count("<th>") == first_row.count("<td>")
    assert "nearest share" in capsys.readouterr().out
    assert main([*argv, "--heads", "9.1", "--out", str(tmp_path / "bad")]) == 2
    assert "out of range" in capsys.readouterr().err
