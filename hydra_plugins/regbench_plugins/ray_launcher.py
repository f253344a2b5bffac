"""`hydra/launcher=ray`: a sweep's runs as Ray tasks, on this machine or on a running Ray cluster.

    pip install "regbench[ray]"
    regbench run -m hydra/launcher=ray dropout=standard dropout.p=0,0.1,0.3,0.5 seed=0,1,2
    regbench run -m hydra/launcher=ray hydra.launcher.address=head-node:6379 hydra.launcher.num_gpus=1 ...

Ray schedules the tasks by the resources each one asks for (`num_cpus`, `num_gpus`), gives each
its GPUs (CUDA_VISIBLE_DEVICES) and reruns a task whose worker died. This module only registers
the plugin and checks what can be checked before the sweep writes anything; the work is in
regbench/sweeps/ray_launch.py. (No `from __future__ import annotations` here: Hydra's plugin scan breaks
on it.)
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from regbench.sweeps.launchers import RAY


@dataclass
class RayLauncherConf:
    _target_: str = RAY  # this class; launchers.py reads it for the threads rule
    address: str | None = None  # running cluster: "host:6379", "ray://host:10001" or "auto"; None: start Ray here
    num_cpus: float = 1.0  # CPUs each run reserves; also its torch threads unless trainer.threads is set
    num_gpus: float = 0.0  # GPUs each run reserves (fractions share a GPU); Ray sets CUDA_VISIBLE_DEVICES
    max_retries: int = 0  # reruns of a run whose worker process died (a rerun resumes from the run index)
    local_cpus: int | None = None  # CPUs a Ray started here may use (None: all usable cores); not with address


ConfigStore.instance().store(group="hydra/launcher", name="ray", node=RayLauncherConf, provider="regbench")


class RayLauncher(Launcher):
    def __init__(self, address: str | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 max_retries: int = 0, local_cpus: int | None = None):
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_retries = max_retries
        self.local_cpus = local_cpus
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from regbench.sweeps.ray_launch import check_settings

        check_settings(self)  # before the sweeper writes anything: extra installed, settings valid, address up
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from regbench.sweeps.ray_launch import launch

        return launch(self, job_overrides, initial_job_idx)
