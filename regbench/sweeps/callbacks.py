"""Hydra callbacks: the sweep bar advances per finished job; after a multirun, the sweep's report."""

from __future__ import annotations

import logging
import sys
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


class SweepReport(Callback):
    """`<results_dir>/<sweep_name>/report/` after every multirun (turn off with report=false).

    `regbench report <sweep folder>` rebuilds it at any time, also while a sweep runs.

    Built here, in the sweep's own process, after the last cell. It holds no state: Hydra pickles the
    callbacks into every job of an out-of-process launcher (joblib, submitit, Ray), so nothing live (a
    process, a pipe, a lock) may hang on this object.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if not config.get("report", True):
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not any(sweep_dir.rglob("metrics.csv")):
            return
        try:
            from regbench.report import build_report, terminal_notes

            formats = tuple(config.get("report_format") or ())
            result = build_report([sweep_dir], sweep_dir / "report", formats=formats)
        except MachineFailure as exc:  # disk full / read-only: the runs are complete, only the report is not
            hint = f"the runs are complete: free space, then `regbench report {sweep_dir}`"
            raise MachineFailure(f"{exc}; {hint}") from None
        except Exception as exc:  # noqa: BLE001 - a report problem must not fail a finished sweep
            log.warning("could not write the sweep report (%s: %s); run `regbench report %s`",
                        type(exc).__name__, exc, sweep_dir)
            return
        for line in terminal_notes(result):
            print(line, file=sys.stderr)
        print(f"report: {result.markdown}", flush=True)
