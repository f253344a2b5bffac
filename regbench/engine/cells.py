"""One cell of a stack: its run folder, rows, divergence, early stopping, best weights, the end.

This is the per-run bookkeeping, written once: a lone run is a stack of one cell and goes
through exactly these methods. The loop (engine/loop.py) hands each cell its numbers once
per epoch; everything a cell writes is its own (folder, metrics.csv, loggers, summary.json).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from regbench.core import files
from regbench.core.console import RUN_START
from regbench.engine import uncertainty
from regbench.engine.evaluate import loss_and_correct
from regbench.records import checkpoint, claims, folder, index, loggers, results
from regbench.regularizers.streams import Streams
from regbench.rules.config import config_hash
from regbench.rules.protocol import Protocol, Tracker

log = logging.getLogger("regbench")
start_log = logging.getLogger(RUN_START)  # a run's first line: left out of a sweep's terminal
SUMMARY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "gap_loss", "gap_acc")  # final / best blocks
FINITE_KEYS = ("batch_loss", "train_loss", "val_loss")  # a non-finite one of these: the cell diverged


@dataclass
class Progress:
    """Everything that changes from epoch to epoch besides the model and optimizer.

    Kept together so a checkpoint can save and restore it whole (resume gives the same
    numbers as an uninterrupted run on CPU).
    """

    streams: Streams  # the cell's random streams: data order, noise, augmentation (regularizers/streams.py)
    rows: list = field(default_factory=list)  # metrics.csv rows written so far
    tracker: Tracker = field(default_factory=Tracker)  # best epoch, selected weights, early stopping

    @property
    def epoch(self) -> int:
        return len(self.rows)


def start_run(cfg: DictConfig, device, data, model, command: str, overrides, **extra) -> tuple[Path, dict]:
    """Create a fresh run folder (config.yaml, index entry) and the summary it will end with."""
    cfg_hash = config_hash(cfg)
    run_dir = results.create_run_dir(cfg)
    try:
        results.save_config(run_dir, cfg)
        index.mark_started(cfg.results_dir, run_dir, cfg_hash)
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
class Cell:
    """One configuration to train: a lone run, or one job of a sweep inside a stack."""

    cfg: DictConfig  # the job's config without the hydra node (what the task function gets)
    command: str = ""  # `regbench run ...` that reruns it alone
    overrides: list[str] = field(default_factory=list)
    resume_dir: Path | None = None  # an interrupted folder with a checkpoint.pt to continue (stacks of one)
    stale: list[Path] = field(default_factory=list)  # earlier unfinished folders it supersedes (records/folder.py)
    summary: dict | None = None  # filled as it trains; has "run_dir" once it has finished
    checked: bool = False  # passed check_config already (the sweep's preflight, in this process)
    # set by the loop
    model: nn.Module | None = None  # the cell's own model: built, seeded and finally evaluated as a lone run's
    streams: Streams | None = None  # its random streams (regularizers/streams.py), made with its model
    augment: object = None  # its batched augmentation (None: no ops), drawing from streams.augment
    progress: Progress | None = None
    run_dir: Path | None = None
    writer: results.MetricsWriter | None = None
    logger: loggers.RunLoggers | None = None  # logger=tensorboard / mlflow (regbench/records/loggers.py)
    seconds: float = 0.0  # this cell's share of the stack's wall time
    stack_started: float = 0.0  # perf_counter when its stack began: summary `stack_seconds` counts from here
    mc_epoch: bool = False  # eval.mc_every_epoch columns (stacks of one: engine/plan.py)
    protocol: Protocol | None = None  # trainer.select / monitor / patience (regbench/rules/protocol.py)

    def resume_outcome(self, cfg_hash: str) -> dict | None:
        """The one resume decision (resume=true), for a lone run and for every cell of a stack.

        Returns the outcome of an earlier finished run of the same config to reuse (records/folder.py:
        finished and read in full; logged once to loggers chosen since, e.g. logger=mlflow added later),
        whose older unfinished folders are marked superseded by it now; or None to train: then an
        interrupted folder with a checkpoint becomes resume_dir (continued in place) and the other earlier
        folders stay in `stale`, to be marked superseded once this cell trained.
        """
        reused, self.stale = folder.earlier_outcome(self.cfg, cfg_hash)
        if reused is not None:
            loggers.backfill(self.cfg, reused)
            for run_dir in self.stale:
                folder.mark_superseded(run_dir, reused.get("run_id") or Path(reused["run_dir"]).name)
            self.stale = []
            return reused
        if (self.stale and self.cfg.trainer.checkpoint and checkpoint.exists(self.stale[-1])
                and folder.read(self.stale[-1]).damage is None):
            self.resume_dir = self.stale.pop()
        return None

    def supersede_stale(self) -> None:
        """Trained again: the earlier unfinished folders of this config point to the new one."""
        for run_dir in self.stale:
            folder.mark_superseded(run_dir, self.summary["run_id"])
        if self.stale:  # for the sweep's resume line (multirun.resume_line); not in summary.json
            self.summary["supersedes"] = [d.name for d in self.stale]

    @property
    def finished(self) -> bool:
        return self.summary is not None and "run_dir" in self.summary

    def start(self, device, data, stack_cells: int, stack_id: str, lone=None) -> None:
        """Open the run folder (or the interrupted one to resume) and everything written per epoch.

        stack_cells / stack_id: how the cell trains (summary.json): the number of cells in its stack
        (1: alone) and an id its stack's cells share."""
        cfg = self.cfg
        how = {"stack_cells": stack_cells, "stack_id": stack_id}
        self.protocol = Protocol.from_trainer(cfg.trainer)
        self.progress = Progress(streams=self.streams)
        if self.resume_dir is not None:
            self.run_dir = Path(self.resume_dir)
            self.summary = checkpoint.load(self.run_dir, lone.model, lone.optimizer, lone.scheduler, self.progress)
            results.truncate_metrics(self.run_dir / "metrics.csv", self.progress.epoch)  # rows newer than it
            self.summary.update(status="running", error=None, resumed_at_epoch=self.progress.epoch, **how)
            index.mark_started(cfg.results_dir, self.run_dir, self.summary["config_hash"])
            self.seconds = self.summary.get("seconds_before_resume", 0.0)
            start_log.info("resuming %s at epoch %d", self.run_dir, self.progress.epoch + 1)
        else:
            self.run_dir, self.summary = start_run(cfg, device, data, self.model, self.command, self.overrides,
                                                   **how)
            start_log.info("run %s: %s on %s, %d parameters", self.run_dir, cfg.model.name, device,
                     self.summary["parameters"])
        uncertainty.warn_ineffective(self.model, cfg.eval)
        self.mc_epoch = bool(cfg.eval.mc_every_epoch and cfg.eval.mc_samples > 0)  # extra columns when enabled
        columns = (results.METRIC_COLUMNS + (results.STACK_COLUMNS if self.summary["stack_cells"] > 1 else [])
                   + (uncertainty.EPOCH_COLUMNS if self.mc_epoch else []))
        self.writer = results.MetricsWriter(self.run_dir / "metrics.csv", columns)
        self.logger = loggers.start(cfg, self.run_dir, self.summary)  # logger=tensorboard / mlflow, beside the csv

    def end_epoch(self, epoch: int, numbers: list[float], lr: float, seconds: float, stack, m: int,
                  extra: dict | None = None) -> bool:
        """Write this epoch's row; divergence, best weights, checkpoint, early stopping. True: it stops here."""
        train_loss, train_acc, val_loss, val_acc, batch_loss, zero_frac = numbers
        row = {
            "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc,
            "gap_loss": val_loss - train_loss, "gap_acc": train_acc - val_acc,
            "lr": lr, "seconds": seconds, "batch_loss": batch_loss, "zero_frac": zero_frac, **(extra or {}),
        }
        self.writer.append(row)
        self.logger.log_epoch(row)
        p, s, tr = self.progress, self.summary, self.cfg.trainer
        if self.cfg.resume:  # still training it: its claim stays fresh for processes of other hosts
            claims.refresh(self.cfg.results_dir, claims.key(self.cfg, s["config_hash"]))
        p.rows.append(row)
        self.seconds += seconds
        if not all(math.isfinite(row[k]) for k in FINITE_KEYS):
            s.update(status="diverged", error=f"non-finite loss at epoch {epoch}")
            log.warning("run %s diverged at epoch %d (non-finite loss)", self.run_dir.name, epoch)
            return True
        # the evaluation protocol: best epoch (and its weights if trainer.select keeps them),
        # early stopping on trainer.monitor
        stop = p.tracker.update(self.protocol, epoch, row, lambda: stack.cell_state(m))
        if tr.checkpoint:  # stacks of one (engine/plan.py)
            checkpoint.save(self.run_dir, stack.model, stack.optimizer, stack.scheduler, p, s, elapsed=self.seconds)
        if stop:
            s["stopped_early"] = True
            log.info("run %s: early stop at epoch %d (best epoch %d)", self.run_dir.name, epoch, p.tracker.best_epoch)
            return True
        return False

    def finish(self, data, autocast, status: str | None = None, error: str | None = None) -> None:
        """Close the files; final/best/test metrics, calibration and MC; summary.json (also on failure).

        self.model must hold the cell's final weights (the loop loads them from the stack). A failed
        write (disk full, read-only) makes the cell `failed` (results.close_run) and is raised here
        unless another error is already on its way.
        """
        s = self.summary
        t0 = time.perf_counter()
        if status is not None:
            s.update(status=status, error=error)
        elif s["status"] == "running":
            s["status"] = "completed"
        failure = results.close_run(self.cfg.results_dir, self.run_dir, s, [
            self.writer.close if self.writer is not None else None,
            lambda: self._summarise(data, autocast, t0),
            (lambda: self.logger.close(s)) if self.logger is not None else None,
        ])
        s["run_dir"] = str(self.run_dir)  # for the caller only; not in summary.json (folders move)
        if failure is not None and sys.exc_info()[1] is None:  # else the error already in flight wins
            raise failure

    def _summarise(self, data, autocast, t0: float) -> None:
        s, p, tr = self.summary, self.progress, self.cfg.trainer
        rows = p.rows
        s["epochs_completed"] = len(rows)
        s.setdefault("stopped_early", False)
        s["final"] = {k: rows[-1][k] for k in SUMMARY_KEYS} if rows else None
        s["protocol"] = self.protocol.describe()
        s["best_epoch"] = p.tracker.best_epoch or None
        s["best"] = {k: p.tracker.best_row[k] for k in SUMMARY_KEYS} if p.tracker.best_row else None
        s["test"] = s["test_final"] = None
        if s["status"] in ("completed", "diverged") and len(data.x_test):
            self._test(data, autocast)
        s["seconds"] = self.seconds + time.perf_counter() - t0  # epochs (its share of them) + this evaluation
        if s.get("stack_cells", 1) > 1:  # what the user waited for this cell: the stack's time until it was done
            s["stack_seconds"] = time.perf_counter() - self.stack_started
        s["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        s.setdefault("error", None)
        if s["status"] == "completed" and tr.checkpoint:
            checkpoint.remove(self.run_dir)  # a finished run needs no checkpoint; its files say everything
        files.write_json(self.run_dir / "summary.json", s)

    def _test(self, data, autocast) -> None:
        """Score the test split with the final weights (`test_final`) and with the weights trainer.select
        names (`test`, plus calibration / MC). self.model holds the final weights on entry."""
        s, p, ev, model = self.summary, self.progress, self.cfg.eval, self.model

        def score() -> dict:
            loss, acc = loss_and_correct(model, data.x_test, data.y_test, data.normalize, autocast, ev.mode,
                                         self.streams.evaluation).tolist()
            return {"loss": loss, "acc": acc}

        s["test_final"] = {**score(), "epoch": len(p.rows)}
        if self.protocol.weights_to_score(p.tracker) == "selected":
            model.load_state_dict(p.tracker.selected_state)
            s["test"] = {**score(), "weights": self.protocol.select, "epoch": p.tracker.best_epoch}
        else:  # select=final, or no epoch was ever finite (a run diverged at epoch 1): the last weights
            s["test"] = {**s["test_final"], "weights": "final"}
        try:  # "calibration" (deterministic) and, with eval.mc_samples > 0, "mc" plus mc_convergence.csv
            blocks, convergence = uncertainty.final_blocks(model, data, autocast, ev, self.streams.evaluation)
            s.update(blocks)
            if convergence:
                results.write_rows(self.run_dir / "mc_convergence.csv", uncertainty.CONVERGENCE_COLUMNS, convergence)
        except OSError:
            raise  # the machine (disk full ...): the run fails, results.close_run records it
        except Exception as exc:  # the run fails, with the reason; summary.json is still written
            reason = (str(exc).strip().splitlines() or [""])[0]
            s.update(status="failed", error=f"evaluation after training failed ({type(exc).__name__}: {reason})")
            log.error("%s: %s", self.run_dir.name, s["error"])
