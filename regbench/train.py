"""The one training loop. Read it top to bottom: set-up, epochs, the end of a run.

Performance shape (docs/architecture.md): the splits live on the device as tensors, a batch is
a slice of a randperm index, metrics accumulate on the device and are synced to the host
once per epoch, so small models are not bound by Python or data-loading overhead.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from regbench import checkpoint, console, loggers, results, uncertainty
from regbench.config import config_hash, validate
from regbench.data import build_splits
from regbench.data.augment import build_augment
from regbench.errors import ConfigError, Interrupted
from regbench.evaluate import loss_and_correct
from regbench.models import build_model, macs_per_example
from regbench.optim import build_optimizer
from regbench.protocol import Protocol, Tracker
from regbench.regularizers import DROPOUTS, penalties

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


def _autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (no loss scaling needed); a no-op context elsewhere."""
    if enabled and device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


@contextlib.contextmanager
def _on_sigterm(handler):
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


def _sigterm_raises():
    """Turn SIGTERM into an exception so the run can write `interrupted` before exiting."""
    def handler(signum, frame):
        raise Interrupted(f"signal {signum}")

    return _on_sigterm(handler)


@contextlib.contextmanager
def _sigterm_deferred():
    """While the end of a run is written, SIGTERM waits: summary.json is written whole first,
    then the signal is raised as Interrupted (the run itself keeps the status it reached)."""
    received = []
    with _on_sigterm(lambda signum, frame: received.append(signum)):
        yield
    if received:
        raise Interrupted(f"signal {received[0]} (after the run's files were written)")


def check_config(cfg: DictConfig, data=None):
    """Everything that can reject a config, before any file is written. Returns (device, data).

    `data` may be passed in (a sweep's preflight checks many cells of one dataset); the
    model is built once on the CPU so shape/combination errors surface here too.
    """
    validate(cfg)
    DROPOUTS.get(cfg.dropout.name).check(cfg)
    device = pick_device(cfg.trainer.device)
    results.check_writable(cfg.results_dir)
    if data is None:
        data = build_splits(cfg.dataset, device)
        warn_small_split(cfg, data)
    build_augment(cfg.augment, data.kind, data.num_classes)
    build_model(cfg, data.input_shape, data.num_classes)
    if cfg.trainer.channels_last and not (cfg.model.name == "cnn" and data.kind == "image"):
        raise ConfigError(f"trainer.channels_last=true needs a 2-D CNN (model=cnn on image data), not "
                          f"model={cfg.model.name} on {data.kind} data; valid: trainer.channels_last=false")
    loggers.check_loggers(cfg)  # last: it may probe a tracking server (a short network call)
    return device, data


MIN_PER_CLASS = 5  # fewer training examples per class than this: a warning (the numbers are mostly noise)


def warn_small_split(cfg: DictConfig, data) -> None:
    n, k = len(data.y_train), data.num_classes
    if n < MIN_PER_CLASS * k:
        log.warning("warning: the training split has %d examples for %d classes (%.1f per class, fewer than %d); "
                    "raise dataset.train_size for meaningful numbers", n, k, n / k, MIN_PER_CLASS)


# Below this many multiply-accumulates per example a model runs on one CPU thread unless
# trainer.threads says otherwise: measured here, a second thread gained nothing for the bundled
# models (mnist1d CNN 0.68 s vs 0.67 s) and cost up to 20x as soon as any other process wanted
# the cores (OpenMP threads spin-waiting for each other).
SMALL_MODEL_MACS = 1_000_000


def set_threads(cfg: DictConfig, device: torch.device, model, input_shape: tuple) -> None:
    """trainer.threads if set; otherwise 1 thread on CPU for small models (never more than a
    parallel launcher already gave this job), torch's default for larger ones."""
    if cfg.trainer.threads is not None:
        torch.set_num_threads(cfg.trainer.threads)
    elif device.type == "cpu" and macs_per_example(model, input_shape) < SMALL_MODEL_MACS:
        torch.set_num_threads(1)


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


