"""Hydra callbacks: the sweep bar advances per finished job; after a multirun, the sweep's report."""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import sys
import threading
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from regbench.core.errors import MachineFailure

log = logging.getLogger("regbench")


class SweepProgress(Callback):
    """One step of the sweep bar (regbench/core/console.py) per finished job, with its outcome."""

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        from regbench.core import console
        ok = job_return.status.name == "COMPLETED"
        value = (job_return.return_value if ok else None) or {}
        for cell in value.get("cells", [value]):  # a stack job (hydra.sweeper.cells_per_job) returns each cell's
            console.cell_done(cell.get("status", "failed"))


REPORT_LIBRARIES = ("pandas", "scipy", "matplotlib")  # what a report imports and a sweep's training does not
NICENESS = 19  # the prewarmed report process takes only the CPU the training leaves idle


def sweep_report(paths: list[Path], out_dir: Path, formats: tuple[str, ...] = ()) -> tuple[list[str], Path]:
    """build_report's lines for the terminal and its report.md: small on purpose, as what the prewarmed
    process sends back (the sweep then unpickles no DataFrame, so it never imports pandas)."""
    from regbench.report import build_report, terminal_notes

    result = build_report(paths, out_dir, formats=formats)
    return terminal_notes(result), result.markdown


def _report_process(conn, sweeps_end) -> None:
    """A forked child of the sweep: import the report (at the lowest priority), then build the one report
    the sweep asks for and send back its result, or the exception it raised.

    `sweeps_end`: the sweep's end of the pipe, which the fork copied: closed at once, so that a sweep that
    dies without closing its own (a signal between two runs, kill -9) leaves this process reading EOF and
    exiting, rather than waiting for ever and holding the sweep's stdout and stderr open."""
    sweeps_end.close()
    try:
        os.nice(NICENESS)
        # the ~2 s this process is for: everything build_report imports, the figures (matplotlib) too, so
        # that the figure workers it forks inherit them rather than import them while the sweep waits
        from regbench.report import prewarm

        prewarm()

        request = conn.recv()  # EOFError: the sweep ended (or died) without asking
    except (EOFError, OSError, KeyboardInterrupt):
        return
    try:
        reply = ("ok", sweep_report(*request))
    except BaseException as exc:  # noqa: BLE001 - the parent handles it as if it had been raised there
        reply = ("raised", exc)
    try:
        conn.send(reply)
    except OSError:  # the sweep died while this process built its report (which is written): nobody to tell
        return
    except Exception as exc:  # noqa: BLE001 - e.g. an exception that does not pickle
        conn.send(("raised", RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}; {exc}")))


class PrewarmedReport:
    """A process forked when the sweep starts, before it imports torch, that imports the report's libraries
    while the sweep composes and trains (~2 s of a 32-cell sweep's report otherwise), at the lowest
    priority; `build(...)` then runs build_report there. Only where fork is cheap and safe (Linux, no
    other Python thread) and this process lacks those libraries (a notebook or a test that has them builds
    the report itself: nothing to gain). `build` falls back to this process if the child is gone."""

    def __init__(self, start: bool = True):
        self.conn, self.process = None, None
        if not start or not sys.platform.startswith("linux") or any(lib in sys.modules for lib in REPORT_LIBRARIES):
            return
        if threading_others():  # a fork copies no other thread, only the locks it may hold
            return
        try:
            ctx = multiprocessing.get_context("fork")
            self.conn, child = ctx.Pipe()
            # not daemonic: it forks the figure workers; a sweep that ends without asking closes the pipe
            # at exit (before multiprocessing joins its children), and the child, reading EOF, exits
            self.process = ctx.Process(target=_report_process, args=(child, self.conn), name="regbench-report")
            self.process.start()
            child.close()
            atexit.register(self.close)
        except OSError:  # no process to be had: the report is built here, as without the prewarm
            self.conn, self.process = None, None

    def build(self, paths: list[Path], out_dir: Path, formats: tuple[str, ...] = ()) -> tuple[list[str], Path]:
        """sweep_report(...): in the child while it is alive, else here."""
        if self.process is not None and self.process.is_alive():
            try:
                self.conn.send((paths, out_dir, formats))
                kind, value = self.conn.recv()
            except (EOFError, OSError):  # the child died (memory, a signal): build it here
                kind = None
            self.close(answered=kind is not None)
            if kind == "ok":
                return value
            if kind == "raised":
                raise value
        self.close()
        return sweep_report(paths, out_dir, formats)  # here: pandas, scipy and matplotlib take ~2 s to import

    def close(self, answered: bool = False) -> None:
        """Stop the child: one that answered exits by itself; one never asked (the sweep failed, or wrote no
        run) is stopped at once, rather than let a failing sweep wait for its imports."""
        if self.conn is not None:
            self.conn.close()  # an idle child reads EOF and exits
            self.conn = None
        if self.process is not None:
            if not answered:
                self.process.terminate()
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.kill()
            self.process = None


def threading_others() -> bool:
    return any(t is not threading.main_thread() for t in threading.enumerate())


class SweepReport(Callback):
    """`<results_dir>/<sweep_name>/report/` after every multirun (turn off with report=false).

    `regbench report <sweep folder>` rebuilds it at any time, also while a sweep runs.
    """

    def __init__(self):
        self.prewarmed: PrewarmedReport | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if config.get("report", True):
            self.prewarmed = PrewarmedReport()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        prewarmed, self.prewarmed = self.prewarmed or PrewarmedReport(start=False), None
        if not config.get("report", True):
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not any(sweep_dir.rglob("metrics.csv")):
            prewarmed.close()
            return
        try:
            formats = tuple(config.get("report_format") or ())
            notes, markdown = prewarmed.build([sweep_dir], sweep_dir / "report", formats)
        except MachineFailure as exc:  # disk full / read-only: the runs are complete, only the report is not
            hint = f"the runs are complete: free space, then `regbench report {sweep_dir}`"
            raise MachineFailure(f"{exc}; {hint}") from None
        except Exception as exc:  # noqa: BLE001 - a report problem must not fail a finished sweep
            log.warning("could not write the sweep report (%s: %s); run `regbench report %s`",
                        type(exc).__name__, exc, sweep_dir)
            return
        for line in notes:
            print(line, file=sys.stderr)
        print(f"report: {markdown}", flush=True)
