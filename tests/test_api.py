"""The Python API (`import regbench`): loaders against the report's own tables, run/sweep against
the CLI (same messages, folders, resume), and a long-lived process calling them many times."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import FAST, fast, read_metrics, read_summary, run_dirs

import regbench
from regbench import ConfigError

GRID = [*FAST, "dropout=standard", "dropout.p=0,0.3", "seed=0,1"]  # 4 runs, 2 epochs each


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One 4-run sweep through regbench.sweep, shared by the loader tests (report=true: runs.csv too)."""
    root = tmp_path_factory.mktemp("api")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        grid = [o for o in GRID if o != "report=false"]
        result = regbench.sweep([*grid, "report=true", f"results_dir={root / 'runs'}"])
    finally:
        os.chdir(cwd)
    return result


def test_import_is_light():
    heavy = "('torch', 'pandas', 'hydra', 'omegaconf', 'mlflow')"
    code = f"import sys, regbench; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert {"load_runs", "load_curves", "load_groups", "run", "sweep", "ConfigError"} <= set(dir(regbench))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        regbench.nope  # noqa: B018


def test_sweep_returns_every_cell(swept):
    assert swept.completed and swept.counts == {"completed": 4}
    assert swept.dir.name.startswith("sweep-") and "dropout.p+seed" in swept.dir.name
    assert sorted(Path(r["run_dir"]) for r in swept.runs) == run_dirs(swept.dir)
    assert {(r["seed"], read_summary(Path(r["run_dir"]))["config_hash"]) for r in swept.runs} == {
        (r["seed"], r["config_hash"]) for r in swept.runs}


def test_load_runs_is_the_reports_runs_csv(swept):
    runs = regbench.load_runs(swept.dir)
    assert len(runs) == 4
    written = pd.read_csv(swept.dir / "report" / "runs.csv")  # the same sweep's report (callback)
    assert list(runs.columns) == list(written.columns)
    for column in ("dropout.p", "final.val_acc", "test.acc", "best.val_loss"):
        assert runs[column].dtype == "float64", column
    assert runs["seed"].dtype == "int64" and runs["epochs_completed"].dtype == "int64"
    assert runs["model.batchnorm"].dtype == bool
    assert sorted(zip(runs["dropout.p"], runs["seed"], strict=True)) == [(0.0, 0), (0.0, 1), (0.3, 0), (0.3, 1)]
    by_path = runs.set_index("path")
    for r in swept.runs:
        assert by_path.at[r["run_dir"], "final.val_acc"] == pytest.approx(r["final"]["val_acc"])


def test_load_curves_is_long_format(swept):
    curves = regbench.load_curves(swept.dir)
    assert len(curves) == 4 * 2  # runs x epochs
    metric_columns = list(read_metrics(Path(swept.runs[0]["run_dir"]))[0])
    assert set(metric_columns) <= set(curves.columns)
    assert {"run_id", "path", "status", "group", "label", "seed", "dropout.p"} <= set(curves.columns)
    assert curves["epoch"].dtype == "int64" and curves["val_acc"].dtype == "float64"
    assert sorted(curves["epoch"].unique()) == [1, 2]
    one = Path(swept.runs[0]["run_dir"])
    rows = curves[curves["path"] == str(one)].sort_values("epoch")
    assert rows["val_loss"].tolist() == pytest.approx([float(r["val_loss"]) for r in read_metrics(one)])


def test_load_groups_is_the_reports_groups_csv(swept):
    groups = regbench.load_groups(swept.dir)
    written = pd.read_csv(swept.dir / "report" / "groups.csv", index_col="group")
    assert len(groups) == 2 and groups.index.name == "group"
    assert list(groups.columns) == list(written.columns)
    assert groups["n"].tolist() == [2, 2]
    assert groups["final.val_acc.mean"].to_numpy() == pytest.approx(written["final.val_acc.mean"].to_numpy())
    runs = regbench.load_runs(swept.dir)
    mean_p0 = runs.loc[runs["dropout.p"] == 0, "final.val_acc"].mean()
    assert groups.loc[groups["dropout.p"] == 0, "final.val_acc.mean"].item() == pytest.approx(mean_p0)


def test_load_comparisons_is_the_reports_comparisons_csv(swept):
    comparisons = regbench.load_comparisons(swept.dir)
    written = pd.read_csv(swept.dir / "report" / "comparisons.csv")
    assert len(comparisons) == len(written) > 0 and list(comparisons.columns) == list(written.columns)
    assert comparisons["diff"].to_numpy() == pytest.approx(written["diff"].to_numpy(), nan_ok=True)
    # the same columns the report writes: the verdict's interval, the family, the margin
    assert {"ci95_low", "ci95_high", "p_adj", "family_m", "margin", "decision"} <= set(comparisons.columns)
    wide = regbench.load_comparisons(swept.dir, margin="0.5")  # a bare number: the headline metric's
    head = wide["metric"] == ("test.acc" if wide["metric"].eq("test.acc").any() else "final.val_acc")
    assert wide.loc[head, "margin"].eq(0.5).all() and wide.loc[~head, "margin"].ne(0.5).all()
    with pytest.raises(regbench.ConfigError, match="unknown metric 'nope'"):
        regbench.load_comparisons(swept.dir, margin="nope=0.1")


