"""Train one configuration: a stack of one cell through the one loop (regbench/engine/loop.py).

The names other modules use for a single run live here; the engine package holds the loop,
the stack, the per-cell bookkeeping and the set-up they share.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from regbench.engine.cells import Cell, Progress, start_run
from regbench.engine.loop import train
from regbench.engine.setup import check_config, pick_device, steps_per_epoch

__all__ = ["Progress", "check_config", "pick_device", "run", "start_run", "steps_per_epoch"]


def run(cfg: DictConfig, command: str = "", overrides: list[str] | None = None,
        resume_dir: Path | None = None) -> dict:
    """Train one configuration; write its run folder; return the summary dict (with "run_dir").

    resume_dir: an interrupted run folder with a checkpoint.pt to continue from.
    """
    cell = Cell(cfg=cfg, command=command, overrides=list(overrides or []), resume_dir=resume_dir)
    train([cell])
    return cell.summary
