"""The notebooks run top to bottom (01-04 on the embedded model, 05-06 on Gemma-3-270M, which
the README's test command installs) and are stored without outputs."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == [
        "01_superposition.ipynb",
        "02_task_vectors.ipynb",
        "03_heads.ipynb",
        "04_train_your_own.ipynb",
        "05_gemma.ipynb",
        "06_demonstrations.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_is_stored_stripped(path):
    if "gemma-3-270m" in path.read_text():  # as in test_pretrained: skipped without the
        # package, never in CI
        from tslens.sources.pretrained import PRETRAINED

        entry = PRETRAINED["gemma-3-270m"]
        if not entry.installed():
            if os.environ.get("CI"):
                pytest.fail(f"gemma-3-270m is not installed in CI: {entry.install}")
            pytest.skip(f"gemma-3-270m is not installed ({entry.install})")
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs"
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})  # fmt: skip
    client.execute()  # raises CellExecutionError on the first failing cell
    figures = [
        o for c in code for o in c.outputs if "application/vnd.plotly.v1+json" in o.get("data", {})
    ]
    assert figures, "the notebook shows plotly figures inline"
    html = "".join(o.get("data", {}).get("text/html", "") for c in code for o in c.outputs)
    # offline: plotly.js itself is in the notebook (once), never fetched from a CDN
    assert html.count("plotly.js v") == 1 and 'src="https://cdn.plot.ly' not in html
    warnings = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert "IProgress not found" not in warnings  # the widgets tqdm needs are installed