def prepare(cfg: DictConfig):
    """Check the config, then build data, augmentation, model and optimizer on the device."""
    device, data = check_config(cfg)
    if cfg.trainer.deterministic:
        make_deterministic()
    augment = build_augment(cfg.augment, data.kind, data.num_classes)
    torch.manual_seed(cfg.seed)  # model init and dropout masks; data order has its own generator
    model = build_model(cfg, data.input_shape, data.num_classes).to(device)
    set_threads(cfg, device, model, data.input_shape)  # counted on the model itself: no extra build
    if cfg.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer, scheduler = build_optimizer(cfg.optim, model, cfg.trainer.epochs,
                                           steps_per_epoch(len(data.x_train), cfg.trainer.batch_size))
    return device, data, augment, model, optimizer, scheduler


def start_run(cfg: DictConfig, device, data, model, command: str, overrides, **extra) -> tuple[Path, dict]:
    """Create a fresh run folder (config.yaml, index entry) and the summary it will end with.

    The one place that says what a fresh summary holds: the vectorized launcher calls it too.
    """
    cfg_hash = config_hash(cfg)
    run_dir = results.create_run_dir(cfg)
    try:
        results.save_config(run_dir, cfg)
        results.mark_started(cfg.results_dir, run_dir, cfg_hash)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # e.g. disk full: no half-made run folder is left
        raise
    summary = {
        "status": "running",
        "run_id": run_dir.name,
        "config_hash": cfg_hash,
        "seed": cfg.seed,
        "device": str(device),
        "command": command,
        "overrides": list(overrides or []),
        "data": data.summary(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),  # set by trainer.threads or the launcher's threads rule
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # GPU slot under parallel launchers
        "versions": results.versions(),
        "git_commit": results.git_commit(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    return run_dir, summary


@dataclass
class Progress:
    """Everything that changes from epoch to epoch besides the model and optimizer.

    Kept together so a checkpoint can save and restore it whole (resume gives the same
    numbers as an uninterrupted run on CPU).
    """

    order: torch.Generator  # data order: its own stream, the same for every dropout type
    rows: list = field(default_factory=list)  # metrics.csv rows written so far
    tracker: Tracker = field(default_factory=Tracker)  # best epoch, selected weights, early stopping

    @property
    def epoch(self) -> int:
        return len(self.rows)


def run(cfg: DictConfig, command: str = "", overrides: list[str] | None = None,
        resume_dir: Path | None = None) -> dict:
    """Train one configuration; write its run folder; return the summary dict.

    resume_dir: an interrupted run folder with a checkpoint.pt to continue from.
    """
    device, data, augment, model, optimizer, scheduler = prepare(cfg)
    autocast = _autocast(device, cfg.trainer.amp)
    tr = cfg.trainer
    protocol = Protocol.from_trainer(tr)
    progress = Progress(order=torch.Generator().manual_seed(cfg.seed))

    if resume_dir is not None:
        run_dir = Path(resume_dir)
        summary = checkpoint.load(run_dir, model, optimizer, scheduler, progress)
        results.truncate_metrics(run_dir / "metrics.csv", progress.epoch)  # drop rows newer than the checkpoint
        summary.update(status="running", error=None, resumed_at_epoch=progress.epoch)
        results.mark_started(cfg.results_dir, run_dir, summary["config_hash"])
        log.info("resuming %s at epoch %d", run_dir, progress.epoch + 1)
    else:
        run_dir, summary = start_run(cfg, device, data, model, command, overrides)
        log.info("run %s: %s on %s, %d parameters", run_dir, cfg.model.name, device, summary["parameters"])
    uncertainty.warn_ineffective(model, cfg.eval)
    mc_epoch = cfg.eval.mc_every_epoch and cfg.eval.mc_samples > 0  # extra columns only when enabled
    columns = results.METRIC_COLUMNS + (uncertainty.EPOCH_COLUMNS if mc_epoch else [])
    writer = None  # opened inside the try below: a full disk there still ends the run as `failed`

    # A fixed training subset, measured in eval mode each epoch, gives the train side of the gap.
    n_sub = min(tr.train_eval_size, len(data.x_train))
    sub = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(cfg.dataset.split_seed))[:n_sub]
    x_sub, y_sub = data.x_train[sub.to(device)], data.y_train[sub.to(device)]
    scheduled = [m for m in model.modules() if hasattr(m, "set_progress")]  # DropBlock's linear ramp
    n_batches = steps_per_epoch(len(data.x_train), tr.batch_size)
    total_steps = tr.epochs * n_batches
    run_loggers = None  # logger=tensorboard / mlflow, beside metrics.csv: started with the writer below

    # The compiled module shares the model's parameters; state_dicts and evaluation use `model`.
    forward = torch.compile(model) if tr.compile else model
    layout = torch.channels_last if tr.channels_last else torch.contiguous_format

    started = time.perf_counter()
    bar = console.run_bar(tr.epochs, progress.epoch, run_dir.name.split("_", 1)[-1][-40:], tr.progress)
    try:
        writer = results.MetricsWriter(run_dir / "metrics.csv", columns)
        run_loggers = loggers.start(cfg, run_dir, summary)
        with _sigterm_raises():
            for epoch in bar:
                t0 = time.perf_counter()
                # ---- train one epoch: batches are slices of a random permutation of the device tensors
                model.train()
                perm = torch.randperm(len(data.x_train), generator=progress.order).to(device)
                batch_loss = torch.zeros((), device=device)
                n_steps = 0
                for b, i in enumerate(range(0, len(perm), tr.batch_size)):
                    for m in scheduled:  # fraction of training done after this step: full rate at the end
                        m.set_progress(((epoch - 1) * n_batches + b + 1) / total_steps)
                    idx = perm[i : i + tr.batch_size]
                    if len(idx) < 2 and cfg.model.batchnorm:
                        continue  # BatchNorm cannot normalise a batch of one
                    xb, yb = data.normalize(data.x_train[idx]), data.y_train[idx]  # (B, *input_shape), (B,)
                    if augment is not None:
                        xb, yb = augment(xb, yb)  # yb may become (B, K) soft targets (mixup/cutmix)
                    with autocast():
                        logits = forward(xb.contiguous(memory_format=layout))
                    loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.reg.label_smoothing)
                    objective = loss + cfg.reg.l1 * penalties.l1_penalty(model) if cfg.reg.l1 > 0 else loss
                    optimizer.zero_grad(set_to_none=True)
                    objective.backward()
                    optimizer.step()
                    scheduler.step()
                    if cfg.reg.max_norm is not None:
                        penalties.apply_max_norm_(model, cfg.reg.max_norm)
                    batch_loss += loss.detach()
                    n_steps += 1

                # ---- evaluate: train subset and validation in eval.mode (eval unless measuring the mistake);
                # one host sync for all numbers
                train_m = loss_and_correct(model, x_sub, y_sub, data.normalize, autocast, cfg.eval.mode)
                val_m = loss_and_correct(model, data.x_val, data.y_val, data.normalize, autocast, cfg.eval.mode)
                train_loss, train_acc, val_loss, val_acc, mean_batch, zero_frac = torch.cat(
                    [train_m, val_m, (batch_loss / max(n_steps, 1)).double().view(1),
                     penalties.zero_fraction(model).view(1)]).tolist()
                row = {
                    "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                    "val_loss": val_loss, "val_acc": val_acc,
                    "gap_loss": val_loss - train_loss, "gap_acc": train_acc - val_acc,
                    "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0,
                    "batch_loss": mean_batch, "zero_frac": zero_frac,
                }
                if mc_epoch:  # MC dropout on validation (its own host sync; leaves the RNG of training alone)
                    row |= uncertainty.epoch_columns(model, data.x_val, data.y_val, data.normalize, autocast, cfg.eval)
                writer.append(row)
                run_loggers.log_epoch(row)
                progress.rows.append(row)
                bar.set_postfix(val_acc=f"{val_acc:.3f}", gap=f"{row['gap_acc']:+.3f}")

                if not all(math.isfinite(row[k]) for k in ("batch_loss", "train_loss", "val_loss")):
                    summary.update(status="diverged", error=f"non-finite loss at epoch {epoch}")
                    log.warning("run %s diverged at epoch %d (non-finite loss)", run_dir.name, epoch)
                    break
                # ---- the evaluation protocol: best epoch (and its weights if trainer.select keeps them),
                # early stopping on trainer.monitor
                stop = progress.tracker.update(protocol, epoch, row, lambda: _snapshot(model))
                if tr.checkpoint:
                    checkpoint.save(run_dir, model, optimizer, scheduler, progress, summary,
                                    elapsed=summary.get("seconds_before_resume", 0.0) + time.perf_counter() - started)
                if stop:
                    summary["stopped_early"] = True
                    log.info("early stop at epoch %d (best epoch %d)", epoch, progress.tracker.best_epoch)
                    break
            if summary["status"] == "running":
                summary["status"] = "completed"
    except (KeyboardInterrupt, Interrupted) as exc:
        summary.update(status="interrupted", error=f"interrupted ({type(exc).__name__}: {exc})".strip())
        raise
    except Exception as exc:
        summary.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        with _sigterm_deferred():  # a SIGTERM now waits until summary.json is written
            bar.close()
            failure = results.close_run(cfg.results_dir, run_dir, summary, [
                writer.close if writer is not None else None,
                lambda: _finish(summary, model, data, autocast, progress, tr, started, run_dir, cfg.eval),
                (lambda: run_loggers.close(summary)) if run_loggers is not None else None,
            ])
            if failure is not None and sys.exc_info()[1] is None:  # else the error already in flight wins
                raise failure
    summary["run_dir"] = str(run_dir)  # for the caller only; not in summary.json (folders move)
    return summary


