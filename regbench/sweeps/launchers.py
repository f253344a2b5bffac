"""Running a sweep's jobs side by side through Hydra's launchers: CPU threads and GPU slots per job.

We do not schedule anything ourselves (docs/scaling_out.md): `hydra/launcher=joblib` runs jobs
in parallel local processes, `submitit_local` / `submitit_slurm` run each job as its own process
(locally or as a SLURM array). Two things go wrong when jobs share a machine, and both are
fixed here, inside the job process, before the run builds anything:

- CPU oversubscription: n jobs each using torch's default (all cores) fight over the cores.
  Threads rule: with `trainer.threads=null`, a joblib job gets max(1, cores // n_jobs) threads,
  so jobs × threads <= cores; a submitit job gets `hydra.launcher.cpus_per_task` (what SLURM
  allocates to it), or 1 under submitit_local (it starts every job at once); a Ray task gets
  the `hydra.launcher.num_cpus` it reserved (at least 1). An explicit
  `trainer.threads=N` always wins (train.prepare sets it). The basic launcher is left alone.
- GPUs: parallel local jobs would all land on cuda:0. Each job of a parallel local launcher is
  pinned to one GPU (CUDA_VISIBLE_DEVICES) chosen round robin from its job number, so
  `hydra.launcher.n_jobs = GPUs × jobs per GPU` puts that many jobs on each GPU. Ray assigns
  GPUs itself (`hydra.launcher.num_gpus` per task), so its tasks are not pinned here.

Why here (the task function) and not in the config: only the job process can set its own
threads and CUDA_VISIBLE_DEVICES, it sees the launcher settings (HydraConfig), and writing the
result into `trainer.threads` would change the config hash (threads are hashed), so the same
sweep through another launcher would no longer resume or compare as the same runs.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("regbench")

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT_LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
SUBMITIT_SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
RAY = "hydra_plugins.regbench_plugins.ray_launcher.RayLauncher"
PARALLEL_LOCAL = (JOBLIB, SUBMITIT_LOCAL)  # several jobs on this machine at once: pin GPUs

# hydra/launcher=<name> options that come from the optional extra, for the CLI's error message.
EXTRA_LAUNCHERS = {"joblib": "cluster", "submitit_local": "cluster", "submitit_slurm": "cluster",
                   "slurm_example": "cluster"}

_pinned: str | None = None  # the GPU this process was pinned to (a joblib worker runs many jobs)


def usable_cores() -> int:
    """CPUs this process may run on (taskset / cgroup cpusets included), not the whole machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def effective_n_jobs(n_jobs: int | None, cores: int) -> int:
    """How many jobs joblib runs at once: n_jobs=-1 means all cores, -2 all but one (joblib's rule)."""
    if not n_jobs:
        return 1
    return max(cores + 1 + n_jobs, 1) if n_jobs < 0 else n_jobs


def threads_per_job(cores: int, n_jobs: int) -> int:
    """The threads rule: jobs × threads <= cores, at least one thread each."""
    return max(1, cores // max(1, n_jobs))


def job_threads(launcher, cores: int) -> int | None:
    """Torch CPU threads for one job under this launcher config (None: leave torch's default)."""
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if target == JOBLIB:
        return threads_per_job(cores, effective_n_jobs(launcher.get("n_jobs"), cores))
    if target in (SUBMITIT_LOCAL, SUBMITIT_SLURM):
        cpus = launcher.get("cpus_per_task")
        if cpus:
            return int(cpus)
        return 1 if target == SUBMITIT_LOCAL else None  # SLURM binds the job to its allocated CPUs
    if target == RAY:  # Ray runs as many tasks at once as the cluster has CPUs for their num_cpus
        return max(1, int(launcher.get("num_cpus") or 0))
    return None


def gpu_for_job(job_num: int, n_gpus: int) -> int | None:
    """Index (into the visible GPUs) for job `job_num`; None when there is nothing to choose.

    Round robin: any n_gpus × k consecutive job numbers put exactly k jobs on each GPU, so with
    `hydra.launcher.n_jobs = n_gpus × k` the jobs running at once share the GPUs k to a device.
    """
    if n_gpus <= 1:
        return None
    return job_num % n_gpus


def visible_gpus() -> list[str]:
    """GPU ids this process may use, without initialising CUDA (which would freeze the choice)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [t.strip() for t in env.split(",") if t.strip()]
    import torch

    # device_count asks NVML first and does not initialise CUDA (torch.cuda.is_available() may).
    return [str(i) for i in range(torch.cuda.device_count())]


def pin_gpu(job_num: int) -> str | None:
    """Set CUDA_VISIBLE_DEVICES to this job's GPU; returns it, or None if nothing was done.

    Must run before CUDA is initialised in this process. A joblib worker that already ran a job
    keeps its first GPU (CUDA cannot move once initialised); as the first n_jobs jobs start on
    n_jobs fresh workers, the round robin still spreads the workers over the GPUs.
    """
    global _pinned
    if _pinned is not None:
        return _pinned
    import torch

    if torch.cuda.is_initialized():
        log.warning("CUDA is already initialised in this process: job %d is not pinned to a GPU", job_num)
        return None
    gpus = visible_gpus()
    index = gpu_for_job(job_num, len(gpus))
    if index is None:
        return None
    _pinned = os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index]
    return _pinned


def setup_job(cfg, hydra_cfg) -> dict | None:
    """Called by the task function first: threads and GPU for this job.

    Returns what it set (None under the basic launcher); train.py records threads and
    CUDA_VISIBLE_DEVICES in summary.json.
    """
    from regbench.engine.setup import limit_job_threads

    launcher = hydra_cfg.launcher if "launcher" in hydra_cfg else None
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    limit_job_threads(None)  # an earlier job's share in this process does not carry over
    if target not in (JOBLIB, SUBMITIT_LOCAL, SUBMITIT_SLURM, RAY):
        return None
    done: dict = {}
    if target in PARALLEL_LOCAL and cfg.trainer.device in ("auto", "cuda"):
        gpu = pin_gpu(int(hydra_cfg.job.get("num") or 0))
        if gpu is not None:
            done["cuda_visible_devices"] = gpu
    if cfg.trainer.threads is None:
        threads = job_threads(launcher, usable_cores())
        if threads is not None:
            limit_job_threads(threads)
    return done


