"""What `hydra/launcher=vectorized` does with a batch of sweep jobs.

1. take every job's config from the sweeper (multirun.job_config; job id/num = its index);
2. skip configs that already completed under results_dir (resume, as hydra_app.resume_or_run);
3. group the rest into buckets (buckets.bucket_key); cells without a stacked form go to the
   ordinary task function one by one, with one log line per group saying why;
4. split a bucket that would not fit (hydra.launcher.max_cells, memory estimate) and train
   each part with loop.train_bucket;
5. return one JobReturn per job, in job order, through multirun.run_cell_job (Hydra's run_job
   without its deep copies) so callbacks, HydraConfig and the return value look exactly like a
   sequential job's.
"""

from __future__ import annotations

import logging
import shlex
from collections import defaultdict
from pathlib import Path

from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig

from regbench import loggers, multirun, results
from regbench.config import config_hash, validate
from regbench.errors import Abort, ConfigError
from regbench.train import Interrupted
from regbench.vectorized.buckets import bucket_key, chunk_sizes, fallback_reason, memory_budget
from regbench.vectorized.loop import Cell, train_bucket

log = logging.getLogger("regbench")


def launch(launcher, job_overrides, initial_job_idx: int) -> list[JobReturn]:
    setup_globals()
    config, ctx = launcher.config, launcher.hydra_context
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info("Launching %d jobs (vectorized)", len(job_overrides))
    # composed by our sweeper's preflight (regbench/compose.py), else composed here the same way
    jobs = [multirun.job_config(launcher, overrides, initial_job_idx + n) for n, overrides in enumerate(job_overrides)]

    values: dict[int, dict] = {}  # job position -> return value of the vectorized / skipped jobs
    sequential: dict[tuple, list[int]] = defaultdict(list)  # (what, why) -> job positions
    buckets: dict[str, list[int]] = defaultdict(list)
    cfgs = [multirun.task_config(job) for job in jobs]  # made once per job
    for i, cfg in enumerate(cfgs):
        reason = fallback_reason(cfg)
        if reason:
            sequential[reason].append(i)
        else:
            buckets[bucket_key(cfg)].append(i)

    returns: dict[int, JobReturn] = {}
    units = [(idx[0], "seq", r) for r, idx in sequential.items()] + [(idx[0], "vec", k) for k, idx in buckets.items()]
    for _, kind, key in sorted(units, key=lambda u: u[0]):  # in the order the grid lists them
        if kind == "seq":
            idx = sequential[key]
            log.info("vectorized: %d cell%s of %s run sequentially (%s)", len(idx), "s"[: len(idx) != 1], *key)
            for i in idx:
                log.info("\t#%d : %s", jobs[i].hydra.job.num, " ".join(filter_overrides(job_overrides[i])))
                returns[i] = multirun.run_cell_job(ctx, launcher.task_function, jobs[i])
                configure_log(config.hydra.hydra_logging, config.hydra.verbose)
        else:
            values.update(_run_bucket(launcher, jobs, cfgs, buckets[key]))
            for i in buckets[key]:
                returns[i] = _job_return(launcher, jobs[i], values[i])
    return [returns[i] for i in range(len(jobs))]


def _command(job: DictConfig) -> tuple[str, list[str]]:
    from regbench.hydra_app import PLACEMENT_KEYS

    overrides = [o for o in job.hydra.overrides.task if not o.startswith(PLACEMENT_KEYS)]
    return shlex.join(["regbench", "run", *overrides]), overrides


def _run_bucket(launcher, jobs: list[DictConfig], cfgs: list[DictConfig], idx: list[int]) -> dict[int, dict]:
    """Resume check, split by size, train. Returns job position -> return value (summary dict)."""
    lc = launcher.config.hydra.launcher
    values: dict[int, dict] = {}
    cells: list[tuple[int, Cell]] = []
    first_of_hash: dict[str, int] = {}
    duplicates: dict[int, int] = {}
    for i in idx:
        cfg = cfgs[i]
        command, overrides = _command(jobs[i])
        try:
            validate(cfg)
        except ConfigError as exc:
            raise Abort(str(exc)) from None
        cell = Cell(cfg=cfg, command=command, overrides=overrides)
        if cfg.resume:
            h = config_hash(cfg)
            if h in first_of_hash:  # the same config twice in one grid: the sequential loop would skip the 2nd
                duplicates[i] = first_of_hash[h]
                continue
            first_of_hash[h] = i
            reused, cell.stale = results.earlier_outcome(cfg, h)
            if reused is not None:
                loggers.backfill(cfg, reused)  # as hydra_app.resume_or_run
                values[i] = reused
                continue
        cells.append((i, cell))

    if cells:
        limit = _cells_limit(cells[0][1], lc)
        sizes = chunk_sizes(len(cells), limit)
        if len(sizes) > 1:
            log.info("vectorized: %d cells split into buckets of %s (max_cells=%s, memory estimate: %d cells)",
                     len(cells), sizes, lc.max_cells, limit)
        start = 0
        for size in sizes:
            part = cells[start : start + size]
            start += size
            values.update(_train_part(part, bool(lc.exact_masks)))
    for i, first in duplicates.items():
        values[i] = {**values[first], "skipped": True} if "run_dir" in values[first] else dict(values[first])
    return values


def _cells_limit(cell: Cell, lc) -> int:
    """max_cells, lowered so that the bucket's estimated memory fits the budget."""
    from regbench.data import build_splits
    from regbench.models import build_model
    from regbench.train import pick_device
    from regbench.vectorized.stacked import bytes_per_cell

    cfg = cell.cfg
    device = pick_device(cfg.trainer.device)
    data = build_splits(cfg.dataset, "cpu")
    model = build_model(cfg, data.input_shape, data.num_classes)
    per_cell = bytes_per_cell(model, cfg.trainer.batch_size, data.x_train[0].numel(), cfg.optim.name)
    per_cell += 8 * len(data.x_train)  # the cell's permutation (int64)
    fits = max(1, memory_budget(device, lc.max_memory_gb) // per_cell)
    return int(min(int(lc.max_cells), fits))


def _train_part(part: list[tuple[int, Cell]], exact_masks: bool) -> dict[int, dict]:
    cells = [c for _, c in part]
    try:
        train_bucket(cells, exact_masks=exact_masks)
    except ConfigError as exc:
        raise Abort(str(exc)) from None
    except Interrupted:  # SIGTERM: the cells say `interrupted` on disk; stop the sweep here
        raise
    except Exception as exc:  # noqa: BLE001 - as hydra_app.entry in a sweep: record, go on with the grid
        log.error("vectorized bucket failed (%s: %s): %d cells, first: %s", type(exc).__name__, exc, len(cells),
                  cells[0].command)
        return {i: {"status": "failed", "error": f"{type(exc).__name__}: {exc}"} for i, _ in part}
    for c in cells:
        for run_dir in c.stale:  # trained again from scratch: the old folders point to the new one
            results.mark_superseded(run_dir, c.summary["run_id"])
    return {i: c.summary for i, c in part}


def _job_return(launcher, job: DictConfig, value: dict) -> JobReturn:
    """A JobReturn made by hydra's own run_job around a task that hands back the bucket's result."""

    def task(_cfg) -> dict:
        if "run_dir" in value:  # what hydra_app.entry prints for each run
            incomplete = value["status"] != "completed"
            note = f"  [{value['status']}: {value.get('error')}]" if incomplete else ""
            print(f"results: {value['run_dir']}" + note)
        return value

    ret = multirun.run_cell_job(launcher.hydra_context, task, job)
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    return ret
