"""Hydra callbacks: after a multirun, write the sweep's report next to its runs."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("regbench")


class SweepReport(Callback):
    """`<results_dir>/<sweep_name>/report/` after every multirun (turn off with report=false).

    `regbench report <sweep folder>` rebuilds it at any time, also while a sweep runs.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from regbench.report import build_report

        if not config.get("report", True):
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not any(sweep_dir.rglob("metrics.csv")):
            return
        try:
            result = build_report([sweep_dir], sweep_dir / "report")
        except Exception as exc:  # noqa: BLE001 - a report problem must not fail a finished sweep
            log.warning("could not write the sweep report (%s: %s); run `regbench report %s`",
                        type(exc).__name__, exc, sweep_dir)
            return
        print(f"report: {result.markdown}", flush=True)
