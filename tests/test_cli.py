"""`tslens` end to end, and the one-line, exit-status-2 error convention."""

import json
import os
import subprocess
import sys

import pytest

from tslens.cli import main


def test_probs_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "probs",
            "--tasks",
            "capital,continent,upper",
            "--n-prompts",
            "3",
            "--n-examples",
            "6",
            "--seed",
            "1",
            "--weights",
            "1/2,1/4,1/4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads((out / "probs.json").read_text())
    for key in (
        "tasks",
        "weights",
        "model",
        "n_prompts",
        "mean_probs",
        "other",
        "kl",
        "per_prompt",
    ):
        assert key in data
    assert data["tasks"] == ["capital", "continent", "upper"] and data["n_prompts"] == 3
    assert data["weights"] == [0.5, 0.25, 0.25]
    row = data["per_prompt"][0]
    assert row["prompt"].endswith("->") and len(row["answers"]) == len(row["probs"]) == 3
    assert abs(sum(data["mean_probs"]) + data["other"] - 1) < 1e-9
    page = (out / "probs.html").read_text()
    assert "Plotly.newPlot" in page and "<script src=" not in page  # plotly.js inlined
    assert not list(out.glob(".*.tmp"))  # no temp files left behind
    assert "KL(in-context || model)" in capsys.readouterr().out


def test_same_seed_same_numbers(tmp_path):
    runs = []
    for name in ("a", "b"):
        main(
            [
                "probs",
                "--tasks",
                "plus2,plus5",
                "--n-prompts",
                "2",
                "--n-examples",
                "5",
                "--no-solved",
                "--out",
                str(tmp_path / name),
            ]
        )
        runs.append(json.loads((tmp_path / name / "probs.json").read_text()))
    assert runs[0] == runs[1]


def test_user_task_file_in_cli(tmp_path):
    task = tmp_path / "double.csv"
    task.write_text(
        "input,output,family\n" + "".join(f"{d},{2 * d % 10},digit\n" for d in range(10))
    )
    assert (
        main(
            [
                "probs",
                "--tasks",
                f"plus1,{task}",
                "--n-prompts",
                "2",
                "--n-examples",
                "4",
                "--no-solved",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["--tasks", "captal,continent"], "unknown task 'captal'.*did you mean: capital"),
        (["--tasks", "capital,continent", "--weights", "0.5,0.6"], "sum to 1"),
        (["--tasks", "capital,continent", "--weights", "1/3,1/3,1/3"], "3 weights for 2 tasks"),
        (["--tasks", "capital,continent", "--n-examples", "0"], "n-examples must be >= 1"),
        (["--tasks", "add,add_digits"], "same answer for every query"),
        (["--tasks", "capital,first_letter"], "share an input family"),
        (
            ["--tasks", "capital,upper", "--n-examples", "400", "--n-prompts", "1"],
            "'s context of",
        ),
        (["--tasks", "capital,upper", "--model", "./missing/model"], "does not exist"),
        (
            ["--tasks", "capital,upper", "--model", "someone/not-cached-model"],
            "cannot reach the Hugging Face hub",
        ),
        (["--tasks", "capital,upper", "--template", "{x}"], "must contain"),
        (["--tasks", "capital", "--n-prompts", "0"], "must be >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    import re

    assert main(["probs", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "o" / "probs.json").exists()


@pytest.mark.parametrize("content", ["", "input,output\n", "{broken"])
def test_empty_or_malformed_task_file(tmp_path, capsys, content):
    bad = tmp_path / ("bad.csv" if content.startswith("input") or not content else "bad.json")
    bad.write_text(content)
    assert main(["probs", "--tasks", f"capital,{bad}", "--out", str(tmp_path / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_console_script_error_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tslens.cli", "probs", "--tasks", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("tslens: error: unknown task") and "Traceback" not in proc.stderr
    tasks = subprocess.run(
        [sys.executable, "-m", "tslens.cli", "tasks"], capture_output=True, text=True
    )
    assert tasks.returncode == 0 and "capital" in tasks.stdout and "ret7" in tasks.stdout


def test_cli_reference_is_generated_from_the_current_help():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "references.py"
    done = subprocess.run([sys.executable, str(script), "--check", "cli"], capture_output=True)
    assert done.returncode == 0, "docs/cli.md is stale: run python scripts/references.py"


def test_api_reference_is_generated_from_the_current_code():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "references.py"
    done = subprocess.run([sys.executable, str(script), "--check", "api"], capture_output=True)
    assert done.returncode == 0, "docs/api.md is stale: run python scripts/references.py"


HEAVY = ("torch", "transformers", "transformer_lens", "plotly")
IMPORTED = f"import sys; print([m for m in {HEAVY} if m in sys.modules])"


@pytest.mark.parametrize(
    "call",
    [
        "from tslens.cli import build_parser; build_parser().format_help()",
        "from tslens.cli import main; main(['models'])",
        "from tslens.cli import main; main(['tasks'])",
        # bad input that needs no model: refused before torch is imported
        "from tslens.cli import main; main(['probs', '--tasks', 'plus1,plus2', '--out', '{file}'])",
        "from tslens.cli import main; main(['probs', '--tasks', 'plus1,plus2', '--seed', '-1', "
        "'--out', '{out}'])",
        "from tslens.cli import main; main(['probs', '--tasks', 'nope', '--out', '{out}'])",
    ],
    ids=["help", "models", "tasks", "out-is-a-file", "negative-seed", "unknown-task"],
)
def test_help_listings_and_model_free_refusals_import_no_torch(call, tmp_path):
    (tmp_path / "file").write_text("")
    code = call.format(file=tmp_path / "file", out=tmp_path / "out") + "; " + IMPORTED
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr


def test_the_parser_offers_every_head_method():
    from tslens.analyses.head.heads import METHODS
    from tslens.cli import heads

    assert heads.METHODS == METHODS


def test_a_command_says_what_it_is_doing_between_its_progress_bars(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TSLENS_QUIET"}
    proc = subprocess.run(
        [sys.executable, "-m", "tslens.cli", "probs", "--tasks", "plus2,plus5", "--n-prompts",
         "2", "--n-examples", "4", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "tslens: loading tslens-char-3l4h" in proc.stderr
    assert "scoring + beam search" in proc.stderr and "beam step" in proc.stderr
    assert "solved (top-2)" in proc.stdout and "tasks solved per prompt" in proc.stdout
