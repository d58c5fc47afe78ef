"""examples/replay.ipynb runs top to bottom on the venv's python (nbclient, the ipykernel of this venv).

The notebook asserts its own invariant (each policy's decomposition adds up to its shortfall); here
we check that every cell ran, the metrics cell shows every policy, and the last cell is the report.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "replay.ipynb"


@pytest.mark.slow
def test_the_example_notebook_runs(tmp_path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))  # which python ran it
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)

    def text(cell) -> str:
        return "".join(str(o.get("data", {}).get("text/plain", o.get("text", ""))) for o in cell.outputs)

    headline = text(code[0])
    assert "shortfall" in headline.lower()
    for name in ("binance", "fba", "hybrid", "hybrid-steep"):
        assert name in text(code[1])
    assert "decomposition adds up" in text(code[3])
    assert text(code[-1]).strip() == sys.prefix  # the kernel is this venv's python
    report = code[-2].outputs[0]["data"]["text/html"]
    assert report.startswith("<iframe") and "plotly" in report
    assert not list(tmp_path.iterdir())  # nothing written unless asked
