"""Train one bucket of cells as one stacked model; every cell writes its own run folder.

The loop is train.run's, vectorised over the cell dim M. What differs, and why:
- data order: each cell keeps its own randperm generator (seeded like train.run), so a
  step gathers the cells' batches as (M, B, ...) from the device tensors;
- loss: the cells' mean batch losses are summed, so each cell's gradient is its own;
- one host sync per epoch for the whole bucket (all cells' numbers in one .tolist());
- a cell that diverges or stops early is finished at once (test evaluation, summary.json)
  and removed from the stack, so it costs nothing afterwards; the others go on;
- time: an epoch's wall time is shared equally by the cells active in it (`seconds` column);
  summary `seconds` is the sum of the cell's shares (plus its own test evaluation).
"""

from __future__ import annotations

import logging
import math
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from tqdm.auto import tqdm

from regbench import loggers, results
from regbench.models import build_model
from regbench.optim import build_optimizer
from regbench.protocol import Protocol
from regbench.train import (
    Interrupted,
    Progress,
    _autocast,
    _finish,
    _sigterm_raises,
    check_config,
    make_deterministic,
    start_run,
)
from regbench.train import steps_per_epoch as train_steps_per_epoch
from regbench.vectorized.noise import Noise, global_rng_copy
from regbench.vectorized.optim import StackedOptimizer
from regbench.vectorized.stacked import StackedMLP

log = logging.getLogger("regbench")


@dataclass
class Cell:
    """One job of the sweep inside a bucket."""

    cfg: DictConfig  # the job's config without the hydra node (what the task function would get)
    command: str  # `regbench run ...` that reruns it alone
    overrides: list[str]
    stale: list[Path] = field(default_factory=list)  # interrupted/failed earlier folders it supersedes
    summary: dict | None = None  # filled when the cell finishes (with "run_dir")
    # training state
    model: nn.Module | None = None
    progress: Progress | None = None
    writer: results.MetricsWriter | None = None
    loggers: loggers.RunLoggers | None = None  # logger=tensorboard / mlflow, as in train.run
    run_dir: Path | None = None
    seconds: float = 0.0  # this cell's share of the bucket's wall time


def lr_factor(cfg: DictConfig, steps_per_epoch: int):
    """The per-step schedule factor of regbench.optim (taken from its LambdaLR, not re-derived)."""
    _, scheduler = build_optimizer(cfg.optim, nn.Linear(1, 1), cfg.trainer.epochs, steps_per_epoch)
    return scheduler.lr_lambdas[0]


