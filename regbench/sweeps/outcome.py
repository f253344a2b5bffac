"""What a command's runs ended as, handed from Hydra's task function and sweeper back to the command.

Hydra's `@hydra.main` runs the task function (one run) or the sweeper (a sweep) and gives its caller
nothing back, so they put what they end with into the record the caller opened with `expect()`: the
command line reads its exit code there, `regbench.run()` the run's summary, `regbench.sweep()` the
sweep's cells and counts. A record lives for one command; nothing of it stays in the process after.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Outcome:
    summary: dict | None = None  # a single run's summary.json content plus "run_dir"
    sweep_dir: Path | None = None  # a sweep's folder
    runs: list[dict] = field(default_factory=list)  # a sweep's cells, one summary each, in job order
    counts: Counter = field(default_factory=Counter)  # a sweep's cells by status

    @property
    def incomplete(self) -> bool:
        """Did a run of this command end other than `completed`? (The command exits 1.)"""
        if self.summary is not None:
            return self.summary.get("status") != "completed"
        return sum(self.counts.values()) > self.counts["completed"]


_open: Outcome | None = None  # the record of the command running in this process, if one is open


@contextlib.contextmanager
def expect():
    """Open the record of one command (or join the one a caller opened: regbench.run() around the CLI's path)."""
    global _open
    if _open is not None:
        yield _open
        return
    _open = Outcome()
    try:
        yield _open
    finally:
        _open = None


def record_run(summary: dict) -> None:
    if _open is not None:
        _open.summary = dict(summary)


def record_sweep(sweep_dir: str, runs: list[dict], counts: Counter) -> None:
    if _open is not None:
        _open.sweep_dir, _open.runs, _open.counts = Path(sweep_dir), list(runs), Counter(counts)
