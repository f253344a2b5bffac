"""`hydra/launcher=vectorized`: train a sweep's cells that share structure as one stack.

    regbench run -m dropout=standard dropout.p=0,0.1,0.3,0.5 seed=0,1,2,3 hydra/launcher=vectorized

Cells that differ only in values (dropout rates, lr, weight decay, momentum, seed, L1,
max-norm, label smoothing, augmentation settings) train together in the one loop; every
cell still writes its own run folder exactly as a lone run would. The few settings that
cannot share a stack (checkpoints, compile, channels_last, eval.mode=train, per-epoch MC)
train as stacks of one, with one log line saying why. The work is in regbench/engine/;
this module only registers the plugin.
(No `from __future__ import annotations` here: Hydra's plugin scan breaks on it.)
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class VectorizedLauncherConf:
    _target_: str = "hydra_plugins.regbench_plugins.vectorized_launcher.VectorizedLauncher"
    max_cells: int = 256  # most cells in one stack; larger groups are split evenly
    max_memory_gb: float | None = None  # memory a stack may plan for (None: half of what the device has free)


ConfigStore.instance().store(group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf,
                             provider="regbench")


class VectorizedLauncher(Launcher):
    composed = None  # job overrides -> the config our sweeper composed for it (multirun.hand_over)

    def __init__(self, max_cells: int = 256, max_memory_gb: float | None = None):
        from regbench.core.errors import Abort, ConfigError
        from regbench.engine.plan import check_limits

        try:  # Hydra makes the launcher before the sweep folder: a bad limit leaves nothing behind
            check_limits(max_cells, max_memory_gb)
        except ConfigError as exc:
            raise Abort(str(exc)) from None  # through Hydra's instantiate, which wraps an Exception
        self.max_cells = max_cells
        self.max_memory_gb = max_memory_gb
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from regbench.sweeps.stacked import launch

        return launch(self, job_overrides, initial_job_idx)