def train_bucket(cells: list[Cell], exact_masks: bool = False) -> None:
    """Train the cells (one bucket: same structure) together; fills cell.summary for each."""
    # Cells sharing (lr, wd, momentum) next to each other: the optimizer updates each such run in one call.
    cells = sorted(cells, key=lambda c: (c.cfg.optim.lr, c.cfg.optim.weight_decay, c.cfg.optim.momentum))
    cfg0, tr = cells[0].cfg, cells[0].cfg.trainer
    device, data = check_config(cfg0)
    for c in cells[1:]:
        check_config(c.cfg, data)  # same dataset config: the splits are shared
    if tr.threads is not None:
        torch.set_num_threads(tr.threads)
    if tr.deterministic:
        make_deterministic()
    autocast = _autocast(device, tr.amp)
    exact_masks = exact_masks and device.type == "cpu"  # CUDA dropout draws from its own (fused) stream

    # ---- models: each cell's ordinary model, built exactly as train.prepare does, then stacked
    generators = []
    for c in cells:
        torch.manual_seed(c.cfg.seed)
        c.model = build_model(c.cfg, data.input_shape, data.num_classes)
        generators.append(global_rng_copy())  # where the sequential run's dropout masks would come from
        c.model.to(device)
    net = StackedMLP([c.model for c in cells], device)
    bucket_seed = zlib.crc32(",".join(str(c.cfg.seed) for c in cells).encode())
    noise = Noise(net, bucket_seed, device, generators if exact_masks else None)
    steps_per_epoch = train_steps_per_epoch(len(data.x_train), tr.batch_size)
    factor = lr_factor(cfg0, steps_per_epoch)
    opt = StackedOptimizer(net.params, net.decay, [c.cfg.optim for c in cells], device)
    l1 = torch.tensor([float(c.cfg.reg.l1) for c in cells], device=device)
    max_norm = torch.tensor([math.inf if c.cfg.reg.max_norm is None else float(c.cfg.reg.max_norm) for c in cells],
                            device=device)
    use_l1, use_max_norm = bool((l1 > 0).any()), bool(torch.isfinite(max_norm).any())

    # ---- data: normalised and flattened once (the same elementwise op train.run applies per batch)
    x_train, y_train = data.normalize(data.x_train).flatten(1), data.y_train  # (N, D), (N,)
    n_sub = min(tr.train_eval_size, len(data.x_train))
    sub = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(cfg0.dataset.split_seed))[:n_sub]
    x_sub, y_sub = x_train[sub.to(device)], y_train[sub.to(device)]
    x_val = data.normalize(data.x_val).flatten(1)

    log.info("vectorized: %d cells of %s %s on %s as one stacked model (%d parameters each)", len(cells),
             cfg0.model.name, list(cfg0.model.hidden), device, sum(p.numel() for p in cells[0].model.parameters()))

    active = list(cells)
    step = 0
    bar = tqdm(range(1, tr.epochs + 1), desc=f"vectorized x{len(cells)}", leave=False, file=sys.stderr,
               disable=None if tr.progress else True)
    try:
        with _sigterm_raises():
            for c in cells:
                _start(c, device, data, len(cells), exact_masks)
            for epoch in bar:
                t0 = time.perf_counter()
                # ---- train one epoch: each cell's own permutation; a step takes (M, B) indices
                perms = torch.stack([torch.randperm(len(x_train), generator=c.progress.order) for c in active])
                perms = perms.to(device)  # (M, N)
                batch_loss = torch.zeros(len(active), device=device)
                n_steps = 0
                for i in range(0, perms.shape[1], tr.batch_size):
                    idx = perms[:, i : i + tr.batch_size]  # (M, B)
                    if idx.shape[1] < 2 and cfg0.model.batchnorm:
                        continue  # BatchNorm cannot normalise a batch of one
                    xb, yb = x_train[idx], y_train[idx]  # (M, B, D), (M, B)
                    with autocast():
                        logits = net.forward(xb, train=True, masks=noise)  # (M, B, K)
                    net.count_bn_step()
                    k = logits.shape[-1]
                    loss = F.cross_entropy(logits.float().reshape(-1, k), yb.reshape(-1), reduction="none",
                                           label_smoothing=cfg0.reg.label_smoothing).view(len(active), -1).mean(1)
                    objective = loss.sum() + (l1 * net.l1()).sum() if use_l1 else loss.sum()
                    net.zero_grad()
                    objective.backward()
                    opt.step(net.params, factor(step))
                    step += 1
                    if use_max_norm:
                        net.max_norm_(max_norm)
                    batch_loss += loss.detach()
                    n_steps += 1

                # ---- evaluate every cell at once; one host sync for all numbers of all cells
                numbers = torch.cat([net.evaluate(x_sub, y_sub, autocast), net.evaluate(x_val, data.y_val, autocast),
                                     (batch_loss / max(n_steps, 1)).double()[:, None],
                                     net.zero_fraction()[:, None]], 1).tolist()  # (M, 6)
                share = (time.perf_counter() - t0) / len(active)
                lrs = opt.lr(factor(step)).tolist()
                leaving = [m for m, (c, nums, lr) in enumerate(zip(active, numbers, lrs, strict=True))
                           if _epoch_end(c, epoch, nums, lr, share, net, m, tr)]
                if epoch == tr.epochs:
                    leaving = list(range(len(active)))
                bar.set_postfix(cells=len(active) - len(leaving))
                if leaving:
                    for m in leaving:
                        _finish_cell(active[m], net, m, data, autocast, tr)
                    keep = [m for m in range(len(active)) if m not in leaving]
                    if not keep:
                        break
                    keep_t = torch.tensor(keep, device=device)
                    net.select(keep_t)
                    opt.select(keep_t)
                    noise.select(keep)
                    l1, max_norm = l1[keep_t], max_norm[keep_t]
                    active = [active[m] for m in keep]
    except (KeyboardInterrupt, Interrupted) as exc:
        _abort(active, data, autocast, tr, "interrupted", f"interrupted ({type(exc).__name__}: {exc})".strip())
        raise
    except Exception as exc:
        _abort(active, data, autocast, tr, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        bar.close()


def _start(c: Cell, device, data, bucket_cells: int, exact_masks: bool) -> None:
    """Create the run folder and the summary exactly as train.run does for a fresh run."""
    c.progress = Progress(order=torch.Generator().manual_seed(c.cfg.seed))
    vectorized = {"bucket_cells": bucket_cells, "dropout_masks": "per_cell" if exact_masks else "bucket"}
    c.run_dir, c.summary = start_run(c.cfg, device, data, c.model, c.command, c.overrides, vectorized=vectorized)
    c.writer = results.MetricsWriter(c.run_dir / "metrics.csv", results.METRIC_COLUMNS)
    c.loggers = loggers.start(c.cfg, c.run_dir, c.summary)


def _epoch_end(c: Cell, epoch: int, nums: list, lr: float, share: float, net, m: int, tr) -> bool:
    """Write cell c's row; divergence and early stopping as in train.run. True: the cell stops here."""
    train_loss, train_acc, val_loss, val_acc, mean_batch, zero_frac = nums
    row = {
        "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc,
        "gap_loss": val_loss - train_loss, "gap_acc": train_acc - val_acc,
        "lr": lr, "seconds": share, "batch_loss": mean_batch, "zero_frac": zero_frac,
    }
    c.writer.append(row)
    c.loggers.log_epoch(row)
    c.progress.rows.append(row)
    c.seconds += share
    p, s = c.progress, c.summary
    if not all(math.isfinite(row[k]) for k in ("batch_loss", "train_loss", "val_loss")):
        s.update(status="diverged", error=f"non-finite loss at epoch {epoch}")
        log.warning("run %s diverged at epoch %d (non-finite loss)", c.run_dir.name, epoch)
        return True
    if p.tracker.update(Protocol.from_trainer(tr), epoch, row, lambda: net.cell_state(m)):
        s["stopped_early"] = True
        return True
    return False


def _finish_cell(c: Cell, net: StackedMLP, m: int, data, autocast, tr) -> None:
    """The cell's final weights go back into its own model; train._finish does the rest (test, summary.json)."""
    if c.summary["status"] == "running":
        c.summary["status"] = "completed"
    c.model.load_state_dict(net.cell_state(m))
    c.writer.close()
    # _finish measures seconds as now - started: start the clock at the cell's share of the bucket time
    _finish(c.summary, c.model, data, autocast, c.progress, tr, time.perf_counter() - c.seconds, c.run_dir,
                c.cfg.eval)
    c.loggers.close(c.summary)
    results.mark_finished(c.cfg.results_dir, c.run_dir, c.summary)
    c.summary["run_dir"] = str(c.run_dir)


def _abort(active: list[Cell], data, autocast, tr, status: str, error: str) -> None:
    """An exception or a signal mid-bucket: every unfinished cell gets `status` and a summary.json."""
    for c in active:
        if c.summary is None or c.summary.get("run_dir") or c.writer is None:
            continue  # not started (no folder yet) or already finished
        c.summary.update(status=status, error=error)
        try:
            c.writer.close()
            _finish(c.summary, c.model, data, autocast, c.progress, tr, time.perf_counter() - c.seconds, c.run_dir,
                c.cfg.eval)
        finally:
            c.loggers.close(c.summary)
            results.mark_finished(c.cfg.results_dir, c.run_dir, c.summary)
            c.summary["run_dir"] = str(c.run_dir)
