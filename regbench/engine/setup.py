"""Set-up shared by every run and every stack: device, config checks, threads, determinism, signals.

Everything here happens before (or around) the loop in regbench/engine/loop.py and is the
same for a lone run (a stack of one cell) and a stack of many.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal

import torch
from omegaconf import DictConfig

from regbench.core.errors import ConfigError, Interrupted, stop
from regbench.core.model_kinds import CONV_MODELS
from regbench.data import build_splits
from regbench.data.augment import build_augment
from regbench.engine.stack import activations_per_example
from regbench.models import build_model, macs_per_example
from regbench.records import loggers, results
from regbench.regularizers import DROPOUTS
from regbench.rules.validate import validate

log = logging.getLogger("regbench")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if not available[name]:
        ok = ", ".join(["auto"] + [k for k, v in available.items() if v])
        raise ConfigError(f"trainer.device={name!r} is not available on this machine; valid choices: {ok}")
    return torch.device(name)


def autocast_for(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (no loss scaling needed); a no-op context elsewhere."""
    if enabled and device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


@contextlib.contextmanager
def on_sigterm(handler):
    """SIGTERM calls `handler` inside the block (signals can only be set from the main thread)."""
    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def sigterm_raises():
    """Turn SIGTERM into an exception so the run can write `interrupted` before exiting (noted too, so that one
    lost inside a weakref callback still ends the command: core/errors.stop)."""
    return on_sigterm(stop)


@contextlib.contextmanager
def sigterm_deferred():
    """While the end of a run is written, SIGTERM waits: summary.json is written whole first,
    then the signal is raised as Interrupted (the run itself keeps the status it reached)."""
    received = []
    with on_sigterm(lambda signum, frame: received.append(signum)):
        yield
    if received:
        raise Interrupted(f"signal {received[0]} (after the run's files were written)")


def check_config(cfg: DictConfig, data=None):
    """Everything that can reject a config, before any file is written. Returns (device, data).

    `data` may be passed in (a sweep's preflight checks many cells of one dataset); the
    model is built once, on the meta device (check_model_fits), so shape/combination errors surface here too.
    """
    validate(cfg)
    DROPOUTS.get(cfg.dropout.name).check(cfg)
    device = pick_device(cfg.trainer.device)
    results.check_writable(cfg.results_dir)
    if data is None:
        data = build_splits(cfg.dataset, device)
        warn_small_split(cfg, data)
    build_augment(cfg.augment, data.kind, data.num_classes)
    check_model_fits(cfg, data, device)  # builds the model (on the meta device): shape/combination errors too
    if cfg.trainer.channels_last and not (cfg.model.name in CONV_MODELS and data.kind == "image"):
        raise ConfigError("trainer.channels_last=true needs a 2-D convolutional network "
                          f"(model={'|'.join(CONV_MODELS)} on image data), not model={cfg.model.name} on {data.kind} "
                          "data; valid: trainer.channels_last=false")
    loggers.check_loggers(cfg)  # last: it may probe a tracking server (a short network call)
    return device, data


def colour_unused(cfg: DictConfig, data) -> str | None:
    """Why augment.saturation cannot act here, or None: set above 0 (and away from its default, which is never
    refused) on images without 3 (RGB) channels, where color_jitter leaves it out (data/augment_ops.py)."""
    from regbench.rules.active import default

    saturation = cfg.augment.saturation
    if ("color_jitter" in cfg.augment.ops and data.kind == "image" and data.input_shape[0] != 3
            and saturation > 0 and saturation != default("augment.saturation", cfg)):
        return (f"augment.saturation={saturation} has no effect on {data.input_shape[0]}-channel images (saturation "
                "mixes R, G and B); valid: a 3-channel (RGB) dataset, or leave it unset")
    return None


def refuse_unused_colour(cfg: DictConfig) -> None:
    """A single run's refusal of a saturation that cannot act (sweeps/hydra_app.py, beside check_effective); a
    sweep's is its preflight's, by the grid rule (rules/active.check_grid), where every cell's data is known."""
    if "color_jitter" in cfg.augment.ops:  # only then is the data needed (cached: check_config finds it again)
        reason = colour_unused(cfg, build_splits(cfg.dataset, pick_device(cfg.trainer.device)))
        if reason:
            raise ConfigError(reason)


# Bytes a parameter costs in training: float32 weights, their gradients and Adam's two moments.
TRAINING_BYTES_PER_PARAMETER = 4 * 4


