"""Executes the notebooks, so the guide they reproduce cannot rot."""

import os

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat runs the notebooks (test-only dependency)")
nbclient = pytest.importorskip("nbclient", reason="nbclient runs the notebooks (test-only dependency)")

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "..", "notebooks")


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(NOTEBOOKS) if n.endswith(".ipynb")))
def test_notebook_runs(name, tmp_path):
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
