"""The one training loop: a stack of M >= 1 cells, top to bottom. A lone run is M = 1.

train(): set-up (every cell's streams and model, built and seeded as a lone run's), the stacks
(engine/plan.py decides which cells share one; each stack of several takes a trial step), then
each stack: every cell starts, the epochs (each cell its own data order, one stacked step for
all, one host sync per epoch for every number of every cell), the end of each cell
(engine/cells.py). A cell that diverges or stops early finishes at once and leaves the stack;
the others go on.

Performance shape (docs/architecture.md): the splits live on the device as tensors, a batch is a
slice of a randperm index, metrics accumulate on the device.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import torch

from regbench.core import console
from regbench.core.errors import Interrupted, machine_failure
from regbench.data.augment import build_augment
from regbench.engine import uncertainty
from regbench.engine.cells import Cell
from regbench.engine.plan import groups
from regbench.engine.setup import (
    autocast_for,
    check_config,
    make_deterministic,
    set_threads,
    sigterm_deferred,
    sigterm_raises,
    steps_per_epoch,
)
from regbench.engine.stack import Lone, Stacked
from regbench.models import build_model
from regbench.regularizers.mixing import soft_targets
from regbench.regularizers.streams import Streams, derive

log = logging.getLogger("regbench")
PROBE_BATCH = 2  # examples per cell of the stacked trial step before training (2: BatchNorm needs > 1)


def train(cells: list[Cell]) -> None:
    """Train cells of one dataset; fills each cell.summary. Which of them share a stack is decided first
    (engine/plan.py groups them, then each stack of several takes a trial step), then each stack trains
    top to bottom.

    Raises what a lone run raises (Interrupted on SIGTERM/Ctrl-C, the error of a failed step)
    after every unfinished cell has written `interrupted` / `failed`.
    """
    device, data = _prepare(cells)
    for group, stack in _stacks(cells, device, data):
        _train_stack(group, stack, device, data)


def _prepare(cells: list[Cell]):
    """Check every cell's config, then give each its random streams, augmentation and model (built and
    seeded as a lone run's). Returns (device, data): the splits are shared, the cells have one dataset config."""
    device, data = check_config(cells[0].cfg)
    for c in cells[1:]:
        if not c.checked:  # a sweep's preflight has checked its cells (~5 ms each, building the model)
            check_config(c.cfg, data)
    if cells[0].cfg.trainer.deterministic:
        make_deterministic()
    for c in cells:  # every draw of a cell comes from its own streams (regularizers/streams.py)
        c.streams = Streams.of(c.cfg.seed, device)
        c.augment = build_augment(c.cfg.augment, data.kind, data.num_classes, c.streams.augment)
        torch.manual_seed(c.cfg.seed)  # model init: the global generator, seeded as any PyTorch script seeds it
        c.model = build_model(c.cfg, data.input_shape, data.num_classes).to(device)
    return device, data


def _stacks(cells: list[Cell], device, data):
    """(cells, stack) to train, one after another: plan.groups' stacks, each of several cells after a trial
    step; if that fails (a module that cannot run under vmap), its cells train alone, said once."""
    n_batches = steps_per_epoch(len(data.x_train), cells[0].cfg.trainer.batch_size)
    for group in groups(cells):
        cfg0 = group[0].cfg
        set_threads(cfg0, device, group[0].model, data.input_shape, len(group))
        if len(group) > 1:
            stack = Stacked([c.model for c in group], [c.cfg for c in group], n_batches, device,
                            [c.streams.noise for c in group])
            probe = data.x_train[:PROBE_BATCH]
            failure = stack.probe(data.normalize(probe).expand(len(group), *probe.shape).contiguous(),
                                  data.y_train[:PROBE_BATCH].expand(len(group), -1))
            if failure is None:
                log.info("stack of %d cells: %s on %s, %d parameters each", len(group), cfg0.model.name, device,
                         sum(p.numel() for p in group[0].model.parameters()))
                yield group, stack
                continue
            log.info("%d cells of dropout=%s train alone (their model does not run stacked: %s)", len(group),
                     cfg0.dropout.name, failure)
            set_threads(cfg0, device, group[0].model, data.input_shape, 1)
        for c in group:  # a stack of one: the model itself
            if c.cfg.trainer.channels_last:
                c.model = c.model.to(memory_format=torch.channels_last)
            yield [c], Lone(c.model, c.cfg, n_batches, c.streams)


