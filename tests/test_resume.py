"""Resume: completed configs are skipped by config hash, interrupted ones rerun, checkpoints
continue exactly; the shared run index survives parallel writers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import FAST, read_metrics, read_summary, run_dirs

from regbench.records import index as run_index

SLOW_ENOUGH = ["dataset=synthetic", "dataset.num_samples=3000", "model.hidden=[256,256]", "trainer.progress=false"]


def _not_timing(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _start(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "regbench.cli", "run", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_rerun_skips_a_completed_config_unless_resume_false(cli, tmp_path):
    assert cli("run", *FAST)[0] == 0
    code, out, err = cli("run", *FAST)
    assert code == 0 and "skipped" in out + err
    assert len(run_dirs(tmp_path / "runs")) == 1
    assert cli("run", *FAST, "resume=false")[0] == 0
    assert len(run_dirs(tmp_path / "runs")) == 2


def test_rerunning_an_interrupted_sweep_completes_only_the_missing_cells(tmp_path):
    # one cell after another, so that some cells have completed when SIGTERM comes (a stack: below)
    args = ["-m", "seed=0,1,2", "trainer.epochs=30", "hydra/launcher=basic", *SLOW_ENOUGH]
    proc = _start(tmp_path, *args)
    _wait_for(lambda: any(read_summary(d).get("status") == "completed"
                          for d in run_dirs(tmp_path / "runs") if (d / "summary.json").exists()))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    # SIGTERM stops the whole sweep, not just the current cell: 143 from inside a run, or the
    # default signal death when it lands between two runs (nothing is half-written then either).
    assert proc.returncode in (143, -signal.SIGTERM)
    first = {d.name: read_summary(d)["status"] for d in run_dirs(tmp_path / "runs") if (d / "summary.json").exists()}
    assert "completed" in first.values() and len(first) < 3
    assert list(first.values()).count("interrupted") <= 1

    again = subprocess.run([sys.executable, "-m", "regbench.cli", "run", *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "sweep finished: 3 runs: 3 completed" in again.stdout
    sweeps = {d.parent for d in run_dirs(tmp_path / "runs")}
    assert len(sweeps) == 1  # the same command resumes in the same sweep folder
    live = [d for d in run_dirs(tmp_path / "runs") if not read_summary(d).get("superseded_by")]
    assert sorted(read_summary(d)["seed"] for d in live) == [0, 1, 2]
    assert all(read_summary(d)["status"] == "completed" for d in live)
    for name, status in first.items():  # completed cells were not trained again
        if status == "completed":
            assert sum(1 for d in live if d.name == name) == 1


def test_checkpoint_resume_equals_an_uninterrupted_run(tmp_path):
    args = ["trainer.epochs=12", "trainer.checkpoint=true", "dropout=standard", "dropout.p=0.3", *SLOW_ENOUGH]
    proc = _start(tmp_path, *args)
    _wait_for(lambda: any(len(read_metrics(d)) >= 3 for d in run_dirs(tmp_path / "runs")
                          if (d / "metrics.csv").exists()))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    [run_dir] = run_dirs(tmp_path / "runs")
    assert read_summary(run_dir)["status"] == "interrupted"
    assert (run_dir / "checkpoint.pt").exists()

    again = subprocess.run([sys.executable, "-m", "regbench.cli", "run", *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert run_dirs(tmp_path / "runs") == [run_dir]  # continued in place
    resumed = read_summary(run_dir)
    assert resumed["status"] == "completed" and resumed["resumed_at_epoch"] >= 3
    assert not (run_dir / "checkpoint.pt").exists()

    ref = subprocess.run([sys.executable, "-m", "regbench.cli", "run", *args, "results_dir=ref"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    [ref_dir] = run_dirs(tmp_path / "ref")
    assert _not_timing(read_metrics(run_dir)) == _not_timing(read_metrics(ref_dir))
    assert read_summary(ref_dir)["test"] == resumed["test"]


def test_index_survives_parallel_writers(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()

    def write(i):
        for _ in range(25):
            run_index.mark_finished(str(tmp_path), run_dir, {"config_hash": f"h{i}", "status": "completed"})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / run_index.INDEX).read_text().splitlines()
    assert len(lines) == 200 and all(json.loads(line)["status"] == "completed" for line in lines)


def test_a_sweep_does_not_borrow_cells_from_another_sweep(cli, tmp_path):
    """Each sweep folder holds all of its cells (its report reads only that folder)."""
    assert cli("run", "-m", "seed=0,1", *FAST, "sweep_name=a")[0] == 0
    code, out, _ = cli("run", "-m", "seed=1,2", *FAST, "sweep_name=b")
    assert code == 0 and "skipped" not in out
    assert len(run_dirs(tmp_path / "runs" / "b")) == 2
    code, out, err = cli("run", *FAST, "seed=2")  # a single run may reuse any earlier run
    assert code == 0 and "skipped" in out + err


def test_rerunning_an_interrupted_stacked_sweep_trains_every_cell_again_and_supersedes_the_old(tmp_path):
    args = ["-m", "seed=0,1,2", "trainer.epochs=15", *SLOW_ENOUGH]  # the default launcher: one stack of 3
    proc = _start(tmp_path, *args)
    _wait_for(lambda: len(run_dirs(tmp_path / "runs")) == 3 and all(
        len(read_metrics(d)) >= 1 for d in run_dirs(tmp_path / "runs") if (d / "metrics.csv").exists()))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode in (143, -signal.SIGTERM)
    first = run_dirs(tmp_path / "runs")
    assert sorted(read_summary(d)["status"] for d in first) == ["interrupted"] * 3
    assert all(len(read_metrics(d)) >= 1 for d in first)  # whole rows kept

    again = subprocess.run([sys.executable, "-m", "regbench.cli", "run", *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "sweep finished: 3 runs: 3 completed" in again.stdout
    live = [d for d in run_dirs(tmp_path / "runs") if d not in first]
    assert sorted(read_summary(d)["seed"] for d in live) == [0, 1, 2]
    assert {read_summary(d)["stack_cells"] for d in live} == {3}
    assert len({read_summary(d)["stack_id"] for d in live}) == 1
    assert all(read_summary(d).get("superseded_by") in {x.name for x in live} for d in first)
