"""What the plugins do around Hydra's grid: validate all cells first, run each job without
re-composing or deep-copying its config, count outcomes after."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import (
    JobReturn,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from regbench.core.console import DETAIL
from regbench.core.errors import ConfigError
from regbench.rules.active import check_grid
from regbench.sweeps import outcome

log = logging.getLogger("regbench")
detail = logging.getLogger(DETAIL)  # launch details: shown with `regbench run -v`


# Overrides that choose where a run is written, not what it computes: left out of the rerun command.
PLACEMENT_KEYS = ("sweep_name=",)
# The job override `+stack_cells='...'` that lists a stack job's other cells (regbench/sweeps/stack_jobs.py).
STACK_KEY = "stack_cells"




def hand_over(launcher, configs: dict[tuple[str, ...], DictConfig]) -> None:
    """The job configs the sweeper composed for its preflight (regbench/sweeps/compose.py), keyed by the job's
    overrides, go to its launcher, which takes them (`taken`) instead of composing every cell a second time.
    Only our launchers take them (they declare `composed`); other launchers compose their jobs themselves."""
    if hasattr(type(launcher), "composed"):
        launcher.composed = {**(launcher.composed or {}), **configs}


def taken(launcher, overrides: Sequence[str]) -> DictConfig | None:
    """The config the sweeper composed for this job, once (None: compose it)."""
    return (getattr(launcher, "composed", None) or {}).pop(tuple(overrides), None)


def preflight(sweep_cfg: DictConfig, job_cfgs: list[DictConfig]) -> None:
    """Validate every cell (and each distinct dataset once) before the first run starts."""
    from regbench.engine.setup import colour_unused
    from regbench.engine.train import check_config

    datasets: dict = {}  # one load per distinct dataset config (loads are cached in-process too)
    unused: list[dict[str, str]] = []  # per cell, what cannot act there given its data (the grid rule judges it)
    for cfg in job_cfgs:
        key = repr(sorted(cfg.dataset.items()))
        _, datasets[key] = check_config(cfg, datasets.get(key))
        reason = colour_unused(cfg, datasets[key])
        unused.append({"augment.saturation": reason} if reason else {})
    if not job_cfgs:
        raise ConfigError("the sweep has no runs; valid: at least one value per swept key")
    check_grid(job_cfgs, unused)


def refuse_repeated_values(overrides) -> None:
    """`seed=1,1`: a swept key listing one value twice would train the same cell twice (Hydra's
    parsed overrides; values compared after parsing, so dropout.p=0.1,0.10 repeats too)."""
    for override in overrides:
        if not (override.is_sweep_override() and override.is_discrete_sweep()):
            continue
        seen: list = []
        for value, text in zip(override.sweep_iterator(), override.sweep_string_iterator(), strict=True):
            if value in seen:
                key = override.get_key_element()
                listed = ",".join(override.sweep_string_iterator())
                raise ConfigError(f"{key}={listed} lists the value {text} twice; valid: each value once "
                                  "(a repeated value is the same cell again)")
            seen.append(value)


def encode_cells(cells: list[list[str]]) -> str:
    """A stack job's other cells (their override lists) as one override value: base64 of JSON,
    which Hydra's override grammar passes through untouched inside quotes."""
    return base64.urlsafe_b64encode(json.dumps(cells).encode()).decode()


def decode_cells(text: str) -> list[list[str]]:
    return json.loads(base64.urlsafe_b64decode(text.encode()))


def count_statuses(returns, sweep_dir: str) -> Counter:
    """The sweep's closing table (a row per cell) and its one-line count of outcomes."""
    from regbench.core import console
    counts: Counter = Counter()
    cells, names = [], []
    for r in (r for batch in returns for r in batch):
        try:
            value = r.return_value or {"status": "failed", "error": "the job returned nothing"}
        except Exception as exc:  # noqa: BLE001 - JobReturn re-raises a failed job's exception
            value = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        overrides = list(r.overrides or [])
        stacked = [o for o in overrides if o.startswith(f"+{STACK_KEY}=")]
        own = [o for o in overrides if o not in stacked]
        job_cells = [own, *(decode_cells(stacked[0].split("=", 1)[1].strip("'")) if stacked else [])]
        values = value.get("cells") or [value] * len(job_cells)  # a stack job returns one value per cell
        for cell_overrides, cell in zip(job_cells, values, strict=True):
            counts[cell.get("status", "failed")] += 1
            names.append(cell_overrides)
            cells.append(cell)
    rows = list(zip(cell_names(names), cells, strict=True))
    print(console.sweep_table(sorted(rows, key=lambda row: _natural(row[0]))))
    resumed = resume_line(cells)
    if resumed:
        print(resumed)
    parts = ", ".join(f"{counts[s]} {s}" for s in ("completed", "diverged", "interrupted", "failed") if counts[s])
    line = f"sweep finished: {sum(counts.values())} runs: {parts} -> {sweep_dir}"
    print(line, flush=True)
    # for the command (its exit code) and regbench.sweep(); raising from the sweeper instead would skip Hydra's
    # on_multirun_end callbacks, i.e. the report. A failed cell: {"status": "failed", "error": ...}
    outcome.record_sweep(sweep_dir, cells, counts)
    return counts


