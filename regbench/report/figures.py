"""Report figures: which exist, in what order, and the per-epoch ones (learning curves, gap).

Each figure function takes the `Grid` and returns (Figure, caption), or raises
`NotSupported` with the reason the data cannot support it; `draw_all` writes the files.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from regbench.report.figures_compare import heatmap, rate_sweep, vs_baseline
from regbench.report.figures_uncertainty import calibration
from regbench.report.grid import Grid
from regbench.report.style import (
    ACC,
    BAND_ALPHA,
    EPOCH,
    GAP_ACC,
    GAP_LOSS,
    LOSS,
    NEUTRAL,
    PCT,
    RC_PARAMS,
    REFERENCE,
    THIN,
    Drawn,
    NotSupported,
    band,
    group_styles,
    outside_legend,
    save,
    share_limits,
)

MAX_PANELS = 12  # more learning-curve panels than this are unreadable on one page
MAX_COLUMNS = 4
PANEL_SIZE = (2.8, 3.2)  # inches per group: loss above accuracy
GAP_SIZE = (10.0, 3.6)


def _require_curves(grid: Grid) -> None:
    if grid.curves.empty:
        raise NotSupported("no run has a finished epoch in metrics.csv")


def curves(grid: Grid) -> Drawn:
    """One cell per group: loss (top) and accuracy (bottom), train solid, validation dashed."""
    _require_curves(grid)
    have = grid.groups.index[grid.groups.index.isin(grid.curves.index.unique("group"))]
    shown = have[:MAX_PANELS]
    ncols = min(len(shown), MAX_COLUMNS)
    nrows = math.ceil(len(shown) / ncols)
    fig = Figure(figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows + 0.6), layout="constrained")
    cells = fig.subfigures(nrows, ncols, squeeze=False).ravel()
    styles = group_styles(grid.groups)
    loss_axes, acc_axes = [], []
    has_batch_loss = False
    for cell, group in zip(cells, shown, strict=False):  # spare cells stay blank
        stats = grid.curves.loc[group]
        colour = styles[group]["color"]
        loss_ax, acc_ax = cell.subplots(2, 1, sharex=True)
        band(loss_ax, stats, "train_loss", 1.0, color=colour, linestyle="-")
        band(loss_ax, stats, "val_loss", 1.0, color=colour, linestyle="--")
        if "batch_loss" in stats and stats[("batch_loss", "mean")].notna().any():
            has_batch_loss = True
            loss_ax.plot(stats.index, stats[("batch_loss", "mean")], color=colour, linestyle=":", linewidth=THIN)
        band(acc_ax, stats, "train_acc", PCT, color=colour, linestyle="-")
        band(acc_ax, stats, "val_acc", PCT, color=colour, linestyle="--")
        loss_ax.set_ylabel(LOSS)
        acc_ax.set(xlabel=EPOCH, ylabel=ACC)
        acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        seeds = int(stats[("val_acc", "count")].max())
        cell.suptitle(f"{grid.groups.at[group, 'label']}  (n={seeds})", fontsize="medium")
        loss_axes.append(loss_ax)
        acc_axes.append(acc_ax)
    share_limits(loss_axes)
    share_limits(acc_axes)

    handles = [
        Line2D([], [], color=NEUTRAL, linestyle="-", label="train (eval mode)"),
        Line2D([], [], color=NEUTRAL, linestyle="--", label="validation"),
        Line2D([], [], color=NEUTRAL, linestyle=":", label="train minibatch (train mode)"),
        Patch(color=NEUTRAL, alpha=BAND_ALPHA, label="±1 std over seeds"),
    ]
    if not has_batch_loss:
        handles.pop(2)
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    capped = f" — first {len(shown)} of {len(have)} groups" if len(have) > len(shown) else ""
    fig.suptitle(f"Train vs validation per configuration, mean over seeds{capped}")
    caption = (
        f"Loss (top, nats) and accuracy (bottom, %) per epoch for {len(shown)} group(s); train solid, validation "
        "dashed, band = ±1 std over seeds; y ranges are shared across panels."
    )
    if capped:
        caption += f" Only the first {len(shown)} of {len(have)} groups are drawn; all are in the results table."
    return fig, caption


def gap(grid: Grid) -> Drawn:
    """All groups on one axis each: accuracy gap (pp) and loss gap (nats) per epoch."""
    _require_curves(grid)
    fig = Figure(figsize=GAP_SIZE, layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2, sharex=True)
    styles = group_styles(grid.groups)
    for group in grid.groups.index.intersection(grid.curves.index.unique("group")):
        stats = grid.curves.loc[group]
        label = grid.groups.at[group, "label"]
        band(acc_ax, stats, "gap_acc", PCT, label=label, **styles[group])
        band(loss_ax, stats, "gap_loss", 1.0, **styles[group])
    for ax, unit, title in ((acc_ax, GAP_ACC, "accuracy gap"), (loss_ax, GAP_LOSS, "loss gap")):
        ax.axhline(0.0, **REFERENCE)
        ax.set(xlabel=EPOCH, ylabel=unit, title=f"Generalization {title} (mean ± std over seeds)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    outside_legend(fig, *acc_ax.get_legend_handles_labels())
    caption = (
        "Generalization gap per epoch for every group: train − validation accuracy (pp, left) and "
        "validation − train loss (nats, right); a smaller gap means less overfitting."
    )
    return fig, caption


FigureFn = Callable[[Grid], Drawn]
FIGURES: dict[str, FigureFn] = {
    "curves": curves,
    "gap": gap,
    "rate_sweep": rate_sweep,
    "vs_baseline": vs_baseline,
    "heatmap": heatmap,
    "calibration": calibration,
}


Outcome = tuple[str, tuple[Path, str] | str]  # (key, (png path, caption)) or (key, why it was skipped)


def _draw_one(grid: Grid, out_dir: Path, formats: tuple[str, ...], panel: str, name: str) -> Outcome:
    """(key, (png path, caption)) for a drawn figure, or (key, the reason it was skipped)."""
    key = f"{name}:{panel}" if panel else name
    with matplotlib.rc_context(RC_PARAMS):
        try:
            fig, caption = FIGURES[name](grid)
            return key, (save(fig, out_dir, f"{name}-{panel}" if panel else name, formats), caption)
        except NotSupported as exc:
            return key, str(exc)
        except Exception as exc:  # noqa: BLE001 - a report with five figures beats no report
            return key, f"could not be drawn ({type(exc).__name__}: {exc})"


_job: dict[str, tuple] = {}  # a forked worker's grid and settings, inherited from the parent (never pickled)


def _start_worker(*job) -> None:
    _job["args"] = job


def _draw_in_worker(name: str) -> Outcome:
    return _draw_one(*_job["args"], name)


# tqdm's monitor (started by any progress bar, a sweep's too) only sleeps and polls its bars: a forked
# figure drawer never touches tqdm, so it can inherit nothing from it that would block
HARMLESS_THREADS = ("tqdm_monitor",)


def _other_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t is not threading.main_thread() and t.name not in HARMLESS_THREADS]


def workers(tasks: int) -> int:
    """Processes to draw `tasks` figures with: one per usable core, forked (Linux only: fork is what makes a
    worker cost milliseconds, since it inherits the imported libraries and the grid; elsewhere one process),
    and only from a process with no other Python thread (e.g. a terminal's progress-bar monitor, a
    tracker's uploader), whose locks a forked child could inherit held."""
    if tasks < 2 or not sys.platform.startswith("linux"):
        return 1
    if _other_threads():  # a fork copies no other thread, only the locks it may hold: draw here
        return 1
    return min(tasks, len(os.sched_getaffinity(0)))


def draw_all(
    grid: Grid, out_dir: Path, formats: Iterable[str], only: Iterable[str] | None = None, panel: str = ""
) -> tuple[dict[str, tuple[Path, str]], dict[str, str]]:
    """Draw each supported figure: ({name: (png path, caption)}, {name: reason it was skipped}).

    panel: the dataset/model the grid holds when a report spans several (figures never overlay
    them); names become `gap:<panel>` and files `gap-<panel>.png`.

    Figures are independent and drawing is most of a report's time (matplotlib is single-threaded),
    so they are drawn in parallel processes where the machine has cores to spare; each file is the
    same as one drawn alone. The slowest figure (curves) comes first in FIGURES, so it starts first."""
    wanted = list(FIGURES) if only is None else [name for name in FIGURES if name in set(only)]
    job = (grid, out_dir, tuple(formats), panel)
    results: list[Outcome] = []
    if workers(len(wanted)) > 1:
        try:
            with ProcessPoolExecutor(workers(len(wanted)), mp_context=multiprocessing.get_context("fork"),
                                     initializer=_start_worker, initargs=job) as pool:
                results = list(pool.map(_draw_in_worker, wanted))
        except (BrokenProcessPool, OSError):  # no processes to be had (limits, memory): draw them here
            results = []
    if not results:
        results = [_draw_one(*job, name) for name in wanted]
    written = {key: value for key, value in results if not isinstance(value, str)}
    skipped = {key: value for key, value in results if isinstance(value, str)}
    return written, skipped
