"""docs/examples/quickstart.ipynb runs end to end in a fresh kernel, writes nothing in the folder it runs in
(its runs go to a temporary folder), and is committed without outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")  # dev dependencies: installed by `make test`
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "examples" / "quickstart.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_runs_end_to_end_and_writes_nothing_where_it_runs(tmp_path, monkeypatch):
    # run where a user runs it, the notebook's own folder (a copy of it), with the kernel's temporary folder
    # here too, so its runs are found and removed with the test's
    folder, temp = tmp_path / "examples", tmp_path / "tmp"
    folder.mkdir()
    temp.mkdir()
    shutil.copy(NOTEBOOK, folder)
    monkeypatch.setenv("TMPDIR", str(temp))  # the kernel inherits it: tempfile.mkdtemp() makes the runs' folder there
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "{'completed': 4}" in text  # the sweep's counts
    assert "dropout.p=1.5 is out of range" in text  # the ConfigError cell
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the curve plot was drawn
    sweeps = list(temp.glob("regbench-quickstart-*/sweep-*"))
    assert len(sweeps) == 1 and len(list(sweeps[0].glob("*/summary.json"))) == 4
    assert [p.name for p in folder.iterdir()] == [NOTEBOOK.name]  # no runs, mlflow.db or .mlartifacts beside it
