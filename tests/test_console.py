"""What the terminal shows (regbench/core/console.py): bars on a terminal only, a final line per run, a
table per sweep. The terminal is a real pseudo-terminal with a window size, as a user's would be."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from conftest import FAST, without_overridden_fast

from regbench.core.console import epoch_postfix


def _run_on_a_pty(args: list[str], cwd: Path, columns: int = 120) -> str:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    exe = Path(sys.executable).with_name("regbench")
    proc = subprocess.Popen([str(exe), *args], stdin=slave, stdout=slave, stderr=slave, cwd=cwd, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    os.close(master)
    return out.decode("utf-8", "replace")


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=basic"]], ids=["stacked (default)", "basic"])
def test_a_sweep_on_a_terminal_shows_run_and_sweep_bars_then_a_table(tmp_path, launcher):
    args = without_overridden_fast(["run", "-m", *FAST, "trainer.progress=true", "trainer.epochs=6", "seed=0,1",
                                    *launcher])
    out = _run_on_a_pty(args, tmp_path)
    assert "sweep:" in out and "2/2" in out  # the sweep bar reached the end
    assert "epoch" in out and "val_acc=" in out and "gap=" in out  # a run's bar
    assert "completed in" in out and "train " in out and " test " in out  # each run's final line
    assert "seed=0" in out and "seed=1" in out and "sweep finished: 2 runs: 2 completed" in out


def test_off_a_terminal_there_are_no_bars_but_the_lines(cli):
    code, out, err = cli("run", *FAST, "trainer.progress=true")
    assert code == 0, err
    assert "epoch/s" not in out + err and "\r" not in out + err
    [final] = [line for line in out.splitlines() if "completed in" in line]
    assert "val " in final and "test " in final and "gap " in final
    assert "results: " in out


def test_a_tiny_training_split_warns_once_per_run(cli):
    from regbench.engine import setup

    setup._warn_small_split.cache_clear()  # once per process: this test may not be the first to warn
    code, out, err = cli("run", *FAST, "dataset.train_size=5")
    assert code == 0, err
    assert (out + err).count("5 examples for 10 classes") == 1  # the run's check and the loop's: one line


def test_the_bar_shows_val_accuracy_and_the_gap_of_a_run_or_a_stack():
    # rows: train_loss, train_acc, val_loss, val_acc, ...; the gap is train_acc - val_acc in points
    assert epoch_postfix([[0.3, 0.95, 0.5, 0.90]], 1) == "val_acc=0.900, gap=+5.0"
    two = epoch_postfix([[0.3, 0.95, 0.5, 0.90], [0.4, 0.90, 0.5, 0.92]], 1)
    assert two == "val_acc=0.900..0.920, gap=+1.5 (mean), cells=1"
