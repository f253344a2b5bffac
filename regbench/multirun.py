"""What the sweeper plugin does around Hydra's grid: validate all cells first, count outcomes after."""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from pathlib import Path

from omegaconf import DictConfig

from regbench.active import check_grid
from regbench.errors import ConfigError

log = logging.getLogger("regbench")


# Outcome counts of the last sweep in this process: the CLI exits 1 unless all completed.
# (Raising from the sweeper would skip Hydra's on_multirun_end callbacks, i.e. the report.)
last_counts: Counter = Counter()


# Job configs the sweeper composed for its preflight, keyed by the job's overrides: the vectorized
# launcher takes them from here instead of composing every cell a second time (~0.1-0.3 s each).
composed: dict[tuple[str, ...], DictConfig] = {}


def preflight(sweep_cfg: DictConfig, job_cfgs: list[DictConfig]) -> None:
    """Validate every cell (and each distinct dataset once) before the first run starts."""
    from regbench.train import check_config

    datasets: dict = {}  # one load per distinct dataset config (loads are cached in-process too)
    for cfg in job_cfgs:
        key = repr(sorted(cfg.dataset.items()))
        _, datasets[key] = check_config(cfg, datasets.get(key))
    if not job_cfgs:
        raise ConfigError("the sweep has no runs; valid: at least one value per swept key")
    check_grid(job_cfgs)


def count_statuses(returns, sweep_dir: str) -> Counter:
    """The sweep's closing table (a row per cell) and its one-line count of outcomes."""
    from regbench import console

    counts: Counter = Counter()
    cells = []
    jobs = [r for batch in returns for r in batch]
    for r in jobs:
        value = (r.return_value if r.status.name == "COMPLETED" else None) or {"status": "failed"}
        counts[value.get("status", "failed")] += 1
        cells.append(value)
    rows = list(zip(cell_names([list(r.overrides or []) for r in jobs]), cells, strict=True))
    print(console.sweep_table(sorted(rows, key=lambda row: _natural(row[0]))))
    parts = ", ".join(f"{counts[s]} {s}" for s in ("completed", "diverged", "interrupted", "failed") if counts[s])
    line = f"sweep finished: {sum(counts.values())} runs: {parts} -> {sweep_dir}"
    print(line, flush=True)
    last_counts.clear()
    last_counts.update(counts)
    return counts


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

    from regbench.results import SWEPT_KEYS_ENV

    keys = [k.lstrip("+~") for k in swept_keys(overrides)]
    if keys:
        os.environ[SWEPT_KEYS_ENV] = ",".join(keys)
    else:
        os.environ.pop(SWEPT_KEYS_ENV, None)


def sweep_incomplete() -> bool:
    return sum(last_counts.values()) > last_counts["completed"]


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


def remove_if_only_sweep_record(folder) -> None:
    """Delete a folder this sweep created if it holds nothing but Hydra's multirun.yaml."""
    import shutil
    from pathlib import Path

    if folder is None or not Path(folder).is_dir():
        return
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    if all(p.name == "multirun.yaml" for p in files):
        shutil.rmtree(folder)
