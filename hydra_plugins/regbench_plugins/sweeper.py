"""`hydra/sweeper=regbench`: Hydra's basic grid sweeper plus a preflight and a closing line.

Before any job starts, every cell of the grid is composed and validated, so a bad value
anywhere in the grid (`dropout.p=0.5,1.5`) stops the sweep with the one-line error and
nothing written. After the sweep, one line counts completed / diverged / failed runs; if
any did not complete the command exits 1 (regbench/sweeps/outcome.py).

`hydra.sweeper.cells_per_job=K` (K > 1) hands every launcher (joblib, submitit, SLURM, ...)
stacks instead of cells: the grid's cells are grouped by structure (regbench.engine.plan)
into jobs of at most K cells, and each job trains its cells as one stack in the one loop
(regbench/sweeps/stack_jobs.py); every cell still writes its own run folder.

`seed=auto` (hydra.sweeper.auto_seeds, regbench/sweeps/auto_seeds.py) runs the grid in looks: a pilot
of 3 seeds, then more seeds for every cell until every comparison with the baseline is decided
or `hydra.sweeper.max_seeds` is reached (regbench/report/sequential.py).
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore

log = logging.getLogger("regbench")


@dataclass
class RegbenchSweeperConf:
    _target_: str = "hydra_plugins.regbench_plugins.sweeper.RegbenchSweeper"
    max_batch_size: int | None = None  # jobs handed to the launcher at once (None = all)
    params: dict[str, str] | None = None  # sweep definition from config (experiments use it)
    cells_per_job: int = 1  # cells of one structure trained as one stack per launcher job (1: a cell per job)
    auto_seeds: bool = False  # seed=auto on the command line: add seeds until decided (regbench/sweeps/auto_seeds.py)
    max_seeds: int | None = None  # seed budget per cell of seed=auto (None: report/sequential.py's MAX_SEEDS)


ConfigStore.instance().store(group="hydra/sweeper", name="regbench", node=RegbenchSweeperConf, provider="regbench")


class RegbenchSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch) -> None:
        """Compose every job of a batch before launching it (as Hydra does), and validate each one.

        Composition goes through regbench/sweeps/compose.py: Hydra composes once per distinct
        config-group selection, plain values are applied to a copy (same configs as Hydra's
        per-cell composition). Our launchers take the configs from here (multirun.hand_over).
        With max_batch_size unset the whole grid is one batch, so nothing runs until every
        cell has passed `regbench.engine.train.check_config`.
        """
        from regbench.sweeps import multirun
        from regbench.sweeps.compose import CellComposer

        if getattr(self, "composer", None) is None:  # one per sweep: templates are reused across batches
            self.composer = CellComposer(self.hydra_context.config_loader, self.config)
        composer = self.composer
        cfgs = [composer.compose(job) for job in batch]
        log.debug("composed %d jobs (this sweep so far: %d from %d templates, %d by Hydra)", len(batch),
                  composer.fast, composer.templates, composer.slow)
        multirun.preflight(self.config, cfgs)
        multirun.hand_over(self.launcher, {tuple(job): cfg for job, cfg in zip(batch, cfgs, strict=True)})
        log.info("sweep of %d runs -> %s", len(batch), self.config.hydra.sweep.dir)
        if self.batch_index == 1:  # the first batch: start the sweep bar over the whole grid
            from regbench.core import console
            console.sweep_started(sum(len(b) for b in self.overrides))
            multirun.announce_swept_keys([list(job) for b in self.overrides for job in b])

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None,
                 cells_per_job: int = 1, auto_seeds: bool = False, max_seeds: int | None = None):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.cells_per_job = cells_per_job
        self.auto_seeds, self.max_seeds = auto_seeds, max_seeds

    @staticmethod
    def split_arguments(overrides, max_batch_size):
        from regbench.sweeps.multirun import refuse_repeated_values

        refuse_repeated_values(overrides)  # seed=1,1: before Hydra creates the sweep folder
        return BasicSweeper.split_arguments(overrides, max_batch_size)

    def sweep(self, arguments: list[str]) -> Any:
        from regbench.records.results import check_writable
        from regbench.sweeps import multirun
        from regbench.sweeps.multirun import count_statuses, remove_if_only_sweep_record

        check_writable(str(self.config.results_dir))  # a file in the way: one line, before Hydra's mkdir

        if self.cells_per_job < 1:
            from regbench.core.errors import Abort

            raise Abort(f"hydra.sweeper.cells_per_job={self.cells_per_job} is not valid; valid: an integer >= 1")
        if self.cells_per_job > 1:
            from regbench.sweeps.stack_jobs import StackingLauncher

            self.launcher = StackingLauncher(self.launcher, self.cells_per_job)

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        fresh = next((p for p in [*reversed(sweep_dir.parents), sweep_dir] if not p.exists()), None)
        try:
            from regbench.rules.verdicts import PILOT  # numpy only: a plain sweep does not import the report
            from regbench.sweeps import auto_seeds

            budget = auto_seeds.check(self.auto_seeds, self.max_seeds, PILOT)
            with multirun.keep_previous(sweep_dir / "multirun.yaml"):
                multirun.save_record(self.config, sweep_dir / "multirun.yaml")
                if budget is None:
                    returns = super().sweep(arguments)  # saves multirun.yaml, validates every cell, launches
                else:  # the looks of seed=auto: the seeds are the sweeper's, not the config's
                    self.params = {k: v for k, v in (self.params or {}).items() if k != "seed"}
                    returns = auto_seeds.run_looks(self._one_look, arguments, sweep_dir, budget)
        except BaseException:
            # Hydra wrote multirun.yaml before the preflight (or the launcher: Abort, a BaseException)
            # failed: a sweep that ran nothing leaves nothing.
            remove_if_only_sweep_record(fresh)
            raise
        finally:
            if getattr(self.launcher, "composed", None):  # what the launcher did not take
                self.launcher.composed = None
            from regbench.core import console
            console.sweep_finished()
            multirun.announce_swept_keys([])
        count_statuses(returns, str(sweep_dir))
        return returns

    def _one_look(self, arguments: list[str]) -> Any:
        """One look of seed=auto: BasicSweeper.sweep over the look's seeds (its batches start afresh)."""
        self.batch_index = 0
        return super().sweep(arguments)
