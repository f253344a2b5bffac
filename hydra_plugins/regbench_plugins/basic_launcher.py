"""`hydra/launcher=basic`: one cell after another, in this process, without composing every job again.

The default launcher of `regbench run -m` is `vectorized` (cells that share a structure train
as stacks); `basic` is the choice for one cell at a time. Hydra's own BasicLauncher composes every
job's config again (the sweeper already did, for its preflight: Hydra's composition is ~160 ms a
cell, the sweeper's cell composer ~8 ms). This subclass takes each job's config from the sweeper
(handed over as `composed`, built by regbench/sweeps/compose.py) and runs it with Hydra's
own run_job: the same jobs, configs, callbacks and JobReturns, one after another. It is stored
under Hydra's own name `basic` (the ConfigStore keeps the last entry
of a name, and this module imports Hydra's first), so a command line that names Hydra's basic
launcher gets the same launcher without the per-job composition.
(No `from __future__ import annotations` here: Hydra's plugin scan breaks on it.)
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn


@dataclass
class RegbenchLauncherConf:
    _target_: str = "hydra_plugins.regbench_plugins.basic_launcher.RegbenchBasicLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="basic", node=RegbenchLauncherConf, provider="regbench")


class RegbenchBasicLauncher(BasicLauncher):
    composer = None  # a CellComposer, made on first use when a job was not composed by our sweeper
    composed = None  # job overrides -> the config our sweeper composed for it (multirun.hand_over)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from regbench.sweeps.multirun import launch_in_process

        return launch_in_process(self, job_overrides, initial_job_idx)
