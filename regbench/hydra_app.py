"""The Hydra application behind `regbench run`: one call per run (per cell in a sweep)."""

from __future__ import annotations

import logging
import shlex

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from regbench.config import register_configs
from regbench.errors import Abort, ConfigError, RunIncomplete

register_configs()
log = logging.getLogger("regbench")

# Overrides that choose where a run is written, not what it computes: left out of the rerun command.
_PLACEMENT_KEYS = ("sweep_name=",)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def entry(cfg: DictConfig) -> dict:
    from regbench.train import run

    hc = HydraConfig.get()
    overrides = [o for o in hc.overrides.task if not o.startswith(_PLACEMENT_KEYS)]
    command = shlex.join(["regbench", "run", *overrides])
    try:
        summary = run(cfg, command, overrides)
    except ConfigError as exc:
        raise Abort(str(exc)) from None
    except Exception as exc:  # noqa: BLE001
        if hc.mode != RunMode.MULTIRUN:
            raise
        # In a sweep one broken cell must not end the grid: record it and go on (the sweeper counts).
        log.error("run failed (%s: %s): %s", type(exc).__name__, exc, command)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    incomplete = summary["status"] != "completed"
    print(f"results: {summary['run_dir']}" + (f"  [{summary['status']}: {summary.get('error')}]" if incomplete else ""))
    if incomplete and hc.mode != RunMode.MULTIRUN:
        raise RunIncomplete(summary["status"])
    return summary
