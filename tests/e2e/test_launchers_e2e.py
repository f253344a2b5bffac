"""Every launcher runs a small sweep to the end from the shell, as a user starts it: a fresh `regbench`
process (the installed console script) in a clean environment, with the sweep's report on.

tests/test_launchers.py drives the same launchers in-process, where the test process is the launcher's
parent; here nothing of the test process reaches the jobs (what Hydra pickles into them must survive
a real process boundary), and `python -c` calls the Python API in a fresh interpreter the same way.
"""

from __future__ import annotations

import csv
import json
import shlex
import sys
from pathlib import Path

import pytest
from e2e_env import require_console_script, run_process, shell, tail

pytestmark = pytest.mark.e2e

SMALL = ["trainer.epochs=1", "model.hidden=[16]", "sweep_name=s"]
LAUNCHERS = {  # id -> (overrides, cells)
    "default": ([], 2),  # hydra/launcher=vectorized: stacks in the sweep's process
    "basic": (["hydra/launcher=basic"], 2),
    "joblib": (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2),
    "submitit_local": (["hydra/launcher=submitit_local"], 2),
    "ray": (["hydra/launcher=ray", "hydra.launcher.local_cpus=2"], 2),
    # two jobs, each a stack of two cells
    "joblib-cells_per_job=2": (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.cells_per_job=2",
                                "dropout=standard", "dropout.p=0,0.5"], 4),
}
PLUGINS = {"joblib": "hydra_plugins.hydra_joblib_launcher", "submitit": "hydra_plugins.hydra_submitit_launcher",
           "ray": "ray"}


@pytest.fixture(autouse=True)
def _console_script():
    require_console_script()


def needs_plugin(overrides: list[str]) -> None:
    """The launcher's optional extra (make test installs every one)."""
    for name, module in PLUGINS.items():
        if any(o.startswith(f"hydra/launcher={name}") for o in overrides):
            pytest.importorskip(module, reason=f"hydra/launcher={name} needs its optional extra")


def summaries(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]


def assert_sweep_finished(sweep_dir: Path, cells: int, done, what: str) -> list[dict]:
    """Exit 0, one completed summary.json per cell, and the sweep's report."""
    assert done.code == 0, f"{what} exited {done.code}:\n{tail(done.output)}"
    found = summaries(sweep_dir)
    assert [s["status"] for s in found] == ["completed"] * cells, f"{what}: {sweep_dir}\n{tail(done.output)}"
    assert (sweep_dir / "report" / "report.md").is_file(), f"{what}: no report\n{tail(done.output)}"
    assert f"sweep finished: {cells} runs: {cells} completed" in done.output
    return found


# The docs run joblib, submitit_local and ray sweeps from the shell in `make test` (tests/e2e/test_docs_commands.py,
# exit code 0 each); their detailed checks here (every summary, the report) run with `make test-all`.
IN_THE_DOCS = {"joblib", "submitit_local", "ray"}


@pytest.mark.parametrize("launcher", [pytest.param(name, marks=pytest.mark.slow) if name in IN_THE_DOCS else name
                                      for name in LAUNCHERS])
def test_launcher_sweeps_to_the_end_from_the_shell(launcher, tmp_path):
    overrides, cells = LAUNCHERS[launcher]
    needs_plugin(overrides)
    command = shlex.join(["regbench", "run", "-m", "seed=0,1", *SMALL, *overrides])
    done = shell(command, tmp_path)
    found = assert_sweep_finished(tmp_path / "runs" / "s", cells, done, command)
    if "hydra.sweeper.cells_per_job=2" in overrides:
        assert [s["stack_cells"] for s in found] == [2] * cells
        assert len({s["stack_id"] for s in found}) == 2


def test_python_api_sweep_with_joblib_in_a_fresh_process(tmp_path):
    needs_plugin(["hydra/launcher=joblib"])
    code = (f"import regbench; result = regbench.sweep(['seed=0,1', {', '.join(map(repr, SMALL))}], "
            "launcher='joblib'); print('counts', result.counts)")
    done = run_process([str(Path(sys.executable).parent / "python"), "-c", code], tmp_path)  # __main__ has no file
    assert done.code == 0, tail(done.output)
    assert "counts {'completed': 2}" in done.output, tail(done.output)
    sweep_dir = tmp_path / "runs" / "s"
    assert [s["status"] for s in summaries(sweep_dir)] == ["completed"] * 2
    assert (sweep_dir / "report" / "report.md").is_file()


EXPERIMENT = """\
# @package _global_
defaults:
  - override /dropout: standard

name: my_exp
dropout:
  p: 0.3
model:
  hidden: [16]
trainer:
  epochs: 1

hydra:
  sweeper:
    params:
      seed: 0,1
"""


@pytest.mark.parametrize("order", [["-m", "--config-dir", "my_configs"], ["--config-dir", "my_configs", "-m"]],
                         ids=["-m --config-dir DIR", "--config-dir DIR -m"])
def test_own_experiment_sweeps_from_a_config_dir(order, tmp_path):
    """README: put experiment/my_exp.yaml in my_configs/ and sweep it; `-m` may stand anywhere."""
    (tmp_path / "my_configs" / "experiment").mkdir(parents=True)
    (tmp_path / "my_configs" / "experiment" / "my_exp.yaml").write_text(EXPERIMENT)
    command = shlex.join(["regbench", "run", *order, "+experiment=my_exp"])
    done = shell(command, tmp_path)
    sweeps = sorted((tmp_path / "runs").glob("sweep-my_exp-*")) if (tmp_path / "runs").is_dir() else []
    assert done.code == 0 and len(sweeps) == 1, f"{command} exited {done.code}: {sweeps}\n{tail(done.output)}"
    found = assert_sweep_finished(sweeps[0], 2, done, command)
    assert {s["seed"] for s in found} == {0, 1}


def test_one_cell_of_a_stacked_sweep_rerun_alone_has_the_same_curve(tmp_path):
    """README: a cell is a function of its config and seed. A stacked sweep with dropout and augmentation,
    then one of its cells alone (resume=false: trained again, not found), each in a fresh process."""
    grid = ["model=cnn", "model.channels=[4]", "dropout=spatial", "augment=flip_crop", "trainer.epochs=2",
            "dataset.train_size=200", "report=false"]
    swept = shell(shlex.join(["regbench", "run", "-m", "dropout.p=0.2,0.4", "seed=0,1", *grid, "sweep_name=s"]),
                  tmp_path)
    assert swept.code == 0, tail(swept.output)
    alone = shell(shlex.join(["regbench", "run", "dropout.p=0.4", "seed=1", *grid, "resume=false",
                              "results_dir=alone"]), tmp_path)
    assert alone.code == 0, tail(alone.output)
    [lone] = list((tmp_path / "alone").glob("*/summary.json"))
    cell = next(p for p in (tmp_path / "runs" / "s").glob("*/summary.json")
                if json.loads(p.read_text())["config_hash"] == json.loads(lone.read_text())["config_hash"])
    assert json.loads(cell.read_text())["stack_cells"] == 4 and json.loads(lone.read_text())["stack_cells"] == 1
    with open(cell.parent / "metrics.csv") as a, open(lone.parent / "metrics.csv") as b:
        rows = list(zip(csv.DictReader(a), csv.DictReader(b), strict=True))
    assert len(rows) == 2
    for stacked, lone_row in rows:  # the same draws; float rounding of batched vs single kernels only
        for k in ("train_loss", "val_loss", "val_acc"):
            assert float(stacked[k]) == pytest.approx(float(lone_row[k]), rel=1e-5, abs=1e-6), k
