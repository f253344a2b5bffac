"""logger=[csv,mlflow]: what a run and a sweep put into MLflow, read back with MLflow's own client."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FAST, fast, read_metrics, read_summary, run_dirs

import regbench
from regbench.records import loggers

mlflow = pytest.importorskip("mlflow")  # installed by `make test` (extra "mlflow")


def _search(uri: str, experiment: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], order_by=["params.seed ASC"])


def test_logger_options_are_the_registry():
    conf = Path(regbench.__file__).parent / "conf" / "logger"
    assert sorted(p.stem for p in conf.glob("*.yaml")) == sorted(loggers.LOGGERS)



def test_mlflow_metrics_are_the_report_run_metrics(cli, tmp_path):
    """The numbers MLflow logs at a run's end (records.results.summary_metrics) are exactly the report's
    metric columns of that run (report/table.run_row), for a real run and for nested / absent / non-finite
    values: the two layers read one declaration of the names."""
    import math

    import pandas as pd

    from regbench.records.results import EXTRA_METRIC_PREFIXES, RUN_METRICS, summary_metrics
    from regbench.report.collect import Run
    from regbench.report.table import run_row

    code, _, _ = cli("run", *FAST, "dropout=standard", "dropout.p=0.25")
    assert code == 0
    (run_dir,) = run_dirs(tmp_path / "runs")
    made = {"final": {"val_acc": 0.5, "val_loss": float("nan")}, "test": {"acc": 0.75}, "best_epoch": 3,
            "epochs_completed": 4, "mc": {"nll": 0.2, "samples": 8, "by_rate": {"0.1": 0.4}},
            "calibration": {"ece": float("inf")}, "stopped_early": True, "seconds": 1.5}
    for summary in (read_summary(run_dir), made):
        row = run_row(Run(path="", config={}, summary=summary, metrics=pd.DataFrame()))
        columns = {k: float(v) for k, v in row.items()
                   if (k in RUN_METRICS or k.startswith(EXTRA_METRIC_PREFIXES)) and isinstance(v, (int, float))
                   and not isinstance(v, bool) and math.isfinite(v)}
        assert summary_metrics(summary) == columns
        assert "test.acc" in columns
    assert summary_metrics(made)["mc.by_rate.0.1"] == 0.4 and "calibration.ece" not in summary_metrics(made)

def test_single_run_logs_params_epochs_summary_and_files(cli, tmp_path):
    code, _, _ = cli("run", *FAST, "logger=mlflow", "dropout=standard", "dropout.p=0.25")
    assert code == 0
    (run_dir,) = run_dirs(tmp_path / "runs")
    summary, rows = read_summary(run_dir), read_metrics(run_dir)
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"  # the default store, under results_dir
    assert summary["mlflow"]["tracking_uri"] == uri and summary["mlflow"]["experiment"] == "regbench"
    found = _search(uri, "regbench")
    assert len(found) == 1
    run = found.iloc[0].to_dict()
    assert run["status"] == "FINISHED" and run["tags.regbench.run_dir"] == str(run_dir.resolve())
    assert run["run_id"] == summary["mlflow"]["run_id"] and run["tags.mlflow.runName"] == run_dir.name
    assert run["params.dropout.p"] == "0.25" and run["params.model.hidden"] == "[32]"
    assert run["params.trainer.epochs"] == "2" and run["tags.regbench.config_hash"] == summary["config_hash"]
    assert run["metrics.final.val_acc"] == pytest.approx(summary["final"]["val_acc"])
    assert run["metrics.test.acc"] == pytest.approx(summary["test"]["acc"])
    client = mlflow.MlflowClient(uri)
    history = client.get_metric_history(run["run_id"], "val_loss")
    assert [(m.step, m.value) for m in history] == [(int(r["epoch"]), pytest.approx(float(r["val_loss"])))
                                                    for r in rows]
    artifacts = {a.path for a in client.list_artifacts(run["run_id"])}
    assert {"config.yaml", "metrics.csv", "summary.json"} <= artifacts and ".running" not in artifacts
    local = Path(client.download_artifacts(run["run_id"], "metrics.csv", str(tmp_path / "dl")))
    assert local.read_text() == (run_dir / "metrics.csv").read_text()


@pytest.mark.parametrize("launcher", ["basic", "vectorized"])
def test_sweep_logs_one_mlflow_run_per_cell(tmp_path, monkeypatch, launcher):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'store' / 'm.db'}"
    result = regbench.sweep([*fast("model.hidden=[8]"), "seed=0,1", "logger=[csv,mlflow]",
                             f"logger.mlflow.tracking_uri={uri}"], launcher=launcher)
    assert result.completed
    if launcher == "vectorized":
        assert all(r.get("stack_cells") == 2 for r in result.runs)  # really stacked
    runs = _search(uri, result.dir.name)  # experiment = the sweep name
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    assert sorted(runs["tags.regbench.run_dir"]) == sorted(str(d.resolve()) for d in run_dirs(result.dir))
    assert runs["params.seed"].tolist() == ["0", "1"]
    client = mlflow.MlflowClient(uri)
    for run_id, run_dir in zip(runs["run_id"], runs["tags.regbench.run_dir"], strict=True):
        rows = read_metrics(Path(run_dir))
        history = client.get_metric_history(run_id, "train_acc")
        assert [m.step for m in history] == [1, 2]
        assert [m.value for m in history] == pytest.approx([float(r["train_acc"]) for r in rows])
        assert read_summary(Path(run_dir))["mlflow"]["run_id"] == run_id
    assert (tmp_path / "store" / ".mlartifacts").is_dir()  # artifacts beside the database, not in the cwd
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlartifacts").exists()


def test_experiment_name_and_csv_only(cli, tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert cli("run", *FAST, "logger=[csv,mlflow]", f"logger.mlflow.tracking_uri={uri}",
               "logger.mlflow.experiment=ablation")[0] == 0
    assert len(_search(uri, "ablation")) == 1
    assert cli("run", *FAST, "seed=5", "logger=csv")[0] == 0
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # csv only: no store is created


def test_a_failing_tracker_does_not_stop_the_run(cli, tmp_path, monkeypatch):
    from regbench.records.mlflow_logger import MlflowLogger

    def broken(self, row):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(MlflowLogger, "log_epoch", broken)
    code, out, err = cli("run", *FAST, "logger=mlflow")  # Hydra's job logging prints to stdout
    assert code == 0
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert read_summary(run_dir)["status"] == "completed" and len(read_metrics(run_dir)) == 2
    warnings = [line for line in (out + err).splitlines() if "logger=mlflow failed" in line]
    assert len(warnings) == 1 and "tracking server went away" in warnings[0]  # once, not once per epoch


def test_a_run_continued_from_its_checkpoint_continues_its_mlflow_run(cli, tmp_path, monkeypatch):
    from regbench.records import results
    append = results.MetricsWriter.append

    def interrupt_at_epoch_2(self, row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt  # as Ctrl-C would, after epoch 1's checkpoint
        append(self, row)

    args = [*FAST, "trainer.epochs=3", "trainer.checkpoint=true", "logger=mlflow"]
    with monkeypatch.context() as m:
        m.setattr(results.MetricsWriter, "append", interrupt_at_epoch_2)
        assert cli("run", *args)[0] == 130
    (run_dir,) = run_dirs(tmp_path / "runs")
    first = read_summary(run_dir)
    uri = first["mlflow"]["tracking_uri"]
    assert first["status"] == "interrupted" and _search(uri, "regbench")["status"].tolist() == ["KILLED"]

    assert cli("run", *args)[0] == 0
    assert run_dirs(tmp_path / "runs") == [run_dir] and read_summary(run_dir)["resumed_at_epoch"] == 1
    runs = _search(uri, "regbench")
    assert runs["run_id"].tolist() == [first["mlflow"]["run_id"]] and runs["status"].tolist() == ["FINISHED"]
    history = mlflow.MlflowClient(uri).get_metric_history(first["mlflow"]["run_id"], "val_loss")
    assert sorted(m.step for m in history) == [1, 2, 3]


def test_adding_mlflow_to_a_finished_sweep_logs_the_runs_it_has(tmp_path, monkeypatch):
    """Resume skips completed cells; logger=mlflow then mirrors them from their files, once."""
    monkeypatch.chdir(tmp_path)
    grid = [*FAST, "seed=0,1"]
    first = regbench.sweep(grid)
    again = regbench.sweep([*grid, "logger=[csv,mlflow]"])  # same sweep folder: nothing retrained
    assert again.dir == first.dir and all(r["skipped"] for r in again.runs)
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    runs = _search(uri, first.dir.name)
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    client = mlflow.MlflowClient(uri)
    for run_id, run_dir in zip(runs["run_id"], runs["tags.regbench.run_dir"], strict=True):
        rows, summary = read_metrics(Path(run_dir)), read_summary(Path(run_dir))
        assert summary["mlflow"]["run_id"] == run_id  # recorded: a third call logs nothing new
        history = client.get_metric_history(run_id, "val_loss")
        assert [(m.step, m.value) for m in history] == [(int(r["epoch"]), pytest.approx(float(r["val_loss"])))
                                                        for r in rows]
        assert runs.set_index("run_id").at[run_id, "metrics.test.acc"] == pytest.approx(summary["test"]["acc"])
    regbench.sweep([*grid, "logger=[csv,mlflow]"])
    assert len(_search(uri, first.dir.name)) == 2