@dataclass(frozen=True)
class Epochs:
    """What every epoch of one stack reads: the data, the device, the schedule and the train subset."""

    data: object  # the splits (data/base.py), on the device
    device: torch.device
    autocast: object  # a context factory: bf16 autocast on CUDA with trainer.amp, else a no-op
    n_batches: int  # steps per epoch
    epochs: int
    x_sub: torch.Tensor  # the fixed training subset measured in eval mode each epoch (the train side of the gap)
    y_sub: torch.Tensor
    augmenting: bool  # some cell has augmentation ops

    @classmethod
    def of(cls, cells: list[Cell], device, data) -> Epochs:
        tr = cells[0].cfg.trainer
        n_sub = min(tr.train_eval_size, len(data.x_train))
        order = torch.Generator().manual_seed(cells[0].cfg.dataset.split_seed)  # the same subset for every cell
        sub = torch.randperm(len(data.x_train), generator=order)[:n_sub].to(device)
        return cls(data, device, autocast_for(device, tr.amp), steps_per_epoch(len(data.x_train), tr.batch_size),
                   tr.epochs, data.x_train[sub], data.y_train[sub], any(c.augment is not None for c in cells))


def _train_stack(cells: list[Cell], stack, device, data) -> None:
    """Train one stack (Lone or Stacked) to its end: every cell starts, then epochs until each has left."""
    run = Epochs.of(cells, device, data)
    tr = cells[0].cfg.trainer
    active = list(cells)  # the cells still training, in stack order
    bar = None
    try:
        with sigterm_raises():
            stack_id, started = uuid.uuid4().hex[:12], time.perf_counter()  # shared by this stack's cells
            if len(cells) == 1:  # what a module draws from torch's global generator (it trains alone): the cell's
                torch.manual_seed(derive(cells[0].cfg.seed, "global"))  # (a checkpoint's state replaces it)
            for c in cells:
                c.stack_started = started
                c.start(device, data, len(cells), stack_id, lone=stack if len(cells) == 1 else None)
            first = cells[0].progress.epoch + 1  # > 1 only when a lone run resumes from its checkpoint
            desc = cells[0].run_dir.name.split("_", 1)[-1][-40:] if len(cells) == 1 else f"stack x{len(cells)}"
            bar = console.run_bar(tr.epochs, first - 1, desc, tr.progress)
            for epoch in bar:
                t0 = time.perf_counter()
                batch_loss, n_steps = _train_epoch(stack, active, run, epoch)
                numbers = _evaluate(stack, run, cells[0].cfg.eval.mode, batch_loss, n_steps)
                leaving = _end_epoch(active, stack, run, epoch, numbers, time.perf_counter() - t0, len(cells))
                bar.set_postfix_str(console.epoch_postfix(numbers, len(active) - len(leaving)))
                active = _leave(active, leaving, stack, run, len(cells))
                if not active:
                    break
            for m, c in enumerate(active):  # resumed at its last epoch: nothing left to train
                _finish(c, stack, m, data, run.autocast)
            active = []
    except (KeyboardInterrupt, Interrupted) as exc:
        _abort(active, stack, data, run.autocast, "interrupted", f"interrupted ({type(exc).__name__}: {exc})".strip())
        raise
    except Exception as exc:
        _abort(active, stack, data, run.autocast, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if bar is not None:
            bar.close()


def _train_epoch(stack, active: list[Cell], run: Epochs, epoch: int) -> tuple[torch.Tensor, int]:
    """One epoch of steps, each cell on its own data order; a step takes (M, B) indices.
    Returns the summed (M,) batch losses on the device and the number of steps."""
    data, batch_size = run.data, active[0].cfg.trainer.batch_size
    batchnorm, n_train = active[0].cfg.model.batchnorm, len(data.x_train)
    total_steps = run.epochs * run.n_batches
    stack.train()
    perms = torch.stack([torch.randperm(n_train, generator=c.streams.order) for c in active]).to(run.device)  # (M, N)
    batch_loss = torch.zeros(len(active), device=run.device)
    n_steps = 0
    for b, i in enumerate(range(0, n_train, batch_size)):
        for m in stack.scheduled:  # fraction of training done after this step: full rate at the end
            m.set_progress(((epoch - 1) * run.n_batches + b + 1) / total_steps)
        idx = perms[:, i : i + batch_size]  # (M, B)
        if idx.shape[1] < 2 and batchnorm:
            continue  # BatchNorm cannot normalise a batch of one
        xb, yb = data.normalize(data.x_train[idx]), data.y_train[idx]  # (M, B, *input_shape), (M, B)
        if run.augmenting:
            xb, yb = _augment(active, xb, yb, data.num_classes)  # yb may become (M, B, K) soft targets
        with run.autocast():
            logits = stack.forward(xb)  # (M, B, K)
        losses = stack.losses(logits, yb)  # (M,)
        stack.zero_grad()
        stack.objective(losses).backward()
        stack.step()
        batch_loss += losses.detach()
        n_steps += 1
    return batch_loss, n_steps


def _evaluate(stack, run: Epochs, mode: str, batch_loss: torch.Tensor, n_steps: int) -> list[list[float]]:
    """Train subset and validation, every cell at once; one host sync for all numbers -> (M, 6) rows of
    train loss/acc, val loss/acc, mean batch loss, zero fraction. mode: eval.mode (eval unless measuring
    the mistake, which trains as a stack of one: engine/plan.py)."""
    data = run.data
    return torch.cat([stack.evaluate(run.x_sub, run.y_sub, data.normalize, run.autocast, mode),
                      stack.evaluate(data.x_val, data.y_val, data.normalize, run.autocast, mode),
                      (batch_loss / max(n_steps, 1)).double()[:, None],
                      stack.zero_fraction().double()[:, None]], 1).tolist()


def _end_epoch(active: list[Cell], stack, run: Epochs, epoch: int, numbers, wall: float,
               stack_cells: int) -> list[int]:
    """Each cell writes its row (and checkpoint); returns the positions of the cells that leave the stack
    (diverged, stopped early, at their last epoch, or failed in their own files)."""
    share = wall / len(active)  # the epoch's wall time, shared by its cells (a lone run: all of it)
    lrs = stack.lrs()
    leaving = []
    with sigterm_deferred():  # a row and its checkpoint are written together (resume stays exact)
        for m, c in enumerate(active):
            extra = {"stack_seconds": wall} if stack_cells > 1 else {}
            if c.mc_epoch:  # MC dropout on validation (stacks of one; its draws: the cell's evaluation stream)
                extra |= uncertainty.epoch_columns(c.model, run.data.x_val, run.data.y_val, run.data.normalize,
                                                   run.autocast, c.cfg.eval, c.streams.evaluation)
            try:
                if c.end_epoch(epoch, numbers[m], lrs[m], share, stack, m, extra) or epoch == run.epochs:
                    leaving.append(m)
            except Exception as exc:
                if not _only_this_cell(c, exc, stack_cells):
                    raise
                leaving.append(m)
    return leaving


def _leave(active: list[Cell], leaving: list[int], stack, run: Epochs, stack_cells: int) -> list[Cell]:
    """The leaving cells finish (their end of run); the stack keeps the others. Returns those."""
    if not leaving:
        return active
    for m in leaving:
        try:
            _finish(active[m], stack, m, run.data, run.autocast)
        except Exception as exc:
            if not _only_this_cell(active[m], exc, stack_cells):
                raise
            if not active[m].finished:  # failed before its files were closed: close them now
                active[m].finish(run.data, run.autocast, status="failed", error=active[m].summary["error"])
    keep = [m for m in range(len(active)) if m not in leaving]
    if keep:
        stack.select(keep)
    return [active[m] for m in keep]


def _augment(active: list[Cell], xb, yb, num_classes: int):
    """Each cell's own augmentation on its own batch (per-sample randomness; mixup/cutmix pair
    examples within the cell). (M, B, ...) -> (M, B, ...), labels (M, B) or (M, B, K)."""
    outs = [(xb[m], yb[m]) if c.augment is None else c.augment(xb[m], yb[m]) for m, c in enumerate(active)]
    xs, ys = zip(*outs, strict=True)
    if any(y.dim() == 2 for y in ys):  # some cell mixes: every cell's targets as (B, K) rows
        ys = [soft_targets(y, num_classes, xb.dtype) for y in ys]
    return torch.stack(xs), torch.stack(ys)


def _finish(c: Cell, stack, m: int, data, autocast) -> None:
    """The cell's final weights go back into its own model, then its end of run (SIGTERM waits)."""
    with sigterm_deferred():
        stack.load_cell(m, c.model)
        c.finish(data, autocast)


def _only_this_cell(c: Cell, exc: Exception, stack_cells: int) -> bool:
    """Does this error end only cell c (it becomes `failed`, the rest of its stack goes on)? Yes for an error
    in the cell's own files or end of run (e.g. its summary.json path taken by a folder) in a stack of
    several; no for a lone run and for a machine failure (a full disk: every other cell would fail alike)."""
    if stack_cells == 1 or machine_failure(exc) is not None:
        return False
    log.error("run %s failed (%s: %s); the other cells of its stack go on", c.run_dir.name, type(exc).__name__, exc)
    c.summary.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    return True


def _abort(active: list[Cell], stack, data, autocast, status: str, error: str) -> None:
    """An exception or a signal mid-stack: every started, unfinished cell writes `status` and its summary."""
    with sigterm_deferred():
        for m, c in enumerate(active):
            if c.summary is None or c.finished:
                continue  # not started (no folder yet) or already finished
            try:
                stack.load_cell(m, c.model)
            except Exception:  # noqa: BLE001 - the weights are only needed for a test evaluation it will not run
                log.debug("could not load cell %d's weights", m)
            c.finish(data, autocast, status=status, error=error)
