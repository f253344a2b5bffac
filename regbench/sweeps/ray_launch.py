"""The Ray launcher's work (`hydra/launcher=ray`, registered in hydra_plugins/regbench_plugins).

A thin launcher on Ray's core API (ray.init / ray.remote / ray.get) rather than
hydra-ray-launcher: that plugin pins cloudpickle<3, which joblib 1.6 (scikit-learn, the joblib
launcher) cannot run with, and pulls ray[default] + boto3 for its AWS mode. Ray alone keeps the
dependency set resolvable and is all a sweep needs: Ray schedules the tasks by the resources
they reserve, assigns GPUs and reruns tasks whose worker died.

Driver (the `regbench run` process): start Ray here or connect to `address`, ship the sweep
config / Hydra context once (ray.put), submit one task per job, wait for all, shut Ray down.
Task (`run_jobs`, one Ray worker): for each (job number, overrides) it is given, compose the
job's config and call Hydra's `run_job` with regbench's task function, exactly as the basic
launcher does in-process, so run folders, config hashes, the run index (resume) and metrics are
those of any other launcher. `run_jobs` takes a list so that one task can train several cells.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals
from omegaconf import DictConfig, open_dict

from regbench.core.errors import Abort

log = logging.getLogger("regbench")

EXTRA = 'pip install "regbench[ray]"'  # the optional extra that provides ray
CONNECT_TIMEOUT_S = 5.0  # how long the driver waits for a TCP answer from `address` before giving up


def cluster_address(launcher) -> str | None:
    """hydra.launcher.address, else Ray's own RAY_ADDRESS variable; None: start Ray on this machine."""
    return launcher.address or os.environ.get("RAY_ADDRESS") or None


def check_settings(launcher) -> None:
    """Refuse what would fail or hang later, before anything is written (one line each, exit 2)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise Abort(f"hydra/launcher=ray needs the optional extra: {EXTRA}") from None
    if launcher.num_cpus < 0 or launcher.num_gpus < 0 or (launcher.num_cpus == 0 and launcher.num_gpus == 0):
        raise Abort(f"hydra.launcher.num_cpus={launcher.num_cpus} num_gpus={launcher.num_gpus} is not valid; "
                    "valid: num_cpus >= 0 and num_gpus >= 0, not both 0 (each run must reserve something)")
    if launcher.max_retries < 0:
        raise Abort(f"hydra.launcher.max_retries={launcher.max_retries} is not valid; valid: an integer >= 0")
    address = cluster_address(launcher)
    if address is not None and launcher.local_cpus is not None:
        source = "hydra.launcher.address" if launcher.address else "RAY_ADDRESS"
        raise Abort(f"hydra.launcher.local_cpus={launcher.local_cpus} cannot take effect with "
                    f"{source}={address!r} (the cluster has its CPUs); valid: set only one")
    if launcher.local_cpus is not None and launcher.local_cpus < 1:
        raise Abort(f"hydra.launcher.local_cpus={launcher.local_cpus} is not valid; valid: an integer >= 1 or null")
    if address is not None:
        check_reachable(str(address), "hydra.launcher.address" if launcher.address else "RAY_ADDRESS")


def host_port(address: str) -> tuple[str, int] | None:
    """("head", 6379) for "head:6379" or "ray://head:6379"; None where Ray resolves it ("auto")."""
    rest = address.split("://", 1)[-1]
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, source: str = "hydra.launcher.address") -> None:
    """Ray waits a long time for a cluster that is not there; a TCP connect answers in seconds."""
    target = host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise Abort(f"{source}={address!r} is not reachable ({exc.strerror or exc}); start the "
                    "cluster there (`ray start --head`) or fix the address, or leave it unset for a Ray on "
                    "this machine") from None


def start_ray(launcher) -> None:
    import ray

    from regbench.sweeps.launchers import usable_cores

    address = cluster_address(launcher)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address is None:
        kwargs |= {"num_cpus": launcher.local_cpus or usable_cores(), "include_dashboard": False}
    else:
        kwargs["address"] = address
    if not sys.stdout.isatty():  # Ray colours the "(run_jobs pid=…)" prefix of each job's lines: not into a pipe
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # Ray's own switch, read while it prints
    try:
        ray.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ...: one line, not a traceback
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = f"connect to address={address!r}" if address else "start Ray on this machine"
        raise Abort(f"hydra/launcher=ray could not {where}: {first}; check hydra.launcher.address "
                    "(`ray status` on the cluster) or leave it unset") from None
    problem = missing_resources(launcher, ray.cluster_resources())
    if problem:
        ray.shutdown()
        raise Abort(problem)


def missing_resources(launcher, have: dict) -> str | None:
    """What no node can give one task (Ray would leave it waiting forever), as the error line."""
    for name, need in (("CPU", launcher.num_cpus), ("GPU", launcher.num_gpus)):
        if need > have.get(name, 0):
            return (f"hydra.launcher.num_{name.lower()}s={need:g} but the Ray cluster has {have.get(name, 0):g} "
                    f"{name}s; valid: at most {have.get(name, 0):g}")
    return None


def run_jobs(jobs: Sequence[tuple[int, Sequence[str]]], hydra_context, config: DictConfig, task_function,
             singleton_state: dict, cwd: str) -> list[JobReturn]:
    """One Ray task: run the given (job number, overrides) jobs in turn, as Hydra's basic launcher does.

    `cwd` is the driver's working directory: on the same machine (or a shared filesystem) a
    relative results_dir then means the same folder as for every other launcher.
    """
    setup_globals()
    Singleton.set_state(singleton_state)
    if Path(cwd).is_dir():
        os.chdir(cwd)
    returns = []
    for idx, overrides in jobs:
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
            sweep_config.hydra.job.num = idx
        HydraConfig.instance().set_config(sweep_config)
        returns.append(run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                               job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
    return returns


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    import ray

    setup_globals()
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    start_ray(launcher)
    try:
        task = ray.remote(run_jobs).options(num_cpus=launcher.num_cpus, num_gpus=launcher.num_gpus,
                                            max_retries=launcher.max_retries)
        shared = [ray.put(x) for x in (launcher.hydra_context, launcher.config, launcher.task_function,
                                       Singleton.get_state())]
        jobs = [(initial_job_idx + i, list(overrides)) for i, overrides in enumerate(job_overrides)]
        log.info("ray: %d runs, %g CPUs and %g GPUs each", len(jobs), launcher.num_cpus, launcher.num_gpus)
        refs = [task.remote([job], *shared, os.getcwd()) for job in jobs]
        try:
            return [ret for ref, job in zip(refs, jobs, strict=True) for ret in collect(ref, [job])]
        except BaseException:  # Ctrl-C / SIGTERM: stop the runs (each keeps what it wrote), then go
            for ref in refs:
                ray.cancel(ref)
            raise
    finally:
        ray.shutdown()


def collect(ref, jobs: list[tuple[int, Sequence[str]]]) -> list[JobReturn]:
    """The task's JobReturns; a task whose worker died (after its retries) counts its jobs as failed."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.error("ray task for jobs %s failed: %s", [idx for idx, _ in jobs], first)
        return [JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=exc)
                for _, overrides in jobs]
