"""Stacks for every launcher: `hydra.sweeper.cells_per_job=K` turns each launcher job into a stack.

The sweeper wraps its launcher in StackingLauncher: the cells of a batch are grouped by stack
key (engine/plan.py) into jobs of at most K cells; a job is its first cell's overrides plus
`+stack_cells='<the others>'` (base64 JSON, which the override grammar leaves alone). In the
job process hydra_app.entry hands such a job to `stack_job`, which composes the other cells
with the job's own Hydra (same config path, `--config-dir` included) and trains them all
through engine.launch.train_cells. Job numbers (threads rule, GPU slot) count stack jobs.
"""

from __future__ import annotations

import logging
import shlex

from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write

from regbench.core import console
from regbench.core.errors import Abort, failed_outcome
from regbench.engine.cells import Cell
from regbench.engine.plan import alone_reason, stack_key
from regbench.sweeps.multirun import (
    PLACEMENT_KEYS,
    STACK_KEY,
    decode_cells,
    encode_cells,
    take_task_config,
    taken,
)
from regbench.sweeps.stacked import train_cells

log = logging.getLogger("regbench")


class StackingLauncher:
    """Wraps any Hydra launcher (basic, joblib, submitit, ray): each job it launches is a stack."""

    composed = None  # job overrides -> the config our sweeper composed for it (multirun.hand_over)

    def __init__(self, inner, cells_per_job: int):
        self.inner, self.cells_per_job = inner, cells_per_job

    def __getattr__(self, name):  # setup, config, ... of the launcher it wraps
        return getattr(self.inner, name)

    def launch(self, job_overrides, initial_job_idx: int):
        groups: dict[str, list[list[str]]] = {}
        for n, overrides in enumerate(job_overrides):
            job = taken(self, overrides)  # read only for its stack key: the inner launcher composes its jobs itself
            cfg = take_task_config(job) if job is not None else None  # read only for its stack key
            key = f"alone-{n}" if cfg is None or alone_reason(cfg) else stack_key(cfg)
            groups.setdefault(key, []).append(list(overrides))
        jobs = []
        for cells in groups.values():
            for i in range(0, len(cells), self.cells_per_job):
                first, *others = cells[i : i + self.cells_per_job]
                jobs.append(first + ([f"+{STACK_KEY}='{encode_cells(others)}'"] if others else []))
        log.info("%d cells -> %d stack jobs of at most %d cells", len(job_overrides), len(jobs), self.cells_per_job)
        return self.inner.launch(jobs, initial_job_idx)


def stack_job(cfg: DictConfig, hc) -> dict:
    """Train this job's cells (its own config and the ones `+stack_cells` lists) as one stack."""
    others = decode_cells(str(cfg[STACK_KEY]))
    with read_write(cfg), open_dict(cfg):
        del cfg[STACK_KEY]
    own = [o for o in hc.overrides.task if not o.startswith(f"+{STACK_KEY}=")]
    hydra = GlobalHydra.instance().hydra  # the same config search path (and --config-dir) as this job's
    cfgs = [cfg] + [take_task_config(hydra.compose_config(hc.job.config_name, o, run_mode=RunMode.MULTIRUN,
                                                     with_log_configuration=False)) for o in others]
    cells = []
    for c, overrides in zip(cfgs, [own, *others], strict=True):
        overrides = [o for o in overrides if not o.startswith(PLACEMENT_KEYS)]
        cells.append(Cell(cfg=c, command=shlex.join(["regbench", "run", *overrides]), overrides=overrides))
    try:
        values = train_cells(cells, len(cells), None)
    except Abort:
        raise
    except Exception as exc:  # noqa: BLE001 - as entry: a broken stack must not end the grid
        failed = failed_outcome(exc, "stack job", f"{len(cells)} cells, first: {cells[0].command}")
        values = [dict(failed) for _ in cells]
    for v in values:
        if "run_dir" in v:
            console.run_done(v, single=False)
    return {"status": "completed" if all(v["status"] == "completed" for v in values) else "incomplete",
            "cells": values}
