"""`hydra/launcher=vectorized`: train a sweep's cells that share structure as one stacked model.

    regbench run -m dropout=standard dropout.p=0,0.1,0.3,0.5 seed=0,1,2,3 hydra/launcher=vectorized

Cells that differ only in continuous values (dropout rates, lr, weight decay, momentum,
seed, L1, max-norm) train together; every cell still writes its own run folder exactly as
a sequential run would. Cells without a stacked form (cnn, other dropout types,
augmentation, checkpointing) run one by one in the ordinary loop. The work is in
regbench/vectorized/; this module only registers the plugin.
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
    max_cells: int = 256  # most cells in one stacked model; larger buckets are split evenly
    max_memory_gb: float | None = None  # memory a bucket may plan for (None: half of what the device has free)
    exact_masks: bool = False  # CPU: draw each cell's dropout masks from its own sequential RNG stream (slower)


ConfigStore.instance().store(group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf,
                             provider="regbench")


class VectorizedLauncher(Launcher):
    def __init__(self, max_cells: int = 256, max_memory_gb: float | None = None, exact_masks: bool = False):
        self.max_cells = max_cells
        self.max_memory_gb = max_memory_gb
        self.exact_masks = exact_masks
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from regbench.vectorized.launch import launch

        return launch(self, job_overrides, initial_job_idx)
