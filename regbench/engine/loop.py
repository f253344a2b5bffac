"""The one training loop: a stack of M >= 1 cells, top to bottom. A lone run is M = 1.

Set-up (every cell's model built and seeded as a lone run's), the epochs (each cell its own
data order, one stacked step for all, one host sync per epoch for every number of every
cell), the end of each cell (engine/cells.py). A cell that diverges or stops early finishes
at once and leaves the stack; the others go on.

Performance shape (docs/architecture.md): the splits live on the device as tensors, a batch is a
slice of a randperm index, metrics accumulate on the device.
"""

from __future__ import annotations

import logging
import time
import uuid

import torch

from regbench.core import console
from regbench.core.errors import Interrupted, machine_failure
from regbench.data.augment import build_augment
from regbench.engine import uncertainty
from regbench.engine.cells import Cell
from regbench.engine.plan import alone_reason
from regbench.engine.setup import (
    autocast_for,
    check_config,
    make_deterministic,
    set_threads,
    sigterm_deferred,
    sigterm_raises,
    steps_per_epoch,
)
from regbench.engine.stack import Lone, Stacked, signature
from regbench.models import build_model
from regbench.regularizers.mixing import soft_targets
from regbench.regularizers.streams import Streams

log = logging.getLogger("regbench")
PROBE_BATCH = 2  # examples per cell of the stacked trial step before training (2: BatchNorm needs > 1)


