"""docs/examples/quickstart.ipynb runs end to end in a fresh kernel, and is committed without outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")  # dev dependencies: installed by `make test`
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "examples" / "quickstart.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_runs_end_to_end(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "{'completed': 4}" in text  # the sweep's counts
    assert "dropout.p=1.5 is out of range" in text  # the ConfigError cell
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the curve plot was drawn
    sweeps = list((tmp_path / "notebook-runs").glob("sweep-*"))
    assert len(sweeps) == 1 and len(list(sweeps[0].glob("*/summary.json"))) == 4
