"""Failures of the machine are failures, not tracebacks: a real tiny tmpfs as results_dir (disk
full), a read-only bind mount, and kill -9 of a real training process. Mounting needs root; where
it is not permitted these tests skip (CI runs as root, so there they run)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST, without_overridden_fast

from regbench.records import folder
from regbench.records import index as run_index

PAGE = 4096  # tmpfs allocates whole pages
EPOCHS = 40  # metrics.csv rows of ~230 bytes: more than one page


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def tiny_fs(tmp_path):
    """A 300 KiB tmpfs; fill(n) leaves about n pages free."""
    root = tmp_path / "fs"
    root.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=300k", "tmpfs", str(root)):
        pytest.skip("cannot mount a tmpfs here (needs root)")

    def fill(pages: int) -> Path:
        filler = tmp_path / "fs" / "filler"
        free = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize
        filler.write_bytes(b"x" * max(0, free - pages * PAGE))
        return filler

    yield root, fill
    subprocess.run(["umount", "-l", str(root)], capture_output=True)


@contextlib.contextmanager
def read_only(path: Path):
    """`path` read-only (a bind mount of itself, remounted ro) while the block runs; skips where not root."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    if not (_mount("--bind", str(path), str(path)) and _mount("-o", "remount,bind,ro", str(path))):
        subprocess.run(["umount", str(path)], capture_output=True)
        pytest.skip("cannot bind-mount read-only here")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name != "filler"]


# Empty by design: the .failed marker, and the index's lock file (filelock keeps it between runs).
EMPTY_BY_DESIGN = (".failed", ".regbench-index.jsonl.lock")


def _no_partial_files(root: Path) -> None:
    for p in _files(root):
        assert p.stat().st_size > 0 or p.name in EMPTY_BY_DESIGN, f"0-byte file left: {p}"
        assert not p.name.endswith(".tmp"), f"temporary file left: {p}"


def _one_error_line(err: str, *texts: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regbench: error: "), err
    for text in texts:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def _index(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / run_index.INDEX).read_text().splitlines()]


def test_disk_full_during_a_run_fails_cleanly_and_the_rerun_says_failed(cli, tiny_fs):
    root, fill = tiny_fs
    filler = fill(5)  # room for config.yaml, the marker, the index, the claim and a page of metrics.csv
    code, out, err = cli("run", *FAST, f"trainer.epochs={EPOCHS}", f"results_dir={root}")
    assert code == 1, err
    _one_error_line(err, "No space left on device", "metrics.csv")
    assert "Traceback" not in out + err
    _no_partial_files(root)
    [run_dir] = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and all(len(r.split(",")) == len(rows[0].split(",")) for r in rows)
    assert _index(root)[-1]["status"] == "failed" or (run_dir / run_index.FAILED).exists()
    assert folder.unfinished_status(run_dir) == "failed" or json.loads(
        (run_dir / "summary.json").read_text())["status"] == "failed"
    assert not (run_dir / run_index.RUNNING).exists()

    filler.unlink()  # space freed: the rerun trains it again and records the old folder as failed
    code, out, err = cli("run", *FAST, f"trainer.epochs={EPOCHS}", f"results_dir={root}")
    assert code == 0, err
    old = json.loads((run_dir / "summary.json").read_text())
    assert old["status"] == "failed" and old["superseded_by"]


def test_a_checkpoint_on_a_full_disk_is_one_line_and_leaves_no_temporary_file(cli, tiny_fs):
    """torch.save straight to the file raised a RuntimeError traceback ("unexpected pos") naming no file and
    left .checkpoint.pt.<hex>.tmp behind; now the checkpoint is written as any other file of the run."""
    root, fill = tiny_fs
    fill(6)  # room for the run's small files, not for a checkpoint (the weights and two Adam moments)
    code, out, err = cli("run", *FAST, "trainer.checkpoint=true", f"results_dir={root}")
    assert code == 1, err
    _one_error_line(err, "No space left on device", "checkpoint.pt")
    _no_partial_files(root)
    [run_dir] = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