def train(cells: list[Cell]) -> None:
    """Train cells of one structure (engine/plan.py groups them) as one stack; fills each cell.summary.

    Raises what a lone run raises (Interrupted on SIGTERM/Ctrl-C, the error of a failed step)
    after every unfinished cell has written `interrupted` / `failed`.
    """
    alone = [c for c in cells if len(cells) > 1 and alone_reason(c.cfg)]
    if alone:  # what cannot share a stack trains as a stack of one (the launcher groups so already)
        for c in alone:
            log.info("%s: trains alone (%s)", *alone_reason(c.cfg))
            train([c])
        if len(alone) < len(cells):
            train([c for c in cells if c not in alone])
        return
    if len(cells) > 1:  # cells sharing (lr, wd, momentum) side by side: the optimizer updates them in one call
        cells.sort(key=lambda c: (c.cfg.optim.lr, c.cfg.optim.weight_decay, c.cfg.optim.momentum))
    cfg0, tr = cells[0].cfg, cells[0].cfg.trainer
    device, data = check_config(cfg0)
    for c in cells[1:]:
        if not c.checked:  # a sweep's preflight has checked its cells (~5 ms each, building the model)
            check_config(c.cfg, data)  # same dataset config: the splits are shared
    if tr.deterministic:
        make_deterministic()
    n_batches = steps_per_epoch(len(data.x_train), tr.batch_size)
    for c in cells:  # every draw of a cell comes from its own streams (regularizers/streams.py)
        c.streams = Streams.of(c.cfg.seed, device)
        c.augment = build_augment(c.cfg.augment, data.kind, data.num_classes, c.streams.augment)
        torch.manual_seed(c.cfg.seed)  # model init: the global generator, seeded as any PyTorch script seeds it
        c.model = build_model(c.cfg, data.input_shape, data.num_classes).to(device)
    groups = _by_structure(cells)
    if len(groups) > 1:  # e.g. DropConnect wraps only the layers whose rate is > 0: parameter names differ
        log.info("%d cells have %d different model structures: trained as %d stacks", len(cells), len(groups),
                 len(groups))
        for group in groups:
            train(group)
        return
    set_threads(cfg0, device, cells[0].model, data.input_shape, len(cells))
    if len(cells) == 1:
        if tr.channels_last:
            cells[0].model = cells[0].model.to(memory_format=torch.channels_last)
        stack = Lone(cells[0].model, cfg0, n_batches, cells[0].streams)
    else:
        stack = Stacked([c.model for c in cells], [c.cfg for c in cells], n_batches, device,
                        [c.streams.noise for c in cells])
        probe = data.x_train[:PROBE_BATCH]
        failure = stack.probe(data.normalize(probe).expand(len(cells), *probe.shape).contiguous(),
                              data.y_train[:PROBE_BATCH].expand(len(cells), -1))
        if failure is not None:
            log.info("%d cells of dropout=%s train alone (their model does not run stacked: %s)", len(cells),
                     cfg0.dropout.name, failure)
            for c in cells:
                train([c])
            return
        log.info("stack of %d cells: %s on %s, %d parameters each", len(cells), cfg0.model.name, device,
                 sum(p.numel() for p in cells[0].model.parameters()))
    autocast = autocast_for(device, tr.amp)
    augmenting = any(c.augment is not None for c in cells)

    # A fixed training subset, measured in eval mode each epoch, gives the train side of the gap.
    n_sub = min(tr.train_eval_size, len(data.x_train))
    sub = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(cfg0.dataset.split_seed))[:n_sub]
    x_sub, y_sub = data.x_train[sub.to(device)], data.y_train[sub.to(device)]
    total_steps = tr.epochs * n_batches
    n_train, batch_size, batchnorm = len(data.x_train), tr.batch_size, cfg0.model.batchnorm  # read once, used per step

    active = list(cells)  # the cells still training, in stack order
    bar = None
    try:
        with sigterm_raises():
            stack_id, started = uuid.uuid4().hex[:12], time.perf_counter()  # shared by this stack's cells
            for c in cells:
                c.stack_started = started
                c.start(device, data, len(cells), stack_id, lone=stack if len(cells) == 1 else None)
            first = cells[0].progress.epoch + 1  # > 1 only when a lone run resumes from its checkpoint
            desc = cells[0].run_dir.name.split("_", 1)[-1][-40:] if len(cells) == 1 else f"stack x{len(cells)}"
            bar = console.run_bar(tr.epochs, first - 1, desc, tr.progress)
            for epoch in bar:
                t0 = time.perf_counter()
                # ---- train one epoch: each cell's own permutation; a step takes (M, B) indices
                stack.train()
                perms = torch.stack([torch.randperm(n_train, generator=c.streams.order) for c in active])
                perms = perms.to(device)  # (M, N)
                batch_loss = torch.zeros(len(active), device=device)
                n_steps = 0
                for b, i in enumerate(range(0, n_train, batch_size)):
                    for m in stack.scheduled:  # fraction of training done after this step: full rate at the end
                        m.set_progress(((epoch - 1) * n_batches + b + 1) / total_steps)
                    idx = perms[:, i : i + batch_size]  # (M, B)
                    if idx.shape[1] < 2 and batchnorm:
                        continue  # BatchNorm cannot normalise a batch of one
                    xb, yb = data.normalize(data.x_train[idx]), data.y_train[idx]  # (M, B, *input_shape), (M, B)
                    if augmenting:
                        xb, yb = _augment(active, xb, yb, data.num_classes)  # yb may become (M, B, K) soft targets
                    with autocast():
                        logits = stack.forward(xb)  # (M, B, K)
                    losses = stack.losses(logits, yb)  # (M,)
                    stack.zero_grad()
                    stack.objective(losses).backward()
                    stack.step()
                    batch_loss += losses.detach()
                    n_steps += 1

                # ---- evaluate: train subset and validation, every cell at once; one host sync for all numbers
                mode = cfg0.eval.mode  # eval unless measuring the mistake (stacks of one, engine/plan.py)
                numbers = torch.cat([stack.evaluate(x_sub, y_sub, data.normalize, autocast, mode),
                                     stack.evaluate(data.x_val, data.y_val, data.normalize, autocast, mode),
                                     (batch_loss / max(n_steps, 1)).double()[:, None],
                                     stack.zero_fraction().double()[:, None]], 1).tolist()  # (M, 6)
                wall = time.perf_counter() - t0
                share = wall / len(active)  # the epoch's wall time, shared by its cells (a lone run: all of it)
                lrs = stack.lrs()
                leaving = []
                with sigterm_deferred():  # a row and its checkpoint are written together (resume stays exact)
                    for m, c in enumerate(active):
                        extra = {"stack_seconds": wall} if len(cells) > 1 else {}
                        if c.mc_epoch:  # MC dropout on validation (its own host sync; leaves training's RNG alone)
                            extra |= uncertainty.epoch_columns(c.model, data.x_val, data.y_val, data.normalize,
                                                               autocast, c.cfg.eval, c.streams.evaluation)
                        try:
                            if c.end_epoch(epoch, numbers[m], lrs[m], share, stack, m, extra) or epoch == tr.epochs:
                                leaving.append(m)
                        except Exception as exc:
                            if not _only_this_cell(c, exc, len(cells)):
                                raise
                            leaving.append(m)
                bar.set_postfix_str(console.epoch_postfix(numbers, len(active) - len(leaving)))
                if leaving:
                    for m in leaving:
                        try:
                            _finish(active[m], stack, m, data, autocast)
                        except Exception as exc:
                            if not _only_this_cell(active[m], exc, len(cells)):
                                raise
                            if not active[m].finished:  # failed before its files were closed: close them now
                                active[m].finish(data, autocast, status="failed", error=active[m].summary["error"])
                    keep = [m for m in range(len(active)) if m not in leaving]
                    active = [active[m] for m in keep]
                    if not active:
                        break
                    stack.select(keep)
            for m, c in enumerate(active):  # resumed at its last epoch: nothing left to train
                _finish(c, stack, m, data, autocast)
            active = []
    except (KeyboardInterrupt, Interrupted) as exc:
        _abort(active, stack, data, autocast, "interrupted", f"interrupted ({type(exc).__name__}: {exc})".strip())
        raise
    except Exception as exc:
        _abort(active, stack, data, autocast, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if bar is not None:
            bar.close()


def _by_structure(cells: list[Cell]) -> list[list[Cell]]:
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault(signature(c.model), []).append(c)
    return list(groups.values())


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
