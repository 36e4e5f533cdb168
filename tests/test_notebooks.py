"""The notebooks execute (nbclient, the venv's own kernel) in a temporary working directory, and are
committed with their outputs stripped."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("01_dataset.ipynb", "02_predictions.ipynb")
TIMEOUT = 180  # per cell, seconds; each notebook takes well under a minute


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernelspec running this interpreter (the venv with the package), whatever other kernels exist."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "wholebody-tests"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "wholebody tests", "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root) + (os.pathsep + os.environ["JUPYTER_PATH"] if os.environ.get("JUPYTER_PATH") else ""))
        yield "wholebody-tests"


def _run(name: str, kernel: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=TIMEOUT, kernel_name=kernel, resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def _figures(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.parametrize("data", ["real", "synthetic"])
def test_dataset_notebook_runs(data, kernel, tmp_path, monkeypatch, request):
    if data == "real":
        sample = request.getfixturevalue("real_sample")
        monkeypatch.setenv("WHOLEBODY_SHARED", str(sample.parents[1]))
    else:  # a user's clone: no shared sample, the notebook renders a synthetic set
        monkeypatch.setenv("WHOLEBODY_SHARED", str(tmp_path / "no_shared"))
    nb = _run("01_dataset.ipynb", kernel, tmp_path)
    text = _text(nb)
    assert ("the real COCO-WholeBody sample" if data == "real" else "a synthetic set") in text
    assert "face:" in text and "hand:" in text and _figures(nb) >= 5
    assert (tmp_path / "notebook_outputs" / "01_dataset" / "stats" / "stats.json").is_file()


def test_predictions_notebook_runs(kernel, tmp_path, monkeypatch, memorised):
    # the memorised checkpoint the other inference tests use (the notebook would make the same one)
    monkeypatch.setenv("WHOLEBODY_MEMORISED_DIR", str(memorised.ckpt.parent))
    monkeypatch.delenv("WHOLEBODY_CKPT", raising=False)
    nb = _run("02_predictions.ipynb", kernel, tmp_path)
    text = _text(nb)
    assert "using a memorised one" in text and "wholebody" in text and "median keypoint error" in text
    assert _figures(nb) >= 4
    assert (tmp_path / "notebook_outputs" / "02_predictions" / "predict" / "results.json").is_file()
