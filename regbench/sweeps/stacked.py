"""What `hydra/launcher=vectorized` does with a batch of sweep jobs: hand them to the loop as stacks.

1. take every job's config from the sweeper (multirun.taken; Hydra's loader otherwise),
   job id/num = its index as Hydra's BasicLauncher sets them;
2. skip configs that already completed under results_dir (resume: Cell.resume_outcome);
3. group the rest into stacks (plan.stack_key); a cell that cannot share a stack
   (plan.alone_reason) goes to the ordinary task function, with one log line per reason;
4. split a stack that would not fit (hydra.launcher.max_cells, memory estimate) and train
   each part with engine.loop.train;
5. return one JobReturn per job, in job order, through hydra's run_job so callbacks,
   HydraConfig and the return value look exactly like a sequential job's.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections import defaultdict
from pathlib import Path

import torch
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig

from regbench.core import console
from regbench.core.console import DETAIL
from regbench.core.errors import Abort, ConfigError, Interrupted, failed_outcome
from regbench.engine.cells import Cell
from regbench.engine.loop import train
from regbench.engine.plan import alone_reason, chunk_sizes, memory_budget, stack_key
from regbench.records import claims
from regbench.rules.config import config_hash
from regbench.rules.validate import validate
from regbench.sweeps import multirun
from regbench.sweeps.multirun import PLACEMENT_KEYS

log = logging.getLogger("regbench")
detail = logging.getLogger(DETAIL)  # launch details: shown with `regbench run -v`


def launch(launcher, job_overrides, initial_job_idx: int) -> list[JobReturn]:
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    detail.info("Launching %d jobs (vectorized)", len(job_overrides))
    # composed (and checked: multirun.preflight) by our sweeper, else composed here the same way
    checked = [tuple(overrides) in (launcher.composed or {}) for overrides in job_overrides]
    jobs = [multirun.job_config(launcher, overrides, initial_job_idx + n) for n, overrides in enumerate(job_overrides)]

    values: dict[int, dict] = {}  # job position -> return value of the vectorized / skipped jobs
    sequential: dict[tuple, list[int]] = defaultdict(list)  # (what, why) -> job positions
    stacks: dict[str, list[int]] = defaultdict(list)
    commands = [_command(job) for job in jobs]  # read from the hydra node before stack cells lose it
    cfgs: dict[int, DictConfig] = {}
    for i, job in enumerate(jobs):
        reason = alone_reason(job)
        if reason:
            sequential[reason].append(i)  # run_job needs the whole job config
        else:
            cfgs[i] = multirun.take_task_config(job)  # the job config is not read again (commands: above)
            stacks[stack_key(cfgs[i])].append(i)

    returns: dict[int, JobReturn] = {}
    units = [(idx[0], "seq", r) for r, idx in sequential.items()] + [(idx[0], "vec", k) for k, idx in stacks.items()]
    for _, kind, key in sorted(units, key=lambda u: u[0]):  # in the order the grid lists them
        if kind == "seq":
            idx = sequential[key]
            log.info("vectorized: %d cell%s of %s train alone (%s)", len(idx), "s"[: len(idx) != 1], *key)
            for i in idx:
                detail.info("\t#%d : %s", jobs[i].hydra.job.num, " ".join(filter_overrides(job_overrides[i])))
                returns[i] = multirun.run_one_job(launcher, jobs[i])
                configure_log(config.hydra.hydra_logging, config.hydra.verbose)
        else:
            values.update(_run_stack(launcher, commands, cfgs, stacks[key], checked))
            for i in stacks[key]:
                returns[i] = _job_return(launcher, job_overrides[i], cfgs[i], values[i])
    return [returns[i] for i in range(len(jobs))]


def _command(job: DictConfig) -> tuple[str, list[str]]:
    overrides = [o for o in job.hydra.overrides.task if not o.startswith(PLACEMENT_KEYS)]
    return shlex.join(["regbench", "run", *overrides]), overrides


def _run_stack(launcher, commands: list[tuple[str, list[str]]], cfgs: dict[int, DictConfig], idx: list[int],
               checked: list[bool]) -> dict[int, dict]:
    """The jobs at positions idx (one stack key) -> job position -> return value (summary dict)."""
    lc = launcher.config.hydra.launcher
    cells = [Cell(cfg=cfgs[i], command=commands[i][0], overrides=commands[i][1], checked=checked[i]) for i in idx]
    return dict(zip(idx, train_cells(cells, int(lc.max_cells), lc.max_memory_gb), strict=True))


def train_cells(cells: list[Cell], max_cells: int, max_memory_gb: float | None) -> list[dict]:
    """Claim, resume check, split by size, train as stacks. Returns each cell's summary (or reused outcome), in order.

    Cells of one stack key (plan.stack_key); a cell that cannot share a stack trains alone inside
    engine.loop.train. Used by the vectorized launcher and by stack jobs of other launchers. A cell
    another process is training (its claim, regbench/records/claims.py) is waited for after this process's
    own cells, then looked up again: reused if that process finished it, else trained here.
    """
    with claims.Held() as held:  # what is still held on an error or a signal goes too
        values, duplicates = _train_own(cells, max_cells, max_memory_gb, held)
    if held.others:  # trained by another process meanwhile: once it lets go, resume finds (or trains) them
        held.wait_for_others()
        again = train_cells([cells[i] for i in held.others], max_cells, max_memory_gb)
        values.update(zip(held.others, again, strict=True))
    for i, first in duplicates.items():
        values[i] = {**values[first], "skipped": True} if "run_dir" in values[first] else dict(values[first])
    return [values[i] for i in range(len(cells))]


def _train_own(cells: list[Cell], max_cells: int, max_memory_gb: float | None,
               held: claims.Held) -> tuple[dict[int, dict], dict[int, int]]:
    """train_cells for the cells this process claims: (position -> value, duplicate position -> first)."""
    values: dict[int, dict] = {}
    todo: list[tuple[int, Cell]] = []
    first_of_hash: dict[str, int] = {}
    duplicates: dict[int, int] = {}
    for i, cell in enumerate(cells):
        cfg = cell.cfg
        try:
            if not cell.checked:
                validate(cfg)
        except ConfigError as exc:
            raise Abort(str(exc)) from None
        if cfg.resume:
            h = config_hash(cfg)
            if h in first_of_hash:  # the same config twice in one grid: the sequential loop would skip the 2nd
                duplicates[i] = first_of_hash[h]
                continue
            first_of_hash[h] = i
            if not held.take(i, cfg.results_dir, claims.key(cfg, h)):
                continue  # another process trains it (held.others)
            reused = cell.resume_outcome(h)
            if reused is not None:
                values[i] = reused
                held.release([i])
                continue
        todo.append((i, cell))

    if todo:
        limit = _cells_limit(todo[0][1], max_cells, max_memory_gb)
        sizes = chunk_sizes(len(todo), limit)
        if len(sizes) > 1:
            log.info("vectorized: %d cells split into stacks of %s (max_cells=%s, memory estimate: %d cells)",
                     len(todo), sizes, max_cells, limit)
        start = 0
        for size in sizes:
            part = todo[start : start + size]
            start += size
            values.update(_train_part(part))
            held.release([i for i, _ in part])
    return values, duplicates


def _cells_limit(cell: Cell, max_cells: int, max_memory_gb: float | None) -> int:
    """max_cells, lowered so that the stack's estimated memory fits the budget."""
    from regbench.data import build_splits
    from regbench.engine.setup import pick_device
    from regbench.engine.stack import bytes_per_cell
    from regbench.models import build_model

    cfg = cell.cfg
    device = pick_device(cfg.trainer.device)
    data = build_splits(cfg.dataset, "cpu")
    model = build_model(cfg, data.input_shape, data.num_classes)
    per_cell = bytes_per_cell(model, data.input_shape, cfg.trainer.batch_size, cfg.optim.name)
    per_cell += 8 * len(data.x_train)  # the cell's permutation (int64)
    fits = max(1, memory_budget(device, max_memory_gb) // per_cell)
    return int(min(int(max_cells), fits))


def _train_part(part: list[tuple[int, Cell]]) -> dict[int, dict]:
    cells = [c for _, c in part]
    try:
        train(cells)
    except ConfigError as exc:
        raise Abort(str(exc)) from None
    except Interrupted:  # SIGTERM: the cells say `interrupted` on disk; stop the sweep here
        raise
    except torch.OutOfMemoryError:  # the estimate was too optimistic: the cells say `failed` on disk
        raise Abort(f"out of memory training a stack of {len(cells)} cells; lower hydra.launcher.max_cells "
                    f"(or hydra.launcher.max_memory_gb) and rerun: completed cells are kept") from None
    except Exception as exc:  # noqa: BLE001 - as hydra_app.entry in a sweep: record, go on with the grid
        failed = failed_outcome(exc, "vectorized stack", f"{len(cells)} cells, first: {cells[0].command}")
        return {i: dict(failed) for i, _ in part}
    for c in cells:
        c.supersede_stale()
    return {i: c.summary for i, c in part}


def _job_return(launcher, overrides, cfg: DictConfig, value: dict) -> JobReturn:
    """What run_job would return for a task that handed back `value`, with the job-end callbacks
    (the sweep bar) called as run_job calls them; without run_job's per-job deep copy and logging
    set-up (regbench writes no Hydra job files)."""
    if "run_dir" in value:  # what hydra_app.entry says for each run
        console.run_done(value, single=False)
    ret = JobReturn(overrides=list(overrides), cfg=cfg, hydra_cfg=None, working_dir=os.getcwd(),
                    task_name="regbench", status=JobStatus.COMPLETED, _return_value=value)
    launcher.hydra_context.callbacks.on_job_end(config=cfg, job_return=ret)
    return ret
