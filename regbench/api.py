"""The Python API behind `import regbench`: load run folders into pandas, start runs and sweeps.

    import regbench
    sweep = regbench.sweep(["dropout=standard", "dropout.p=0,0.3", "seed=0,1"])
    runs = regbench.load_runs(sweep.dir)        # one row per run (runs.csv)
    curves = regbench.load_curves(sweep.dir)    # one row per run and epoch (metrics.csv, long format)
    groups = regbench.load_groups(sweep.dir)    # one row per configuration, mean/std over seeds (groups.csv)

The loaders are the code `regbench report` runs (report.read_runs -> report.grid.build_grid),
so a DataFrame here and the report's tables never disagree. `run` and `sweep` go through the
CLI's own path (`regbench run ...`, Hydra included), so they validate, name folders and resume
exactly as the command line does; a bad input raises ConfigError with the CLI's one-line message.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shlex
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regbench.core.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------- loading


def _grid(paths: Sequence[PathLike], margin: str | None = None):
    """Read the runs below `paths` as `regbench report` does; missing paths -> FileNotFoundError."""
    from regbench.report import read_runs
    from regbench.report.grid import build_grid
    from regbench.report.sequential import read_record

    roots = [Path(p) for p in paths]
    if not roots:
        raise ConfigError("no path given; valid: one or more folders holding run folders")
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(errno.ENOENT, "no such file or folder", str(root))
    runs, skipped = read_runs(roots)
    damaged = [s for s in skipped if not s.superseded_by]  # not one a rerun has replaced already
    if damaged:
        first = damaged[0]
        warnings.warn(f"{len(damaged)} damaged folder(s) not counted, e.g. {first.path}: {first.reason}",
                      stacklevel=3)
    return runs, build_grid(runs, margin, read_record(roots, runs))


def load_runs(*paths: PathLike) -> pd.DataFrame:
    """One row per run folder found at any depth below `paths`: the columns of the report's runs.csv.

    Identity and status (`path`, `run_id`, `status`, `seed`), final/best/test metrics (`final.val_acc`,
    `best.val_loss`, `test.acc`, ...), every config value under its dotted key (`dropout.p`; lists as
    JSON text), and the report's grouping (`group`, `label`, `aggregated`). Numbers are numeric dtypes.

    Raises FileNotFoundError for a path that does not exist, ConfigError when no run can be read.
    Unreadable folders are skipped with a warning naming the first one and why.
    """
    _, grid = _grid(paths)
    return grid.runs.copy()


def load_curves(*paths: PathLike) -> pd.DataFrame:
    """Every run's per-epoch rows in long format: `run_id`, `path`, `status`, `group`, `label`, `seed`,
    the config keys that vary across the runs read, then `epoch` and every metrics.csv column.

    Plot with e.g. `curves.pivot_table(index="epoch", columns="label", values="val_acc")`.
    Raises like `load_runs`.
    """
    from regbench.report.grid import curves_long

    runs, grid = _grid(paths)
    return curves_long(runs, grid.runs, grid.varied)


def load_groups(*paths: PathLike) -> pd.DataFrame:
    """One row per configuration (runs that differ only in the seed), indexed by `group`: the report's
    groups.csv. `label`, the varied config values, `n` (runs aggregated), `seeds`, `statuses`, then
    `<metric>.mean` / `<metric>.std` over seeds for every runs.csv metric, and each group's `baseline`.
    Raises like `load_runs`.
    """
    _, grid = _grid(paths)
    return grid.groups.copy()


def load_comparisons(*paths: PathLike, margin: str | None = None) -> pd.DataFrame:
    """One row per (group, metric) against the group's baseline: the report's comparisons.csv, i.e.
    the seed-paired difference with its unadjusted 95% interval (ci95_low/high), the verdict's
    interval (ci_low/high: Bonferroni within the metric's family of `family_m` comparisons), p and
    p_adj, the margin δ, the TOST p, the decision and the verdict in words. margin: as `regbench
    report --margin` ('0.02' or 'test.acc=0.02,final.gap_loss=0.05'). Raises like `load_runs`.
    """
    _, grid = _grid(paths, margin)
    return grid.comparisons.copy()


# ---------------------------------------------------------------------------- running


@dataclass(frozen=True)
class SweepResult:
    """What `sweep` returns: the sweep folder and one summary per cell, in the order Hydra launched them."""

    dir: Path  # <results_dir>/<sweep_name>: pass it to load_runs / load_curves / load_groups
    runs: list[dict[str, Any]]  # summary.json of each cell plus "run_dir"; a failed cell: status + error
    counts: dict[str, int] = field(default_factory=dict)  # status -> number of cells

    @property
    def completed(self) -> bool:
        """Did every cell complete (the CLI exits 0 exactly then)?"""
        return bool(self.runs) and all(r.get("status") == "completed" for r in self.runs)


def _overrides(overrides: Sequence[str] | str, caller: str) -> list[str]:
    """KEY=VALUE strings as a list (one string is split like a shell line); flags are refused."""
    args = shlex.split(overrides) if isinstance(overrides, str) else [str(o) for o in overrides]
    flags = [a for a in args if a.startswith("-")]
    if flags:
        other = "regbench.sweep(...)" if flags[0] in ("-m", "--multirun") else "the command line for Hydra flags"
        raise ConfigError(f"{caller} takes KEY=VALUE overrides, not the flag {flags[0]!r}; valid: KEY=VALUE "
                          f"strings (use {other})")
    return args


@contextlib.contextmanager
def _hydra_isolated():
    """Leave the calling process as it was: Hydra reconfigures the root logger, reads sys.argv and the
    environment, and keeps a global instance; a notebook that already holds one gets it back."""
    from hydra.core.global_hydra import GlobalHydra

    root = logging.getLogger()
    saved_logging = (root.level, root.handlers[:])
    saved_env = os.environ.get("HYDRA_FULL_ERROR")
    saved_argv, saved_cwd = sys.argv[:], os.getcwd()
    outer = GlobalHydra.instance()
    outer_hydra = outer.hydra if outer.is_initialized() else None
    outer.clear()
    try:
        yield
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env
        root.setLevel(saved_logging[0])
        root.handlers[:] = saved_logging[1]
        GlobalHydra.instance().clear()
        if outer_hydra is not None:
            GlobalHydra.instance().initialize(outer_hydra)


def _regbench_run(args: list[str]) -> None:
    """`regbench run ARGS` in this process; ConfigError carries the CLI's one-line message."""
    from regbench.cli.commands import run_command
    from regbench.core.errors import stops_of_this_command

    with _hydra_isolated(), stops_of_this_command():
        try:
            run_command(args)
        except ConfigError as exc:
            raise ConfigError(" ".join(str(exc).split())) from None


def run(overrides: Sequence[str] | str = ()) -> dict[str, Any]:
    """Train one configuration, as `regbench run OVERRIDES...` does, and return its summary.

    overrides: Hydra overrides such as ["dropout=standard", "dropout.p=0.3", "seed=1"].
    Returns summary.json's content plus "run_dir" (and "skipped": True when resume found the
    config already completed under results_dir). A diverged run returns with status "diverged".
    Raises ConfigError (the CLI's one-line message) on bad input, before anything is written.
    """
    from regbench.sweeps import outcome
    args = _overrides(overrides, "regbench.run")
    with outcome.expect() as result:
        _regbench_run(args)
    if result.summary is None:  # every path through the task function records one
        raise RuntimeError("regbench.run finished without a summary")
    return result.summary


def sweep(overrides: Sequence[str] | str, launcher: str | None = None) -> SweepResult:
    """Train a grid, as `regbench run -m OVERRIDES...` does: comma-separated values are swept
    (["dropout.p=0,0.3", "seed=0,1"] is 4 runs), in the same sweep folder as the command line.

    launcher: a Hydra launcher, as `hydra/launcher=NAME` (basic, vectorized, joblib, submitit_local, ...);
    None: the config's default (vectorized: cells that share a structure train as stacks). Every cell
    is validated before the first starts; a bad value anywhere raises ConfigError and nothing is
    written. Cells that diverge or fail are returned with their status (see SweepResult.completed);
    the sweep's report is written to `<dir>/report` as usual.
    """
    from regbench.sweeps import outcome
    args = _overrides(overrides, "regbench.sweep")
    if launcher is not None:
        if any(a.startswith(("hydra/launcher=", "+hydra/launcher=")) for a in args):
            raise ConfigError(f"launcher={launcher!r} and a hydra/launcher= override both choose the launcher; "
                              "valid: one of them")
        args.append(f"hydra/launcher={launcher}")
    with outcome.expect() as result:
        _regbench_run([*args, "--multirun"])
    if result.sweep_dir is None:
        raise RuntimeError("regbench.sweep finished without a sweep record")
    return SweepResult(dir=result.sweep_dir, runs=result.runs, counts=dict(result.counts))
