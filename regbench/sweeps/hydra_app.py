"""The Hydra application behind `regbench run`: one call per run (per cell in a sweep)."""

from __future__ import annotations

import logging
import shlex

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from regbench.core import console
from regbench.core.errors import Abort, ConfigError, RunIncomplete, failed_outcome, machine_failure
from regbench.records import claims
from regbench.rules.active import check_effective
from regbench.rules.config import register_configs
from regbench.rules.validate import validate
from regbench.sweeps import launchers, outcome
from regbench.sweeps.multirun import PLACEMENT_KEYS, STACK_KEY

register_configs()
log = logging.getLogger("regbench")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def entry(cfg: DictConfig) -> dict:
    hc = HydraConfig.get()
    # Parallel launchers (joblib, submitit): cap this job's CPU threads and pin its GPU before
    # anything touches CUDA; nothing happens under the basic launcher (regbench/sweeps/launchers.py).
    launchers.setup_job(cfg, hc)
    if STACK_KEY in cfg:  # a stack job (hydra.sweeper.cells_per_job > 1)
        from regbench.sweeps.stack_jobs import stack_job

        return stack_job(cfg, hc)
    overrides = [o for o in hc.overrides.task if not o.startswith(PLACEMENT_KEYS)]
    command = shlex.join(["regbench", "run", *overrides])
    try:
        if hc.mode != RunMode.MULTIRUN:  # a sweep's grid was checked as a whole by its preflight
            validate(cfg)  # ranges and names first: they name the bad value more precisely
            check_effective(cfg)
            from regbench.engine.setup import refuse_unused_colour

            refuse_unused_colour(cfg)  # the one such check that needs the data (its channels)
        summary = resume_or_run(cfg, command, overrides)
    except ConfigError as exc:
        raise Abort(str(exc)) from None
    except Exception as exc:  # noqa: BLE001
        if hc.mode != RunMode.MULTIRUN and machine_failure(exc) is None:
            raise
        # In a sweep one broken cell must not end the grid: record it and go on (the sweeper counts).
        return failed_outcome(exc, "run", command)
    if hc.mode != RunMode.MULTIRUN:  # a sweep's outcome is its sweeper's (multirun.count_statuses)
        outcome.record_run(summary)
    incomplete = summary["status"] != "completed"
    console.run_done(summary, single=hc.mode != RunMode.MULTIRUN)
    if incomplete and hc.mode != RunMode.MULTIRUN:
        raise RunIncomplete(summary["status"])
    return summary


def resume_or_run(cfg: DictConfig, command: str, overrides: list[str]) -> dict:
    """Skip a config that already completed (or diverged) under results_dir; continue an
    interrupted one from its checkpoint; otherwise train from scratch (resume=false: always)."""
    from regbench.engine.cells import Cell
    from regbench.engine.loop import train
    from regbench.engine.train import check_config
    from regbench.rules.config import config_hash

    cell = Cell(cfg=cfg, command=command, overrides=list(overrides))
    if not cfg.resume:
        train([cell])
        return cell.summary
    check_config(cfg)  # a bad config fails the same way whether or not it ran before
    h = config_hash(cfg)
    name = claims.key(cfg, h)
    while claims.take(cfg.results_dir, name) is not None:  # another process trains it: resume after it
        claims.wait(cfg.results_dir, [name])
    try:
        reused = cell.resume_outcome(h)
        if reused is not None:
            return reused
        train([cell])
        cell.supersede_stale()
        return cell.summary
    finally:
        claims.release(cfg.results_dir, [name])
