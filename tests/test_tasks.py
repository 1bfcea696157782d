import json

import numpy as np
import pytest

from tslens.errors import TslensError
from tslens.tasks import Family, Task, get_task, list_tasks, register_task, resolve_tasks

REQUIRED = (
    "copy_op1 copy_op2 add add_en add_fr add_es add_digits capital continent upper currency "
    "first_letter last_letter first_letter_upper last_letter_upper".split()
    + [f"plus{b}" for b in range(10)]
    + [f"ret{i}" for i in range(8)]
)


def test_registry_has_every_required_task():
    names = {t.name for t in list_tasks()}
    assert set(REQUIRED) <= names


@pytest.mark.parametrize(
    "name,x,y",
    [
        ("copy_op1", "12@34", "12"),
        ("copy_op2", "12@34", "34"),
        ("add", "12@34", "46"),
        ("add_digits", "99@99", "198"),
        ("add_en", "12@34", "forty-six"),
        ("add_fr", "10@10", "vingt"),
        ("add_es", "12@34", "cuarenta y seis"),
        ("capital", "Nepal", "Kathmandu"),
        ("continent", "Brazil", "South America"),
        ("upper", "Nepal", "NEPAL"),
        ("currency", "Japan", "Yen"),
        ("first_letter", "table", "t"),
        ("last_letter_upper", "table", "E"),
        ("plus7", "5", "2"),
        ("ret2", "abcdefgh", "c"),
    ],
)
def test_task_answers(name, x, y):
    assert get_task(name).answer(x) == y


def test_families_and_generated_inputs():
    assert get_task("capital").family.name == get_task("upper").family.name == "country"
    xs = get_task("ret0").family.sample(np.random.default_rng(0), 50)
    assert all(len(x) == 8 and len(set(x)) == 8 and x.islower() for x in xs)
    assert len(get_task("add").family.pool) == 90 * 90


def test_unknown_task_suggests_close_names():
    with pytest.raises(TslensError, match="did you mean: capital"):
        get_task("captal")


def test_mixing_families_is_refused():
    with pytest.raises(TslensError, match="share an input family"):
        resolve_tasks("capital,first_letter")


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_user_task_files(tmp_path, suffix):
    rows = [{"input": "Nepal", "output": "Nepali"}, {"input": "France", "output": "French"}]
    path = tmp_path / f"lang{suffix}"
    if suffix == ".csv":
        path.write_text("input,output\n" + "".join(f"{r['input']},{r['output']}\n" for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = get_task(str(path))
    assert task.answer("Nepal") == "Nepali" and set(task.family.pool) == {"Nepal", "France"}


def test_user_task_file_with_family_mixes_with_builtin(tmp_path):
    path = tmp_path / "demonym.jsonl"
    path.write_text(
        "".join(
            json.dumps({"input": c, "output": d, "family": "country"}) + "\n"
            for c, d in [("Nepal", "Nepali"), ("France", "French"), ("Japan", "Japanese")]
        )
    )
    tasks = resolve_tasks(f"capital,{path}")
    assert [t.family.name for t in tasks] == ["country", "country"]


@pytest.mark.parametrize(
    "content,match",
    [("", "malformed|no input/output"), ("{not json", "malformed"), ('{"a": 1}\n', "columns")],
)
def test_bad_task_files(tmp_path, content, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(TslensError, match=match):
        get_task(str(path))


def test_missing_task_file():
    with pytest.raises(TslensError, match="does not exist"):
        get_task("/nonexistent/task.csv")


def test_register_python_function_task():
    fam = Family("digit", load_pool=lambda: tuple("0123456789"), template="gt")
    register_task(Task("double_mod10", fam, lambda x: str(2 * int(x) % 10)), overwrite=True)
    tasks = resolve_tasks("double_mod10,plus1")
    assert tasks[0].answer("7") == "4"