def test_report_on_a_full_disk_leaves_no_empty_files(cli, tiny_fs):
    root, fill = tiny_fs
    assert cli("run", *FAST, f"results_dir={root}")[0] == 0
    fill(1)
    code, out, err = cli("report", str(root))
    assert code == 1, err
    _one_error_line(err, "No space left on device", "report")
    _no_partial_files(root)
    assert not (root / "report").exists() or not any((root / "report").iterdir())


def test_compare_on_a_full_disk_is_one_line_and_leaves_nothing(cli, tmp_path, tiny_fs):
    from test_report import write_run

    root, fill = tiny_fs
    for p in (0.0, 0.3):
        for seed in (0, 1):
            write_run(tmp_path / "runs", p=p, seed=seed)
    fill(1)
    code, out, err = cli("compare", str(tmp_path / "runs"), "--where", "dropout.p=0", "--out", str(root / "cmp"))
    assert code == 1, err
    _one_error_line(err, "No space left on device", str(root / "cmp"))
    assert not (root / "cmp").exists()  # it was left behind, holding what fitted
    _no_partial_files(root)


def test_sweep_on_a_full_disk_stops_with_one_line(cli, tiny_fs):
    root, fill = tiny_fs
    fill(4)
    code, out, err = cli("run", "-m", *FAST, f"trainer.epochs={EPOCHS}", "seed=0,1,2", f"results_dir={root}")
    assert code == 1, err
    _one_error_line(err, "No space left on device")
    assert "Traceback" not in out + err
    _no_partial_files(root)