def _snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _finish(summary, model, data, autocast, progress: Progress, tr, started, run_dir: Path, ev) -> None:
    """Fill in final/best/test metrics and write summary.json atomically (also on failure).

    `model` holds the final weights. The test split is scored with the final weights
    (`test_final`) and with the weights trainer.select names (`test`, plus calibration).
    """
    keys = ("train_loss", "train_acc", "val_loss", "val_acc", "gap_loss", "gap_acc")
    rows, tracker = progress.rows, progress.tracker
    protocol = Protocol.from_trainer(tr)
    summary["protocol"] = protocol.describe()
    summary["epochs_completed"] = len(rows)
    summary.setdefault("stopped_early", False)
    summary["final"] = {k: rows[-1][k] for k in keys} if rows else None
    summary["best_epoch"] = tracker.best_epoch or None
    summary["best"] = {k: tracker.best_row[k] for k in keys} if tracker.best_row else None
    summary["test"] = summary["test_final"] = None
    if summary["status"] in ("completed", "diverged") and len(data.x_test):
        def score() -> dict:
            loss, acc = loss_and_correct(model, data.x_test, data.y_test, data.normalize, autocast, ev.mode).tolist()
            return {"loss": loss, "acc": acc}

        summary["test_final"] = {**score(), "epoch": len(rows)}
        if protocol.weights_to_score(tracker) == "selected":
            model.load_state_dict(tracker.selected_state)
            summary["test"] = {**score(), "weights": protocol.select, "epoch": tracker.best_epoch}
        else:  # select=final, or no epoch was ever finite (a run diverged at epoch 1): the last weights
            summary["test"] = {**summary["test_final"], "weights": "final"}
        try:  # "calibration" (deterministic) and, with eval.mc_samples > 0, "mc" plus mc_convergence.csv
            blocks, convergence = uncertainty.final_blocks(model, data, autocast, ev)
            summary.update(blocks)
            if convergence:
                results.write_rows(run_dir / "mc_convergence.csv", uncertainty.CONVERGENCE_COLUMNS, convergence)
        except OSError:
            raise  # the machine (disk full ...): the run fails, results.close_run records it
        except Exception as exc:  # summary.json must still be written
            log.exception("calibration / MC evaluation failed")
            summary["uncertainty_error"] = f"{type(exc).__name__}: {exc}"
    summary["seconds"] = summary.get("seconds_before_resume", 0.0) + time.perf_counter() - started
    summary["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    summary.setdefault("error", None)
    if summary["status"] == "completed" and tr.checkpoint:
        checkpoint.remove(run_dir)  # a finished run needs no checkpoint; its files say everything
    results.write_json(run_dir / "summary.json", summary)
