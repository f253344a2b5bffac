"""Faults under stacking (issue 23, and issue 20's "bad input and faults"), on real processes and files:
runs that end before their first epoch (kill -9, SIGTERM, a full tmpfs), two identical sweeps started
at once, a report on a sweep still writing, one cell of a stack failing or diverging, bad values and a
results_dir in the way, and the time columns of a stack. Every case under the stacking launcher
(`hydra/launcher=vectorized`) and, where the launcher matters, the one-at-a-time one (`basic`).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import fast, read_metrics, read_summary, run_dirs
from test_machine_failures import read_only, tiny_fs  # noqa: F401 - tiny_fs: a real 300 KiB tmpfs (root only)

from regbench.records import claims, folder
from regbench.records import index as run_index

# The stacking launcher, and the one-at-a-time one; where a test runs real sweeps for seconds, the
# second is marked slow (the suite's time), the first runs always.
LAUNCHERS = ["vectorized", "basic"]
SLOW_SECOND = ["vectorized", pytest.param("basic", marks=pytest.mark.slow)]
EXE = Path(sys.executable).with_name("regbench")
# a first epoch of 400 single-example steps: long enough to kill a sweep before it ends, short to rerun
SLOW_FIRST_EPOCH = fast("trainer.epochs=1", "trainer.batch_size=1", "dataset.train_size=400")


def _start(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(EXE), "run", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the sweep ended early:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _rows(path: Path) -> int:
    try:
        return len(path.read_text().splitlines()) - 1
    except OSError:
        return -1


def _report_rows(cli, root: Path, out: Path) -> list[dict]:
    code, stdout, err = cli("report", str(root), "--out", str(out))
    assert code == 0, err
    assert "skipped" not in err and "Traceback" not in err, err
    with open(out / "runs.csv", newline="") as f:
        return list(csv.DictReader(f))


def _one_line(err: str, code: int, expected_code: int, *texts: str) -> None:
    lines = err.strip().splitlines()
    assert code == expected_code and len(lines) == 1 and lines[0].startswith("regbench: error: "), (code, err)
    assert "Traceback" not in err
    for text in texts:
        assert text in lines[0], (text, lines[0])


# ---------------------------------------------------------------------------- before the first epoch


@pytest.mark.parametrize("launcher", SLOW_SECOND)
def test_a_sweep_killed_before_its_first_epoch_is_killed_runs_and_resumes(cli, tmp_path, launcher):
    root = tmp_path / "runs"
    args = ["-m", f"hydra/launcher={launcher}", *SLOW_FIRST_EPOCH, "seed=0,1,2", f"results_dir={root}"]
    proc = _start(tmp_path, *args)
    cells = 3 if launcher == "vectorized" else 1  # a stack opens every cell's folder at once
    try:
        _wait_for(lambda: sum((d / "metrics.csv").exists() for d in run_dirs(root)) >= cells, proc)
    finally:
        proc.kill()
        proc.wait()
    folders = run_dirs(root)
    assert len(folders) == cells and all(_rows(d / "metrics.csv") == 0 for d in folders), "killed after an epoch"

    rows = _report_rows(cli, root, tmp_path / "report")  # before: exit 2, "no readable runs"
    assert sorted(r["status"] for r in rows) == ["killed"] * cells
    assert "killed" in (tmp_path / "report" / "report.md").read_text()
    import regbench

    assert list(regbench.load_runs(root)["status"]) == ["killed"] * cells  # the Python API reads them too

    code, out, err = cli("run", *args)  # resume: the killed cells train again, one line says so
    assert code == 0, err
    assert f"resume: {cells} unfinished rerun" in out and out.count("resume:") == 1, out
    assert all(read_summary(d)["superseded_by"] for d in folders)
    assert sorted(read_summary(d)["status"] for d in run_dirs(root) if d not in folders) == ["completed"] * 3


def test_a_stack_interrupted_before_its_first_epoch_says_interrupted(cli, tmp_path):
    root = tmp_path / "runs"
    proc = _start(tmp_path, "-m", "hydra/launcher=vectorized", *SLOW_FIRST_EPOCH, "seed=0,1,2", f"results_dir={root}")
    _wait_for(lambda: sum((d / "metrics.csv").exists() for d in run_dirs(root)) == 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    folders = run_dirs(root)
    assert all(_rows(d / "metrics.csv") == 0 for d in folders), "interrupted after an epoch"
    assert [read_summary(d)["status"] for d in folders] == ["interrupted"] * 3
    rows = _report_rows(cli, root, tmp_path / "report")
    assert [r["status"] for r in rows] == ["interrupted"] * 3 and all(r["epochs_completed"] == "0" for r in rows)


def test_a_full_disk_before_the_first_epoch_leaves_failed_runs_the_report_reads(cli, tmp_path, tiny_fs):  # noqa: F811
    root, fill = tiny_fs
    fill(9)  # a page short of the second cell's folder: the first cell has config.yaml, a header, no row
    args = ("run", "-m", "hydra/launcher=vectorized", *fast(), "seed=0,1,2", f"results_dir={root}")
    code, out, err = cli(*args)
    _one_line(err, code, 1, "No space left on device")
    folders = run_dirs(root)
    assert folders and all(_rows(d / "metrics.csv") <= 0 for d in folders), "the calibration of fill() broke"
    rows = _report_rows(cli, root, tmp_path / "report")  # the report goes beside the full disk
    assert len(rows) == len(folders) and {r["status"] for r in rows} == {"failed"}


# ---------------------------------------------------------------------------- two sweeps at once


@pytest.mark.parametrize("launcher", SLOW_SECOND)
def test_two_identical_sweeps_at_once_train_each_cell_once(tmp_path, launcher):
    root = tmp_path / "runs"
    args = ["-m", f"hydra/launcher={launcher}", *fast("trainer.epochs=5", "trainer.batch_size=16"), "seed=0,1,2",
            f"results_dir={root}"]
    procs = [_start(tmp_path, *args) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folders = run_dirs(root)
    assert len(folders) == 3, outs  # before: 6, every cell trained by both
    hashes = [read_summary(d)["config_hash"] for d in folders]
    assert len(set(hashes)) == 3 and all(read_summary(d)["status"] == "completed" for d in folders)
    starts = [e for e in map(json.loads, (root / run_index.INDEX).read_text().splitlines()) if e["status"] == "running"]
    assert sorted(e["config_hash"] for e in starts) == sorted(hashes)
    assert not (root / claims.CLAIMS).exists()  # every claim released


def test_a_claim_of_a_live_process_holds_and_a_dead_ones_is_taken_over(tmp_path):
    other = subprocess.Popen(["sleep", "60"])
    folder = tmp_path / claims.CLAIMS
    folder.mkdir()
    try:
        (folder / "k").write_text(f"{platform.node()} {other.pid} -\n")
        assert claims.take(str(tmp_path), "k") == f"{platform.node()} {other.pid} -"
        assert claims.held_by_others(str(tmp_path), ["k"])
        claims.release(str(tmp_path), ["k"])  # not ours: it stays
        assert (folder / "k").exists()
    finally:
        other.kill()
        other.wait()
    assert claims.take(str(tmp_path), "k") is None  # its process is gone: ours now
    assert (folder / "k").read_text().strip() == run_index.identity_text()
    claims.wait(str(tmp_path), ["k"])  # our own claim: nothing to wait for
    claims.release(str(tmp_path), ["k"])
    assert not folder.exists()


def test_the_report_counts_a_configuration_and_seed_once(cli, tmp_path):
    args = ("run", "-m", *fast(), "seed=0,1", "results_dir=runs")
    assert cli(*args)[0] == 0
    assert cli(*args, "resume=false")[0] == 0  # the same cells trained again: 4 folders, 2 configs+seeds
    rows = _report_rows(cli, tmp_path / "runs", tmp_path / "report")
    assert sorted(r["status"] for r in rows) == ["completed", "completed", "superseded", "superseded"]
    kept = {r["path"] for r in rows if r["status"] == "completed"}
    assert all("counted once" in r["issues"] and any(k in r["issues"] for k in kept)
               for r in rows if r["status"] == "superseded")
    with open(tmp_path / "report" / "groups.csv", newline="") as f:
        assert [row["n"] for row in csv.DictReader(f)] == ["2"]  # before: 4
    assert "counts once" in (tmp_path / "report" / "report.md").read_text()


# ---------------------------------------------------------------------------- a report while a sweep writes


@pytest.mark.parametrize("launcher", SLOW_SECOND)
def test_a_report_on_a_sweep_still_writing_says_running(cli, tmp_path, launcher):
    root = tmp_path / "runs"
    proc = _start(tmp_path, "-m", f"hydra/launcher={launcher}", *fast("trainer.epochs=100000"), "seed=0,1",
                  f"results_dir={root}")
    cells = 2 if launcher == "vectorized" else 1
    try:
        _wait_for(lambda: sum(_rows(d / "metrics.csv") >= 1 for d in run_dirs(root)
                              if (d / "metrics.csv").exists()) >= cells, proc)
        rows = _report_rows(cli, root, tmp_path / "report")
        assert [r["status"] for r in rows] == ["running"] * cells
        assert "running" in (tmp_path / "report" / "report.md").read_text()
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------- one cell of a stack


def test_one_cell_of_a_stack_failing_leaves_the_others_training(tmp_path):
    """A cell's own file fault (its summary.json path taken by a folder) fails that cell only; before,
    it aborted the stack and every other cell, trained to the end, said `failed`."""
    root = tmp_path / "runs"
    proc = _start(tmp_path, "-m", "hydra/launcher=vectorized", *fast("trainer.epochs=20", "trainer.batch_size=16"),
                  "seed=0,1,2", f"results_dir={root}")
    # run_dirs walks safely while the sweep runs (its writability probe folder comes and goes)
    _wait_for(lambda: sum((d / "metrics.csv").exists() for d in run_dirs(root)) == 3, proc)
    broken = next(d for d in run_dirs(root) if "-s0_" in d.name)
    (broken / "summary.json").mkdir()
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1, out  # one cell did not complete
    assert "Traceback" not in out
    for d in run_dirs(root):
        assert len(read_metrics(d)) == 20  # every cell trained to the end
        if d == broken:
            assert folder.unfinished_status(d) == "failed"
        else:
            assert read_summary(d)["status"] == "completed" and read_summary(d)["test"] is not None


def test_one_cell_of_a_stack_diverging_leaves_the_others_training(cli, tmp_path):
    code, out, err = cli("run", "-m", "hydra/launcher=vectorized", *fast("trainer.epochs=4"), "optim=sgd",
                         "optim.lr=0.01,1e12", "seed=0,1", "results_dir=runs")
    assert code == 1, err
    folders = run_dirs(tmp_path / "runs")
    assert sorted(read_summary(d)["status"] for d in folders) == ["completed"] * 2 + ["diverged"] * 2
    for d in folders:
        s, rows = read_summary(d), read_metrics(d)
        if s["status"] == "completed":  # trained on to the end after the others left the stack
            assert len(rows) == 4 and s["epochs_completed"] == 4 and s["test"] is not None
        else:
            assert 1 <= len(rows) == s["epochs_completed"] < 4


# ---------------------------------------------------------------------------- bad values, paths in the way

SWEEP_BAD_VALUES = [
    (["seed=1,1"], ["seed=1,1", "1 twice", "each value once"]),
    (["dropout=standard", "dropout.p=0.1,0.10"], ["dropout.p", "0.1 twice"]),
    (["optim.weight_decay=0,inf"], ["optim.weight_decay=inf", "finite"]),
    (["optim.weight_decay=nan", "seed=0,1"], ["optim.weight_decay=nan", "finite"]),
    (["trainer.min_delta=inf", "seed=0,1"], ["trainer.min_delta=inf", "finite"]),
]


@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize("overrides,expected", SWEEP_BAD_VALUES, ids=[" ".join(o) for o, _ in SWEEP_BAD_VALUES])
def test_bad_sweep_values_are_one_line_and_write_nothing(cli, tmp_path, launcher, overrides, expected):
    code, out, err = cli("run", "-m", f"hydra/launcher={launcher}", *fast(), *overrides)
    _one_line(err, code, 2, *expected)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["optim.weight_decay=inf", "optim.weight_decay=nan", "augment.noise_std=nan",
                                   "dropout.per_layer=[nan]", "reg.max_norm=inf"])
def test_non_finite_floats_are_refused(cli, tmp_path, value):
    code, out, err = cli("run", *fast(), value)
    _one_line(err, code, 2, value.split("=")[0], "finite")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["max_cells=0", "max_cells=-1", "max_memory_gb=0", "max_memory_gb=-1",
                                   "max_memory_gb=nan"])
def test_vectorized_limits_that_cannot_take_effect_are_refused(cli, tmp_path, value):
    code, out, err = cli("run", "-m", "hydra/launcher=vectorized", *fast(), "seed=0,1", f"hydra.launcher.{value}")
    _one_line(err, code, 2, f"hydra.launcher.{value.split('=')[0]}", "valid values")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("multirun", [["-m", "hydra/launcher=vectorized", "seed=0,1"],
                                      ["-m", "hydra/launcher=basic", "seed=0,1"], []],
                         ids=["vectorized", "basic", "single"])
@pytest.mark.parametrize("where", ["afile", "afile/sub", "/dev/null/runs", "/proc/regbench"])
def test_a_results_dir_that_cannot_hold_folders_is_one_line_and_exit_1(cli, tmp_path, multirun, where):
    (tmp_path / "afile").write_text("not a folder")
    code, out, err = cli("run", *multirun, *fast(), f"results_dir={where}")
    _one_line(err, code, 1, f"results_dir={where!r}", where.split("/")[1] if where.startswith("/") else "afile")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# ---------------------------------------------------------------------------- time columns


def test_a_stack_records_each_cells_share_and_the_stacks_wall_time(cli, tmp_path):
    code, out, err = cli("run", "-m", "hydra/launcher=vectorized", *fast(), "seed=0,1,2", "results_dir=stack")
    assert code == 0, err
    assert out.count("(stack of 3), 2 epochs") == 3, out
    for d in run_dirs(tmp_path / "stack"):
        s, rows = read_summary(d), read_metrics(d)
        for row in rows:  # three cells train in every epoch: each is given a third of it
            assert float(row["seconds"]) == pytest.approx(float(row["stack_seconds"]) / 3)
        assert s["stack_cells"] == 3 and s["stack_seconds"] > sum(float(r["stack_seconds"]) for r in rows)
        assert s["seconds"] < s["stack_seconds"]
    code, out, err = cli("run", *fast(), "results_dir=lone")
    [lone] = run_dirs(tmp_path / "lone")
    assert "stack_seconds" not in read_metrics(lone)[0] and "stack_seconds" not in read_summary(lone)
    assert "stack of" not in out


def test_another_hosts_claim_holds_while_fresh_and_is_taken_over_when_stale(tmp_path):
    folder = tmp_path / claims.CLAIMS
    folder.mkdir()
    (folder / "k").write_text("some-other-host 4242 -\n")  # cannot be checked from here: its age decides
    assert claims.take(str(tmp_path), "k") == "some-other-host 4242 -"
    stale = time.time() - claims.STALE_SECONDS - 1
    os.utime(folder / "k", (stale, stale))  # its epochs stopped refreshing it: the node is gone
    assert claims.take(str(tmp_path), "k") is None
    os.utime(folder / "k", (stale, stale))
    claims.refresh(str(tmp_path), "k")  # what each epoch of the cell does: fresh again
    assert time.time() - (folder / "k").stat().st_mtime < claims.STALE_SECONDS
    claims.release(str(tmp_path), ["k"])
    assert not folder.exists()


# ---------------------------------------------------------------------------- a folder turns unwritable (issue 31)


def _regbench(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """The installed command in a fresh process, as a user's shell starts it: (exit code, stdout, stderr)."""
    proc = subprocess.run([str(EXE), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_a_stack_whose_sweep_folder_turns_read_only_ends_failed_with_the_cause(cli, tmp_path):
    """Every cell of the stack ends `failed` with its cause, though neither summary.json nor the .failed marker
    can be written: the run index in results_dir says so (before, the next reader said `killed`). A rerun while
    the folder is read-only trains nothing; once it is writable, it trains every cell again and marks the old
    folders superseded, still `failed`."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    root = tmp_path / "runs"
    sweep = root / "ro"
    args = ["-m", *fast("trainer.batch_size=1", "dataset.train_size=200"), "seed=0,1", f"results_dir={root}",
            "sweep_name=ro"]
    proc = _start(tmp_path, *args)
    try:
        _wait_for(lambda: sum(_rows(d / "metrics.csv") >= 1 for d in run_dirs(sweep)) == 2, proc)
        proc.send_signal(signal.SIGSTOP)  # in its second (last) epoch: made read-only while it waits
        with read_only(sweep):  # metrics.csv stays open for writing; summary.json, .failed cannot be written
            proc.send_signal(signal.SIGCONT)
            out = proc.communicate(timeout=300)[0]
            errors = [line for line in out.splitlines() if line.startswith("regbench: error: ")]
            assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in out, out
            assert "summary.json: Read-only file system" in errors[0], errors  # not its .tmp file
            folders = run_dirs(sweep)
            assert all(not (d / "summary.json").exists() and not (d / run_index.FAILED).exists() for d in folders)
            for d in folders:
                status, error = folder.unfinished(d)
                assert status == "failed" and f"{d}/summary.json" in error and "Read-only file system" in error
            rows = _report_rows(cli, sweep, tmp_path / "report")
            assert [r["status"] for r in rows] == ["failed"] * 2
            assert all("Read-only file system" in r["issues"] for r in rows)
            code, out, err = cli("run", *args)  # still read-only: one line, nothing trained
            _one_line(err, code, 1, str(sweep), "Read-only file system")
            assert run_dirs(sweep) == folders
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    code, out, err = cli("run", *args)
    assert code == 0 and "resume: 2 unfinished rerun" in out, out + err
    for d in folders:
        s = read_summary(d)
        assert s["status"] == "failed" and s["superseded_by"] and "Read-only file system" in s["error"]
    import regbench

    assert sorted(regbench.load_runs(sweep)["status"]) == ["completed"] * 2 + ["superseded"] * 2


def test_a_rerun_that_cannot_mark_an_earlier_run_superseded_trains_nothing(cli, tmp_path):
    root = tmp_path / "runs"
    args = ("run", "-m", *fast("trainer.epochs=1"), "seed=0,1", f"results_dir={root}", "sweep_name=s")
    assert cli(*args)[0] == 0
    old = run_dirs(root / "s")[0]
    (old / "summary.json").unlink()  # not finished: the rerun trains it again and must mark this folder
    with read_only(old):
        code, out, err = _regbench(tmp_path, *args)
        _one_line(err, code, 1, f"cannot write {old}: Read-only file system", "superseded")
        assert "stack of" not in out and len(run_dirs(root / "s")) == 2  # checked before anything trained
    code, out, err = cli(*args)
    assert code == 0 and "resume: 1 finished run skipped, 1 unfinished rerun" in out, out + err
    assert read_summary(old)["superseded_by"]


def test_a_rerun_supersedes_every_unfinished_folder_of_its_config_whatever_its_status(cli, tmp_path):
    """A run killed while an earlier one of the same config had completed: the rerun reuses the completed run
    and marks the killed folder superseded by it (before, it stayed `killed` for every later report)."""
    root = tmp_path / "runs"
    args = [*SLOW_FIRST_EPOCH, f"results_dir={root}"]
    assert cli("run", *args)[0] == 0
    [done] = run_dirs(root)
    proc = _start(tmp_path, *args, "resume=false")  # the same config once more, killed in its first epoch
    try:
        _wait_for(lambda: any((d / "metrics.csv").exists() for d in run_dirs(root) if d != done), proc)
    finally:
        proc.kill()
        proc.wait()
    [killed] = [d for d in run_dirs(root) if d != done]
    assert folder.unfinished_status(killed) == "killed"
    code, out, err = cli("run", *args)
    assert code == 0 and "skipped" in out + err and len(run_dirs(root)) == 2, out + err
    s = read_summary(killed)
    assert s["status"] == "killed" and s["superseded_by"] == done.name
    import regbench

    assert sorted(regbench.load_runs(root)["status"]) == ["completed", "superseded"]


def _cut_middle_row(d: Path) -> None:
    lines = (d / "metrics.csv").read_text().splitlines(keepends=True)
    lines[1] = lines[1][:15] + "\n"
    (d / "metrics.csv").write_text("".join(lines))


DAMAGE = {  # label part of the folder -> (what is done to it, what the report names)
    "p0.1-s0": (lambda d: (d / "config.yaml").unlink(), "no config.yaml"),
    "p0.1-s1": (_cut_middle_row, "metrics.csv: line 2 has"),
    "p0.3-s0": (lambda d: (d / "summary.json").write_text('{"status": "compl'), "summary.json: invalid JSON"),
    "p0.3-s1": (lambda d: (d / "metrics.csv").write_text((d / "metrics.csv").read_text()[:-9]),
                "metrics.csv holds 1 of the 2 epochs"),
}


def test_a_damaged_run_is_not_finished_for_resume_nor_for_the_report(cli, tmp_path):
    """One definition of finished (records/folder.py): a completed run that the report cannot read in full is
    named by the report and not counted, and a rerun trains its cell again and marks the folder superseded
    (before, resume reused it and every report skipped it: its group had one seed fewer, silently)."""
    root = tmp_path / "runs"
    sweep = root / "d"
    args = ["run", "-m", *fast(), "dropout=standard", "dropout.p=0.1,0.3", "seed=0,1,2", f"results_dir={root}",
            "sweep_name=d"]
    assert cli(*args)[0] == 0
    folders = run_dirs(sweep)
    damaged = {next(d for d in folders if f"-{part}_" in d.name): what for part, what in DAMAGE.items()}
    for d, (damage, _) in damaged.items():
        damage(d)

    code, out, err = cli("report", str(sweep), "--out", str(tmp_path / "before"))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "damaged, not counted" in line]
    assert len(warnings) == 4 and all(any(str(d) in w and named in w for w in warnings)
                                      for d, (_, named) in damaged.items()), err
    with open(tmp_path / "before" / "groups.csv", newline="") as f:
        assert [row["n"] for row in csv.DictReader(f)] == ["1", "1"]
    lone = next(d for d in damaged if "-p0.1-s1_" in d.name)
    code, out, err = cli("report", str(lone))  # the damaged folder alone: named, with what is damaged
    _one_line(err, code, 2, str(lone), "metrics.csv: line 2 has")

    code, out, err = _regbench(tmp_path, *args)
    assert code == 0, out + err
    assert "resume: 2 finished runs skipped, 4 unfinished rerun" in out, out
    new = [d for d in run_dirs(sweep) if d not in folders]
    assert sorted(d.name.split("_")[1][-7:] for d in new) == sorted(DAMAGE)  # only the damaged cells trained
    for d, (_, named) in damaged.items():
        s = read_summary(d)
        assert s["superseded_by"] in {n.name for n in new} and named.split(" has")[0] in s["damage"], s
    code, out, err = cli("report", str(sweep), "--out", str(tmp_path / "after"))
    assert code == 0 and "damaged, not counted" not in err, err
    with open(tmp_path / "after" / "groups.csv", newline="") as f:
        assert [row["n"] for row in csv.DictReader(f)] == ["3", "3"]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_report_leaves_no_half_report(tmp_path, sig, code):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) or SIGTERM while `regbench report` draws: one
    line that does not speak of runs, and neither a half-written report nor its staging folder is left (SIGTERM
    killed the process outright, leaving the staging folder)."""
    from test_report import write_grid

    write_grid(tmp_path / "runs", rates=(0.0, 0.5), seeds=(0, 1))
    # SIGINT as in a terminal's foreground job: a test run started in the background by a non-interactive shell
    # (`make test &`) ignores SIGINT, and a child inherits that; Python then keeps ignoring it
    proc = subprocess.Popen([str(EXE), "report", "runs", "--out", "rep"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(lambda: any(p.name.startswith(".rep.") for p in tmp_path.iterdir()), proc)  # staging: drawing
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code and "Traceback" not in err, err
    assert err.strip() == "regbench: interrupted; nothing half-written, rerun the command to write its output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


LOST_STOP = """
import os, signal, sys, weakref
from regbench.cli import commands

def body(argv):  # a command during which SIGTERM lands inside a weakref callback (as during any import)
    class Thing:
        pass
    thing = Thing()
    ref = weakref.ref(thing, lambda r: (os.kill(os.getpid(), signal.SIGTERM), [i for i in range(100000)]))
    del thing  # the callback runs, the handler raises inside it, and Python prints and drops that exception
    print("went on after the signal", flush=True)
    return 0

commands.dispatch = body
sys.exit(commands.main(["report"]))
"""


def test_a_stop_whose_exception_python_lost_still_ends_the_command_in_one_line(tmp_path):
    """Python drops an exception raised inside a weakref callback ("Exception ignored", a traceback, and the command
    went on to exit 0: a report interrupted during its imports was written anyway). The stop is noted, so the
    command still ends interrupted, with its one line and no traceback."""
    proc = subprocess.run([sys.executable, "-c", LOST_STOP], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "went on after the signal" in proc.stdout  # the exception was lost where the signal landed
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip() == "regbench: interrupted; nothing half-written, rerun the command to write its output"


def test_a_lost_stop_commits_no_staged_output(tmp_path):
    from regbench.core import errors
    from regbench.report.staging import staging

    with errors.stops_of_this_command():
        with pytest.raises(errors.Interrupted):
            errors.stop(signal.SIGTERM)  # as the handler does; below, its exception is taken as lost
        with pytest.raises(errors.Interrupted), staging(tmp_path / "rep") as stage:
            (stage / "report.md").write_text("whole, but after the stop")
    assert list(tmp_path.iterdir()) == []  # neither the report nor its staging folder
    with staging(tmp_path / "rep") as stage:  # the next command: that stop was its predecessor's
        (stage / "report.md").write_text("whole")
    assert (tmp_path / "rep" / "report.md").read_text() == "whole"


def _staged_report(runs: Path) -> bool:
    """Is a sweep's report being written (its staging folder, .report.<hex>.tmp, in the sweep's folder)? Folders
    come and go while we look (the writability probe's, in runs/): one gone is not there."""
    try:
        return any(p.name.startswith(".report.") for sweep in runs.glob("sweep-*") for p in sweep.iterdir())
    except OSError:
        return False

def test_ctrl_c_in_a_piped_sweeps_report_phase_ends_the_pipe_and_leaves_nothing_behind(tmp_path):
    """`regbench run -m … | tee log`, Ctrl-C while the sweep writes its own report: the pipeline ends (no
    process of it keeps the pipe open, so tee does not hang), regbench says one line, and no staging folder
    is left. (Figures once drawn in forked workers outlived the sweep and held the pipe.)"""
    sweep = [*fast("report=true", "dropout=standard"), "dropout.p=0,0.5", "seed=0,1", "results_dir=runs"]
    line = f"{EXE} run -m {' '.join(sweep)} 2>err | tee log"
    proc = subprocess.Popen(["bash", "-c", line], cwd=tmp_path, stdout=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs = tmp_path / "runs"
    _wait_for(lambda: _staged_report(runs), proc, timeout=240)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: every process of the foreground job
    proc.wait(timeout=60)
    left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes of the pipeline still alive: {left}"
    err = (tmp_path / "err").read_text()
    assert err.strip() == "regbench: interrupted; finished runs are complete, rerun the command to resume", err
    assert not _staged_report(runs), "a staging folder was left"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["err", "log", "runs"]