def test_rerun_of_a_sweep_in_a_read_only_folder(cli, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    root = tmp_path / "runs"
    args = ("run", "-m", *FAST, "seed=0,1", f"results_dir={root}", "sweep_name=ro")
    assert cli(*args)[0] == 0
    sweep = root / "ro"
    before = {p: p.read_bytes() for p in _files(sweep)}
    with read_only(sweep):
        code, out, err = cli(*args)
        assert code == 1, err
        _one_error_line(err, "Read-only file system", str(sweep))
        assert "Traceback" not in out + err
    assert {p: p.read_bytes() for p in _files(sweep)} == before  # nothing changed, nothing half-written


def test_compare_and_report_into_a_read_only_folder_are_machine_failures(cli, tmp_path):
    """Every subcommand exits 1 for a machine failure, with one line naming the path (compare said 2)."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    root = tmp_path / "runs"
    assert cli("run", "-m", *FAST, "seed=0,1", f"results_dir={root}", "sweep_name=a")[0] == 0
    assert cli("run", "-m", *FAST, "seed=0,1", "dropout=standard", "dropout.p=0.3", f"results_dir={root}",
               "sweep_name=b")[0] == 0
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        code, out, err = cli("compare", str(root / "a"), str(root / "b"), "--out", str(locked / "cmp"))
        assert code == 1
        _one_error_line(err, "Read-only file system", str(locked / "cmp"))
        code, out, err = cli("report", str(root / "a"), "--out", str(locked / "rep"))
        assert code == 1
        _one_error_line(err, "Read-only file system", str(locked / "rep"))
    assert list(locked.iterdir()) == []


def test_kill_9_mid_run_is_killed_in_report_and_rerun(cli, tmp_path):
    root = tmp_path / "runs"
    exe = Path(sys.executable).with_name("regbench")
    args = without_overridden_fast(["run", *FAST, "trainer.epochs=100000", f"results_dir={root}"])
    proc = subprocess.Popen([str(exe), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        metrics = lambda: next(root.glob("*/metrics.csv"), None)  # noqa: E731
        while metrics() is None or len(metrics().read_text().splitlines()) < 3:
            assert time.monotonic() < deadline and proc.poll() is None, "the run did not start"
            time.sleep(0.2)
        [run_dir] = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        assert run_index.alive(run_dir)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not run_index.alive(run_dir) and folder.unfinished_status(run_dir) == "killed"
    code, out, err = cli("report", str(root), "--out", str(tmp_path / "report"))
    assert code == 0, err
    md = (tmp_path / "report" / "report.md").read_text()
    assert "killed" in md and "in progress" not in md
    code, out, err = cli("run", *FAST, f"results_dir={root}")  # another config: the killed one stays killed
    assert folder.previous_runs(str(root), _index(root)[0]["config_hash"])[0].status == "killed"


def test_a_reused_pid_is_not_alive(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    me = run_index.process_identity()
    (run_dir / run_index.RUNNING).write_text(f"{me['host']} {me['pid']} {me['started']}\n")
    assert run_index.alive(run_dir)
    (run_dir / run_index.RUNNING).write_text(f"{me['host']} {me['pid']} 1{me['started']}\n")  # another start time
    assert not run_index.alive(run_dir)


def test_rerun_of_a_sweep_on_a_full_disk_keeps_its_multirun_record(cli, tiny_fs):
    root, fill = tiny_fs
    args = ("run", "-m", *FAST, "seed=0,1", f"results_dir={root}", "sweep_name=full")
    assert cli(*args)[0] == 0
    record = root / "full" / "multirun.yaml"
    before = record.read_bytes()
    fill(0)
    code, out, err = cli(*args)
    assert code == 1, err
    _one_error_line(err, "No space left on device", str(record))  # the file is named (it said "a file")
    assert record.read_bytes() == before  # not truncated to 0 bytes by Hydra's in-place rewrite
    _no_partial_files(root)


def test_a_full_disk_never_tears_the_run_index(tiny_fs):
    """An index append that runs out of space mid-line leaves the index as it was (no fragment glued to the
    next entry), names the file; once space is freed the next entry is whole."""
    root, fill = tiny_fs
    index = root / run_index.INDEX
    entry = {"run_dir": "r" * 60, "status": "completed", "config_hash": "h" * 16}
    while (index.stat().st_size if index.exists() else 0) < PAGE - 150:  # one page, nearly full
        run_index.append(root, entry)
    before = index.read_bytes()
    filler = fill(0)  # no free page: the next line fits only partly in the index's last page
    with pytest.raises(OSError) as failure:
        run_index.append(root, {**entry, "run_dir": "x" * 300})
    assert failure.value.filename == str(index)
    assert index.read_bytes() == before  # whole lines only, nothing kept in a buffer for later
    filler.unlink()
    run_index.append(root, {**entry, "status": "failed"})
    assert [e["status"] for e in _index(root)][-2:] == ["completed", "failed"]


def test_a_torn_index_tail_from_an_older_version_is_cut_off_with_one_warning(tmp_path, caplog):
    index = tmp_path / run_index.INDEX
    whole = json.dumps({"run_dir": "a", "status": "completed"}) + "\n"
    index.write_text(whole * 3 + '{"run_dir": "b", "sta')  # a write cut short, no newline
    run_index.append(tmp_path, {"run_dir": "c", "status": "completed"})
    assert [e["run_dir"] for e in _index(tmp_path)] == ["a", "a", "a", "c"]
    assert [r.getMessage() for r in caplog.records if "torn last line" in r.getMessage()] == [
        f"warning: {index}: cut off a torn last line of 21 bytes (a write that did not finish)"]


def test_a_damaged_index_line_costs_that_line_only(cli, tmp_path):
    """Resume reads the index around a line it cannot parse (bytes that are not UTF-8, not JSON, not an entry):
    the runs of the other lines are still found, and a rerun skips them."""
    root = tmp_path / "runs"
    assert cli("run", *FAST, f"results_dir={root}")[0] == 0
    index = root / run_index.INDEX
    index.write_bytes(b"\xff\xfe garbage\n[1, 2]\n" + index.read_bytes() + b'"text"\n')
    code, out, err = cli("run", *FAST, f"results_dir={root}")
    assert code == 0 and "skipped" in out + err, out + err
    assert len([p for p in root.iterdir() if p.is_dir()]) == 1


@pytest.mark.parametrize("command", [["run"], ["run", "-m", "seed=0,1"], ["run", "-m", "seed=0,1",
                                                                         "hydra/launcher=basic"]],
                         ids=["run", "run -m", "run -m basic"])
def test_a_read_only_results_dir_is_one_line_exit_1_for_every_run_command(cli, tmp_path, command):
    root = tmp_path / "runs"
    root.mkdir()
    with read_only(root):
        code, out, err = cli(*command, *FAST, f"results_dir={root}")
        assert code == 1, err
        _one_error_line(err, f"results_dir={str(root)!r}", "Read-only file system")
    assert list(root.iterdir()) == []