def resume_line(cells: list[dict]) -> str | None:
    """What resume did in this sweep, in one line (not one per folder): e.g. `resume: 12 finished runs
    skipped, 3 unfinished rerun (resume=false trains every cell again)`; None when it did nothing."""
    parts = []
    skipped = sum(bool(c.get("skipped")) for c in cells)
    rerun = sum(bool(c.get("supersedes")) for c in cells)
    continued = sum(c.get("resumed_at_epoch") is not None for c in cells)
    if skipped:
        parts.append(f"{skipped} finished run{'s'[: skipped != 1]} skipped")
    if rerun:
        parts.append(f"{rerun} unfinished rerun")
    if continued:
        parts.append(f"{continued} continued from {'their checkpoints' if continued > 1 else 'its checkpoint'}")
    return f"resume: {', '.join(parts)} (resume=false trains every cell again)" if parts else None


def swept_keys(overrides: list[list[str]]) -> list[str]:
    """The override keys whose value differs between the cells of a grid, in order of appearance."""
    values = [dict(o.split("=", 1) for o in job if "=" in o) for job in overrides]
    keys = dict.fromkeys(k for v in values for k in v)
    return [k for k in keys if len({v.get(k) for v in values}) > 1]


def cell_names(overrides: list[list[str]]) -> list[str]:
    """Each cell's overrides that differ between cells, e.g. 'dropout=spatial dropout.p_conv=0.3'."""
    varying = set(swept_keys(overrides))
    return [" ".join(o for o in job if o.split("=", 1)[0] in varying) or "(single cell)" for job in overrides]


def _natural(name: str) -> list:
    """Sort key for cell names: numbers numerically ('p=0.05' before 'p=0.1' before 'p=0.3')."""
    key = []
    for part in name.replace("=", " ").split():
        try:
            key.append((0, float(part), ""))
        except ValueError:
            key.append((1, 0.0, part))
    return key


def announce_swept_keys(overrides: list[list[str]]) -> None:
    """Tell this sweep's jobs (also those in other processes) which keys it varies: their run
    folder names show them (results.run_label). An empty grid clears it."""
    import os

    from regbench.records.results import SWEPT_KEYS_ENV

    keys = [k.lstrip("+~") for k in swept_keys(overrides)]
    if keys:
        os.environ[SWEPT_KEYS_ENV] = ",".join(keys)
    else:
        os.environ.pop(SWEPT_KEYS_ENV, None)


@contextlib.contextmanager
def keep_previous(record: Path):
    """Hydra rewrites multirun.yaml in place (OmegaConf.save): on a full disk that leaves 0 bytes
    where a rerun's record was. Move the old one aside first (a rename needs no space) and put it
    back if the new one did not get written."""
    previous = record.with_name(f".{record.name}.previous")
    moved = False
    with contextlib.suppress(OSError):
        if record.is_file():
            os.replace(record, previous)
            moved = True
    try:
        yield
    finally:
        if moved:
            with contextlib.suppress(OSError):
                if record.is_file() and record.stat().st_size > 0:
                    previous.unlink()
                else:
                    os.replace(previous, record)


def save_record(config: DictConfig, record: Path) -> None:
    """multirun.yaml as Hydra writes it (OmegaConf.save), but atomically and, on a full disk or a read-only
    folder, with an error that names the file: Hydra's own save, right after, rewrites the same bytes in place,
    and its failed write would name no file ("cannot write a file")."""
    from regbench.core.files import atomic_write_text

    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, OmegaConf.to_yaml(config))


def remove_if_only_sweep_record(folder) -> None:
    """Delete a folder this sweep created if it holds nothing but Hydra's multirun.yaml."""
    import shutil
    from pathlib import Path

    if folder is None or not Path(folder).is_dir():
        return
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    if all(p.name == "multirun.yaml" for p in files):
        shutil.rmtree(folder)


# ---------------------------------------------------------------------------- running jobs


def job_config(launcher, overrides: Sequence[str], job_num: int) -> DictConfig:
    """A job's config as Hydra's BasicLauncher builds it (id = num = its index in the sweep), taken
    from the sweeper's composition when there is one (a launcher used without our sweeper composes)."""
    cfg = taken(launcher, overrides)
    if cfg is None:
        from regbench.sweeps.compose import CellComposer

        if getattr(launcher, "composer", None) is None:
            launcher.composer = CellComposer(launcher.hydra_context.config_loader, launcher.config)
        cfg = launcher.composer.compose(overrides)
    with open_dict(cfg):
        cfg.hydra.job.id = cfg.hydra.job.num = job_num
    return cfg


def launch_in_process(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Hydra's BasicLauncher.launch, with configs from job_config (the sweeper composed them once) and each job
    run by Hydra's own run_job."""
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    detail.info("Launching %d jobs locally", len(job_overrides))
    returns = []
    for n, overrides in enumerate(job_overrides):
        num = initial_job_idx + n
        detail.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
        cfg = job_config(launcher, overrides, num)
        returns.append(run_one_job(launcher, cfg))
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    return returns


def take_task_config(config: DictConfig) -> DictConfig:
    """The job's config without its hydra node, as Hydra's run_job hands it to the task function, but
    without run_job's deep copy: for a job config nothing reads afterwards (a stack's cells,
    sweeps/stacked.py; a stack job's other cells, sweeps/stack_jobs.py)."""
    with read_write(config), open_dict(config):
        del config["hydra"]
    return config


def run_one_job(launcher, config: DictConfig) -> JobReturn:
    """Hydra's run_job for one job of a sweep, as Hydra's BasicLauncher calls it. (A rewrite of run_job that
    skipped its deep copies saved ~3 ms a cell and reached into OmegaConf's and logging's private state.)"""
    return run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function, config=config,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
