import pytest

from tslens.errors import TslensError
from tslens.prompts import (
    TEMPLATES,
    build_mixture_prompts,
    largest_remainder_counts,
    parse_weights,
)
from tslens.tasks import resolve_tasks


def test_same_seed_same_prompts_and_prefix_stability():
    tasks = resolve_tasks("capital,continent,upper")
    a = build_mixture_prompts(tasks, n_prompts=5, n_examples=20, seed=3)
    b = build_mixture_prompts(tasks, n_prompts=5, n_examples=20, seed=3)
    c = build_mixture_prompts(tasks, n_prompts=8, n_examples=20, seed=3)
    d = build_mixture_prompts(tasks, n_prompts=5, n_examples=20, seed=4)
    assert a == b and c[:5] == a
    assert [p.text for p in a] != [p.text for p in d]


def test_exact_counts_follow_largest_remainder():
    assert largest_remainder_counts([1 / 3, 1 / 3, 1 / 3], 10) == [4, 3, 3]
    assert largest_remainder_counts([0.7, 0.3], 10) == [7, 3]
    assert sum(largest_remainder_counts([0.15, 0.15, 0.7], 7)) == 7
    tasks = resolve_tasks("plus2,plus5")
    for p in build_mixture_prompts(tasks, [0.3, 0.7], n_prompts=4, n_examples=10):
        assert sorted(p.demo_tasks) == [0] * 3 + [1] * 7


def test_iid_sampling_varies_counts():
    tasks = resolve_tasks("plus2,plus5")
    ps = build_mixture_prompts(tasks, n_prompts=30, n_examples=10, sampling="iid")
    assert len({sum(p.demo_tasks) for p in ps}) > 1


def test_query_not_a_demo_and_answers_distinct():
    tasks = resolve_tasks("first_letter,last_letter,first_letter_upper")
    for p in build_mixture_prompts(tasks, n_prompts=30, n_examples=20, seed=1):
        lines = p.text.split("\n")
        assert lines[-1] == f"{p.query}->"
        assert all(not line.startswith(f"{p.query}->") for line in lines[:-1])
        assert len(set(p.answers)) == 3


def test_demo_lines_are_correct_answers():
    tasks = resolve_tasks("add,copy_op1")
    p = build_mixture_prompts(tasks, n_prompts=1, n_examples=12, seed=0)[0]
    for line, k in zip(p.text.split("\n")[:-1], p.demo_tasks, strict=True):
        x, y = line.split("->")
        assert tasks[k].answer(x) == y


def test_templates_move_whitespace_into_the_answer():
    tasks = resolve_tasks("capital,continent")
    p = build_mixture_prompts(tasks, n_prompts=1, n_examples=3, template="qa")[0]
    assert p.text.endswith("\nA:") and all(a.startswith(" ") for a in p.answers)
    p = build_mixture_prompts(tasks, n_prompts=1, n_examples=3, template="example")[0]
    assert p.text.split("\n")[0].startswith("example:") and p.text.endswith("->")
    assert TEMPLATES["gt"].demo == "{x}>{y}"
    p = build_mixture_prompts(resolve_tasks("plus1,plus2"), n_prompts=1, n_examples=3)[0]
    assert p.text.endswith(">") and "->" not in p.text


@pytest.mark.parametrize(
    "spec,k,match",
    [("0.5,0.6", 2, "sum to 1"), ("1/3,1/3", 3, "3 tasks"), ("a,b", 2, "cannot read")],
)
def test_bad_weights(spec, k, match):
    with pytest.raises(TslensError, match=match):
        parse_weights(spec, k)


def test_fraction_weights():
    assert parse_weights("1/3,2/3", 2) == pytest.approx([1 / 3, 2 / 3])


def test_colliding_tasks_and_bad_counts():
    with pytest.raises(TslensError, match="same answer for every query"):
        build_mixture_prompts(resolve_tasks("add,add_digits"), n_prompts=1, n_examples=5)
    with pytest.raises(TslensError, match="n-examples must be >= 1"):
        build_mixture_prompts(resolve_tasks("add,copy_op1"), n_prompts=1, n_examples=0)
    with pytest.raises(TslensError, match="must contain"):
        build_mixture_prompts(resolve_tasks("add,copy_op1"), n_prompts=1, template="{x}={z}")
