"""`hydra/sweeper=regbench`: Hydra's basic grid sweeper plus a preflight and a closing line.

Before any job starts, every cell of the grid is composed and validated, so a bad value
anywhere in the grid (`dropout.p=0.5,1.5`) stops the sweep with the one-line error and
nothing written. After the sweep, one line counts completed / diverged / failed runs; if
any did not complete the command exits 1 (regbench.sweep.last_counts).
"""

import logging
from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser

log = logging.getLogger("regbench")


@dataclass
class RegbenchSweeperConf:
    _target_: str = "hydra_plugins.regbench_plugins.sweeper.RegbenchSweeper"
    max_batch_size: int | None = None  # jobs handed to the launcher at once (None = all)
    params: dict[str, str] | None = None  # sweep definition from config (experiments use it)


ConfigStore.instance().store(group="hydra/sweeper", name="regbench", node=RegbenchSweeperConf, provider="regbench")


class RegbenchSweeper(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        from regbench.sweep import count_statuses, preflight

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(self._parse_config() + list(arguments))
        jobs = [job for batch in self.split_arguments(overrides, None) for job in batch]
        loader = self.hydra_context.config_loader
        preflight(self.config, [loader.load_sweep_config(self.config, list(job)) for job in jobs])
        log.info("sweep of %d runs -> %s", len(jobs), self.config.hydra.sweep.dir)
        returns = super().sweep(arguments)
        count_statuses(returns, str(self.config.hydra.sweep.dir))
        return returns
