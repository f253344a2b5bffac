"""An installed (non-editable) regbench works from any folder: configs and the sweeper ship in the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """Build the wheel and install it (without dependencies) into a private folder."""
    work = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(ROOT)],
                   check=True, capture_output=True)
    [wheel] = (work / "dist").glob("regbench-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(work / "site"), str(wheel)],
                   check=True, capture_output=True)
    return work / "site"


def _regbench(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed copy shadows the source checkout
    code = "import sys, regbench, regbench.cli as c; print('FROM', regbench.__file__); sys.exit(c.main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_wheel_runs_and_sweeps_from_another_folder(installed, tmp_path):
    single = _regbench(installed, tmp_path, "run", "trainer.epochs=1", "model.hidden=[16]")
    assert single.returncode == 0, single.stderr
    assert f"FROM {installed}" in single.stdout  # really the installed copy, not the checkout
    assert "results: runs/" in single.stdout
    sweep = _regbench(installed, tmp_path, "run", "-m", "seed=0,1", "trainer.epochs=1", "model.hidden=[16]",
                      "+experiment=mlp_dropout", "dropout.p=0.3")  # command line beats the experiment grid
    assert sweep.returncode == 0, sweep.stderr
    assert "sweep finished: 2 runs: 2 completed" in sweep.stdout
    listing = _regbench(installed, tmp_path, "list")
    assert "mlp_dropout" in listing.stdout and "digits" in listing.stdout