def test_loaders_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        regbench.load_runs(tmp_path / "does-not-exist")
    (tmp_path / "empty").mkdir()
    for loader in (regbench.load_runs, regbench.load_curves, regbench.load_groups):
        with pytest.raises(ConfigError, match="no runs found under") as info:
            loader(tmp_path / "empty")
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="no path given"):
        regbench.load_runs()


def _cli_message(cli, *args: str) -> str:
    code, _, err = cli("run", *args)
    assert code == 2
    return err.strip().removeprefix("regbench: error: ")


@pytest.mark.parametrize("overrides", [
    ["dropout.p=1.5"],
    ["model.hiddn=[8]"],
    ["dataset=imagenet"],
    ["logger=[csv,nosuch]"],
    ["seed=0,1"],  # a sweep value without the sweep
    # settings that only act in a sweep: refused by run() as by `regbench run` without -m
    ["hydra.sweeper.max_seeds=5"],
    ["hydra/launcher=basic"],
    ['margin="test.acc=0.02"'],
    ["report_format=[png,svg]"],
    ["seed=AUTO"],
    ["optim.schedule=multistep", "optim.milestones=5"],
])
def test_run_raises_the_cli_message(cli, tmp_path, overrides):
    expected = _cli_message(cli, *FAST, *overrides)
    with pytest.raises(ConfigError) as info:
        regbench.run([*FAST, *overrides])
    assert str(info.value) == expected
    assert list(tmp_path.iterdir()) == []


def test_sweep_raises_before_anything_runs(cli, tmp_path):
    expected = _cli_message(cli, *FAST, "-m", "dropout=standard", "dropout.p=0.2,1.5")
    with pytest.raises(ConfigError) as info:
        regbench.sweep([*FAST, "dropout=standard", "dropout.p=0.2,1.5"])
    assert str(info.value) == expected
    with pytest.raises(ConfigError, match="unknown hydra/launcher 'warp'"):
        regbench.sweep([*FAST, "seed=0,1"], launcher="warp")
    # a sweep takes the sweep-only settings run() refuses; max_seeds still needs seed=auto, as with -m
    expected = _cli_message(cli, *FAST, "-m", "seed=0,1", "hydra.sweeper.max_seeds=5")
    with pytest.raises(ConfigError) as info:
        regbench.sweep([*FAST, "seed=0,1", "hydra.sweeper.max_seeds=5"])
    assert str(info.value) == expected and "only applies with seed=auto" in expected
    assert list(tmp_path.iterdir()) == []


def test_flags_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"'-m'.*regbench.sweep"):
        regbench.run([*FAST, "-m", "seed=0,1"])
    with pytest.raises(ConfigError, match="'--cfg'"):
        regbench.sweep(["--cfg", "job"])
    with pytest.raises(ConfigError, match="both choose the launcher"):
        regbench.sweep(["seed=0,1", "hydra/launcher=basic"], launcher="vectorized")
    assert list(tmp_path.iterdir()) == []


def test_many_calls_in_one_process_leave_it_as_it_was(tmp_path, monkeypatch):
    """A notebook calls run/sweep again and again: resume works, and Hydra's global state, the root
    logger, sys.argv, the environment and the cwd are as before each call."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    before = (root.level, root.handlers[:], sys.argv[:], os.getcwd())
    try:
        first = regbench.run([*FAST, "seed=3"])
        again = regbench.run(" ".join([*FAST, "seed=3"]))  # one string is split like a shell line
        assert first["status"] == "completed" and again["skipped"] and again["run_dir"] == first["run_dir"]
        with pytest.raises(ConfigError):
            regbench.run(["dropout.p=2"])
        sweep1 = regbench.sweep([*FAST, "seed=0,1"])
        sweep2 = regbench.sweep([*FAST, "seed=0,1"])  # resumes in place: nothing retrained
        assert sweep1.dir == sweep2.dir and all(r.get("skipped") for r in sweep2.runs)
        assert len(run_dirs(tmp_path / "runs")) == 3
        with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
            outer = GlobalHydra.instance().hydra
            regbench.run([*FAST, "seed=4"])  # a notebook that holds its own Hydra gets it back
            assert GlobalHydra.instance().hydra is outer
        assert (root.level, root.handlers, sys.argv, os.getcwd()) == before
        assert "HYDRA_FULL_ERROR" not in os.environ and not GlobalHydra.instance().is_initialized()
    finally:
        root.removeHandler(handler)


def test_sweep_with_a_launcher_writes_the_same_folder_as_the_cli(cli, tmp_path):
    args = [*fast("model.hidden=[8]"), "seed=0,1"]
    result = regbench.sweep([*args, "results_dir=api"], launcher="vectorized")
    assert result.completed and all(r.get("stack_cells") == 2 for r in result.runs)
    code, out, _ = cli("run", "-m", *args, "results_dir=cli", "hydra/launcher=vectorized")
    assert code == 0
    assert result.dir.name == next((tmp_path / "cli").glob("sweep-*")).name  # same sweep folder name
    assert sorted(read_summary(d)["config_hash"] for d in run_dirs(result.dir)) == sorted(
        read_summary(d)["config_hash"] for d in run_dirs(tmp_path / "cli"))
