"""Where a report's figures are drawn: in worker processes forked before the statistics, or here.

Drawing is most of a report's time and matplotlib is single-threaded, so where the machine has cores
to spare the figures are drawn in parallel processes, each file the same as one drawn alone. The
workers are forked as soon as the runs are read, before this process imports scipy and builds the
grid: their matplotlib import (~1 s) then overlaps that work, and this process never imports
matplotlib at all. This module imports neither; figures.py holds the figures themselves.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from regbench.report.grid import Grid

# Every figure a report can hold, in drawing order: the slowest (curves) first, so that it starts first.
# figures.py draws each one with its function of the same name (tests/test_report_speed.py: the same names).
FIGURES = ("curves", "gap", "rate_sweep", "vs_baseline", "heatmap", "calibration")

Outcome = tuple[str, tuple[Path, str] | str]  # (key, (png path, caption)) or (key, why it was skipped)

# tqdm's monitor (started by any progress bar, a sweep's too) only sleeps and polls its bars: a forked
# figure drawer never touches tqdm, so it can inherit nothing from it that would block
HARMLESS_THREADS = ("tqdm_monitor",)


def _other_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t is not threading.main_thread() and t.name not in HARMLESS_THREADS]


def workers(tasks: int) -> int:
    """Processes to draw `tasks` figures with: one per usable core, forked (Linux only: fork is what makes a
    worker cost milliseconds, since it inherits the imported libraries; elsewhere one process), and only
    from a process with no other Python thread (e.g. a tracker's uploader), whose locks a forked child
    could inherit held."""
    if tasks < 2 or not sys.platform.startswith("linux"):
        return 1
    if _other_threads():  # a fork copies no other thread, only the locks it may hold: draw here
        return 1
    return min(tasks, len(os.sched_getaffinity(0)))


def _warm() -> None:
    """A worker's first step, run as it starts: import the figures (matplotlib) and draw a first throwaway
    figure (fonts, caches) while the parent works."""
    from regbench.report.figures import warm_up

    warm_up()


def _draw(job: tuple) -> Outcome:
    from regbench.report.figures import draw_one

    return draw_one(*job)


class Drawers:
    """`with Drawers(n) as drawers:` forks the workers for up to n figures now; `drawers.draw(grid, ...)`
    draws in them (or here, where there are none or they broke); leaving the block stops them."""

    def __init__(self, tasks: int):
        self.pool: ProcessPoolExecutor | None = None
        processes = workers(tasks)
        if processes > 1:
            try:
                self.pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"),
                                                initializer=_warm)
                self.pool.submit(int)  # the first task forks every worker (a fork pool starts them all at once)
            except OSError:  # no processes to be had (limits, memory): draw here
                self.pool = None

    def __enter__(self) -> Drawers:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def draw(self, grid: Grid, out_dir: Path, formats: Iterable[str], only: Iterable[str] | None = None,
             panel: str = "") -> tuple[dict[str, tuple[Path, str]], dict[str, str]]:
        """Draw each supported figure: ({name: (png path, caption)}, {name: reason it was skipped}).

        panel: the dataset/model the grid holds when a report spans several (figures never overlay
        them); names become `gap:<panel>` and files `gap-<panel>.png`."""
        wanted = list(FIGURES) if only is None else [name for name in FIGURES if name in set(only)]
        jobs = [(grid, out_dir, tuple(formats), panel, name) for name in wanted]
        results: list[Outcome] = []
        if self.pool is not None:
            try:
                results = list(self.pool.map(_draw, jobs))
            except (BrokenProcessPool, OSError):  # a worker died (memory, a signal): draw the rest here
                self.pool = None
                results = []
        if not results:
            results = [_draw(job) for job in jobs]
        written = {key: value for key, value in results if not isinstance(value, str)}
        skipped = {key: value for key, value in results if isinstance(value, str)}
        return written, skipped


def draw_all(grid: Grid, out_dir: Path, formats: Iterable[str], only: Iterable[str] | None = None,
             panel: str = "") -> tuple[dict[str, tuple[Path, str]], dict[str, str]]:
    """Drawers(...).draw(...) in one call: for one grid's figures."""
    wanted = FIGURES if only is None else [name for name in FIGURES if name in set(only)]
    with Drawers(len(wanted)) as drawers:
        return drawers.draw(grid, out_dir, formats, only, panel)