def check_model_fits(cfg: DictConfig, data, device: torch.device) -> None:
    """Build the model once, on torch's meta device (shapes only, nothing allocated), so that its shape and
    combination errors surface here; and refuse a model whose weights, gradients and optimizer state, or a batch
    of MC passes, cannot fit the device (an allocation would end in a traceback, or the kernel's OOM killer).
    A model that cannot be built on the meta device (a plugin's layer) is built on the CPU instead, unchecked."""
    from regbench.engine.plan import available_memory

    try:
        with torch.device("meta"):
            model = build_model(cfg, data.input_shape, data.num_classes)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - not every layer builds on meta: the real build raises its own errors
        build_model(cfg, data.input_shape, data.num_classes)
        return
    need = sum(p.numel() for p in model.parameters()) * TRAINING_BYTES_PER_PARAMETER
    have = available_memory(device)
    passes = cfg.eval.mc_samples
    if passes > 0:  # MC dropout evaluates at least `passes` rows at once (engine/uncertainty.py)
        from regbench.engine.uncertainty import MC_ROWS

        per_row = activations_per_example(model, data.input_shape) * 4
        mc = max(MC_ROWS, passes) * per_row
        if per_row and mc > have:
            raise ConfigError(f"eval.mc_samples={passes} needs about {mc / 2**30:,.1f} GiB for one batch of MC passes "
                              f"({per_row:,} bytes of activations each), and {device} has {have / 2**30:,.1f} GiB "
                              f"free; valid: eval.mc_samples <= {max(1, int(have // per_row)):,}")
    if need > have:
        size_key = {"mlp": "hidden", "cnn": "channels"}.get(cfg.model.name)
        shape = (f"model={cfg.model.name} model.{size_key}={list(cfg.model[size_key])}" if size_key
                 else f"model={cfg.model.name}")
        raise ConfigError(f"{shape} has {need // TRAINING_BYTES_PER_PARAMETER:,} parameters: training needs about "
                          f"{need / 2**30:,.1f} GiB (weights, gradients, optimizer state), and {device} has "
                          f"{have / 2**30:,.1f} GiB free; valid: a smaller model")


MIN_PER_CLASS = 5  # fewer training examples per class than this: a warning (the numbers are mostly noise)


def warn_small_split(cfg: DictConfig, data) -> None:
    n, k = len(data.y_train), data.num_classes
    if n < MIN_PER_CLASS * k:
        _warn_small_split(repr(sorted(cfg.dataset.items())), n, k)


@functools.cache  # once per dataset config and process: a run and its sweep check it twice
def _warn_small_split(dataset: str, n: int, k: int) -> None:
    log.warning("warning: the training split has %d examples for %d classes (%.1f per class, fewer than %d); "
                "raise dataset.train_size for meaningful numbers", n, k, n / k, MIN_PER_CLASS)


# Below this many multiply-accumulates per example (a stack counts its cells' together) a model runs
# on one CPU thread unless trainer.threads says otherwise. Measured on the 2-core CPU, batch 100, one
# training step (scripts/bench.py's models), 2 threads vs 1: lone mnist1d MLP [100,100] (15k MACs)
# 0.76x, a stack of 8 of them (120k) 0.86x, 16 (240k) 1.4x, 32 (480k) 1.6x; lone mnist1d CNN (210k)
# 1.3x, a stack of 2 (420k) 1.7x. Small models lose to the threads' synchronisation, and OpenMP
# threads spin-waiting for each other cost far more as soon as another process wants the cores.
SMALL_MODEL_MACS = 200_000


_PROCESS_THREADS = torch.get_num_threads()  # torch's default for this process, read before regbench changes it
_job_threads: int | None = None  # a parallel launcher's share of the cores for this job (limit_job_threads)


def limit_job_threads(threads: int | None) -> None:
    """A parallel launcher's threads rule for this job (launchers.setup_job, every job): the most it
    may use; None: no launcher share (torch's default again for large models)."""
    global _job_threads
    _job_threads = threads
    if threads is not None:
        torch.set_num_threads(threads)


def set_threads(cfg: DictConfig, device: torch.device, model, input_shape: tuple, cells: int = 1) -> None:
    """trainer.threads if set; otherwise on CPU 1 thread for small models and, for larger ones, the
    job's share (a parallel launcher's, else torch's default), set again each time: one process may
    train a small cell and then a large stack. A stack of `cells` models does `cells` times the
    arithmetic per example, so it counts that many."""
    if cfg.trainer.threads is not None:
        torch.set_num_threads(cfg.trainer.threads)
    elif device.type == "cpu":
        small = cells * macs_per_example(model, input_shape) < SMALL_MODEL_MACS
        torch.set_num_threads(1 if small else _job_threads or _PROCESS_THREADS)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: every batch, the partial last one included (the schedule
    must plan exactly the steps the loop takes, or cosine reaches 0 before training ends)."""
    return max(1, math.ceil(n_train / batch_size))


def make_deterministic() -> None:
    """Same seed, same device -> same numbers, also on CUDA (CPU runs already are, tested).

    cuBLAS needs a fixed workspace before its first use; ops without a deterministic kernel
    then raise instead of silently varying (the run fails with that op's name).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
