"""Hydra launchers (docs/scaling_out.md): threads rule, GPU slots, the missing-extra message, and
the same sweep through basic / joblib / submitit_local giving the same runs.

The sweeps (slow: every job process imports torch) are shared by the tests below them.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from regbench.sweeps import launchers
from regbench.sweeps.launchers import JOBLIB, SUBMITIT_LOCAL, SUBMITIT_SLURM

# ---------------------------------------------------------------------------- threads rule (pure)


@pytest.mark.parametrize("n_jobs, cores, expected", [(-1, 2, 2), (-1, 16, 16), (-2, 16, 15), (-99, 4, 1),
                                                     (3, 2, 3), (None, 8, 1), (0, 8, 1)])
def test_effective_n_jobs_follows_joblib(n_jobs, cores, expected):
    assert launchers.effective_n_jobs(n_jobs, cores) == expected


@pytest.mark.parametrize("cores", [1, 2, 3, 8, 16])
@pytest.mark.parametrize("n_jobs", [1, 2, 3, 5, 16, 32])
def test_threads_rule_never_oversubscribes(cores, n_jobs):
    threads = launchers.threads_per_job(cores, n_jobs)
    assert threads >= 1
    assert min(n_jobs, cores) * threads <= cores  # jobs beyond the cores get 1 thread: cannot do better


def test_job_threads_per_launcher():
    cfg = OmegaConf.create
    assert launchers.job_threads(cfg({"_target_": JOBLIB, "n_jobs": -1}), 2) == 1
    assert launchers.job_threads(cfg({"_target_": JOBLIB, "n_jobs": 2}), 16) == 8
    assert launchers.job_threads(cfg({"_target_": SUBMITIT_LOCAL, "cpus_per_task": None}), 16) == 1
    assert launchers.job_threads(cfg({"_target_": SUBMITIT_SLURM, "cpus_per_task": 4}), 64) == 4
    assert launchers.job_threads(cfg({"_target_": SUBMITIT_SLURM, "cpus_per_task": None}), 64) is None
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert launchers.job_threads(cfg({"_target_": basic}), 2) is None
    assert launchers.job_threads(None, 2) is None


# ---------------------------------------------------------------------------- GPU slots (pure, no GPU needed)


@pytest.mark.parametrize("n_gpus", [0, 1])
def test_no_gpu_choice_with_zero_or_one_gpu(n_gpus):
    assert all(launchers.gpu_for_job(j, n_gpus) is None for j in range(10))


@pytest.mark.parametrize("n_gpus", [2, 3, 4, 8])
@pytest.mark.parametrize("jobs_per_gpu", [1, 2, 3])
def test_gpu_round_robin_puts_jobs_per_gpu_on_each_device(n_gpus, jobs_per_gpu):
    n_jobs = n_gpus * jobs_per_gpu  # hydra.launcher.n_jobs: the jobs that run at once
    for start in range(0, 3 * n_jobs):  # any window of n_jobs consecutive job numbers
        devices = [launchers.gpu_for_job(j, n_gpus) for j in range(start, start + n_jobs)]
        assert sorted(devices) == sorted(list(range(n_gpus)) * jobs_per_gpu)
    assert [launchers.gpu_for_job(j, 2) for j in range(4)] == [0, 1, 0, 1]


@pytest.fixture
def fresh_pin(monkeypatch):
    monkeypatch.setattr(launchers, "_pinned", None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # records the real value, restored after the test
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    return monkeypatch


def test_pin_gpu_picks_from_the_visible_devices(fresh_pin):
    fresh_pin.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert launchers.pin_gpu(job_num=1) == "5"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert launchers.pin_gpu(job_num=2) == "5"  # a reused worker keeps its device


@pytest.mark.parametrize("visible", ["", "7"])
def test_pin_gpu_does_nothing_with_zero_or_one_visible_gpu(fresh_pin, visible):
    fresh_pin.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert launchers.pin_gpu(job_num=3) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible


def test_pin_gpu_without_env_uses_the_device_count(fresh_pin):
    import torch

    fresh_pin.setattr(torch.cuda, "device_count", lambda: 0)
    assert launchers.pin_gpu(job_num=0) is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    fresh_pin.setattr(torch.cuda, "device_count", lambda: 4)
    fresh_pin.setattr(torch.cuda, "is_initialized", lambda: False)
    assert launchers.pin_gpu(job_num=6) == "2" and os.environ["CUDA_VISIBLE_DEVICES"] == "2"


# ---------------------------------------------------------------------------- missing extra, SLURM example


def test_missing_launcher_plugin_names_the_extra(cli, monkeypatch):
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # discover installed plugins first, then hide joblib's config as if not installed
    monkeypatch.delitem(ConfigStore.instance().repo["hydra"]["launcher"], "joblib.yaml", raising=False)
    code, out, err = cli("run", "-m", "hydra/launcher=joblib", "seed=0,1")
    assert code == 2
    assert err.strip() == 'regbench: error: hydra/launcher=joblib needs the optional extra: pip install -e ".[cluster]"'
    code, _, err = cli("run", "-m", "hydra/launcher=nope", "seed=0,1")
    assert code == 2 and "unknown hydra/launcher 'nope'; valid choices: basic" in err


def test_slurm_example_renders_an_sbatch_script(make_cfg, tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_module
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    (tmp_path / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit refuses to start without srun on PATH
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm_example"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert params.pop("_target_") == SUBMITIT_SLURM
    params.pop("submitit_folder"), params.pop("name")
    # what hydra-submitit-launcher does with the config (SlurmLauncher.launch)
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "%j",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m x", "uid")
    for line in ("--partition=gpu", "--gpus-per-task=1", "--cpus-per-task=4", "--time=60", "--mem=16GB"):
        assert f"#SBATCH {line}" in script


# ---------------------------------------------------------------------------- real sweeps through the launchers

SWEEP = ["-m", "seed=0,1", "trainer.epochs=2", "trainer.progress=false", "model.hidden=[32]", "sweep_name=s"]
TIMING_COLUMNS = {"path", "run_id", "seconds"}  # differ between any two runs of the same config


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, Path]:
    """The same 2-run sweep through each launcher, each in its own folder (results_dir=runs, relative).

    The CLI runs in-process (the launcher's parent); joblib and submitit jobs run in their own
    processes, so the task function is pickled and the jobs see none of the parent's argv rewriting.
    basic runs with one torch thread, as the parallel jobs do on 2 cores: then the metrics must be
    equal bit for bit (a different thread count changes float sums in the last bits).
    """
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import torch

    from regbench.cli.commands import main

    root = tmp_path_factory.mktemp("launchers")
    out = {}
    threads = torch.get_num_threads()
    for name, extra in [("basic", ["hydra/launcher=basic"]),
                        ("joblib", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]),
                        ("submitit_local", ["hydra/launcher=submitit_local"]),
                        # absolute: joblib's worker processes outlive the sweep above, in its folder
                        ("joblib_stacks", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                           "hydra.sweeper.cells_per_job=2", f"results_dir={root}/joblib_stacks/runs"])]:
        (root / name).mkdir()
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(root / name)
            torch.set_num_threads(1 if name == "basic" else threads)
            try:
                assert main(["run", *SWEEP, *extra]) == 0, name
            finally:
                torch.set_num_threads(threads)
        out[name] = root / name / "runs" / "s"
    return out


def _runs(sweep_dir: Path) -> dict[str, dict]:
    runs = {}
    for path in sweep_dir.glob("*/summary.json"):
        summary = json.loads(path.read_text())
        with open(path.parent / "metrics.csv", newline="") as f:
            metrics = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
        runs[summary["config_hash"]] = {"summary": summary, "metrics": metrics,
                                        "config": (path.parent / "config.yaml").read_text()}
    return runs


def _report_rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "report" / "runs.csv", newline="") as f:
        rows = [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]
    return sorted(rows, key=lambda r: r["config_hash"])


def assert_same_report_rows(rows: list[dict], expected: list[dict], name: str = "") -> None:
    """rows == expected, and where not, the message names each column that differs with both sides' values."""
    assert len(rows) == len(expected), (name, len(rows), len(expected))
    differ = sorted({k for r, e in zip(rows, expected, strict=True) for k in r.keys() | e.keys()
                     if r.get(k) != e.get(k)})
    assert differ == [], (name, [(k, [r.get(k) for r in rows], [e.get(k) for e in expected]) for k in differ])


@pytest.mark.slow
def test_parallel_jobs_do_not_oversubscribe_the_cores(sweeps):
    runs = _runs(sweeps["joblib"])
    assert len(runs) == 2
    cores = os.cpu_count()
    threads = [r["summary"]["threads"] for r in runs.values()]
    assert all(t == max(1, launchers.usable_cores() // 2) for t in threads)
    assert len(threads) * max(threads) <= max(cores, len(threads))  # 2 jobs × threads <= cores
    submitit_threads = {r["summary"]["threads"] for r in _runs(sweeps["submitit_local"]).values()}
    assert submitit_threads == {1}


@pytest.mark.slow
def test_submitit_local_keeps_folders_index_report_and_resume(sweeps, cli, monkeypatch):
    sweep_dir = sweeps["submitit_local"]
    runs = _runs(sweep_dir)
    assert len(runs) == 2 and all(r["summary"]["status"] == "completed" for r in runs.values())
    assert (sweep_dir / "report" / "report.md").exists()  # the parent's on_multirun_end callback ran
    index = [json.loads(line) for line in (sweep_dir.parent / ".regbench-index.jsonl").read_text().splitlines()]
    assert sorted(e["status"] for e in index) == ["completed", "completed", "running", "running"]
    # the same sweep again (basic launcher, in-process): both cells are found in the index and skipped
    monkeypatch.chdir(sweep_dir.parent.parent)
    code, out, err = cli("run", *SWEEP)
    assert code == 0 and "resume: 2 finished runs skipped" in out, out + err
    assert len(list(sweep_dir.glob("*/summary.json"))) == 2


@pytest.mark.slow
def test_same_sweep_same_runs_through_every_launcher(sweeps):
    basic = _runs(sweeps["basic"])
    assert len(basic) == 2
    for name in ("joblib", "submitit_local"):
        other = _runs(sweeps[name])
        assert other.keys() == basic.keys(), name  # same config hashes
        for h, run in basic.items():
            assert other[h]["config"] == run["config"], name
            assert other[h]["metrics"] == run["metrics"], name  # all but the `seconds` column
        assert_same_report_rows(_report_rows(sweeps[name]), _report_rows(sweeps["basic"]), name)


@pytest.mark.slow
def test_cells_per_job_hands_each_launcher_job_a_stack(sweeps):
    runs = _runs(sweeps["joblib_stacks"])
    basic = _runs(sweeps["basic"])
    assert runs.keys() == basic.keys()  # the same cells, each in its own run folder
    for h, run in runs.items():
        assert run["summary"]["stack_cells"] == 2 and run["summary"]["status"] == "completed"
        placed = f"results_dir={sweeps['joblib_stacks'].parent}"  # this sweep's absolute results_dir
        assert run["config"].replace(f"results_dir: {sweeps['joblib_stacks'].parent}", "results_dir: runs") == \
            basic[h]["config"]
        assert run["summary"]["command"].replace(" " + placed, "") == basic[h]["summary"]["command"]  # no stack trace
        for a, b in zip(run["metrics"], basic[h]["metrics"], strict=True):  # no dropout: equal up to rounding
            assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), abs=1e-5)
    assert (sweeps["joblib_stacks"] / "report" / "report.md").exists()


def test_cells_per_job_below_one_is_refused(cli):
    code, out, err = cli("run", "-m", "seed=0,1", "hydra.sweeper.cells_per_job=0", "trainer.epochs=1", "report=false")
    assert code == 2 and "hydra.sweeper.cells_per_job=0" in err and "valid" in err
