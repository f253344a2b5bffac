"""Report figures: the per-epoch ones (learning curves, gap), and `draw_one` for any of them.

Each figure function takes the `Grid` and returns (Figure, caption), or raises `NotSupported` with
the reason the data cannot support it; which figures exist and in what order is drawing.py's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from regbench.report.figures_compare import heatmap, rate_sweep, vs_baseline
from regbench.report.figures_uncertainty import calibration
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

if TYPE_CHECKING:  # for annotations only: drawing needs the grid's tables, not the statistics (scipy) behind them
    from regbench.report.grid import Grid

MAX_PANELS = 12  # more learning-curve panels than this are unreadable on one page
MAX_COLUMNS = 4
PANEL_SIZE = (2.8, 3.2)  # inches per group: loss above accuracy
GAP_SIZE = (10.0, 3.6)
# The curves grid is laid out by hand, in inches: with up to 24 axes, constrained layout was a third of its
# drawing time, and every cell has the same contents, so one measured layout fits all (tests/test_report.py
# checks that no label overlaps). Per cell: room for the title above, the y label and ticks left, the
# epoch ticks and label below, a little between loss and accuracy.
CELL_MARGINS = {"top": 0.32, "left": 0.58, "right": 0.12, "bottom": 0.48, "between": 0.2}
TITLE_BAND, LEGEND_BAND = 0.3, 0.26  # inches: the figure's title above the cells, the legend below
MIN_WIDTH = 6.4  # inches: the figure's title and legend, in the fonts of style.RC_PARAMS
CELL_TICKS = 5  # at most this many ticks per axis of a cell: every tick is an artist to draw, its grid line too


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
    # at least wide enough for the title and the one-row legend; the cells centred in it
    width, height = max(PANEL_SIZE[0] * ncols, MIN_WIDTH), PANEL_SIZE[1] * nrows + TITLE_BAND + LEGEND_BAND
    left = (width - PANEL_SIZE[0] * ncols) / 2
    fig = Figure(figsize=(width, height))
    styles = group_styles(grid.groups)
    loss_axes, acc_axes = [], []
    has_batch_loss = False
    m = CELL_MARGINS
    ax_w = PANEL_SIZE[0] - m["left"] - m["right"]
    ax_h = (PANEL_SIZE[1] - m["top"] - m["bottom"] - m["between"]) / 2
    for i, group in enumerate(shown):  # spare cells stay blank
        stats = grid.curves.loc[group]
        colour = styles[group]["color"]
        x0 = left + (i % ncols) * PANEL_SIZE[0] + m["left"]  # inches from the left / bottom edge
        y0 = height - TITLE_BAND - (i // ncols + 1) * PANEL_SIZE[1] + m["bottom"]
        acc_ax = fig.add_axes((x0 / width, y0 / height, ax_w / width, ax_h / height))
        loss_ax = fig.add_axes((x0 / width, (y0 + ax_h + m["between"]) / height, ax_w / width, ax_h / height),
                               sharex=acc_ax)
        loss_ax.tick_params(labelbottom=False)
        band(loss_ax, stats, "train_loss", 1.0, color=colour, linestyle="-")
        band(loss_ax, stats, "val_loss", 1.0, color=colour, linestyle="--")
        if "batch_loss" in stats and stats[("batch_loss", "mean")].notna().any():
            has_batch_loss = True
            loss_ax.plot(stats.index, stats[("batch_loss", "mean")], color=colour, linestyle=":", linewidth=THIN)
        band(acc_ax, stats, "train_acc", PCT, color=colour, linestyle="-")
        band(acc_ax, stats, "val_acc", PCT, color=colour, linestyle="--")
        loss_ax.set_ylabel(LOSS)
        acc_ax.set(xlabel=EPOCH, ylabel=ACC)
        acc_ax.xaxis.set_major_locator(MaxNLocator(CELL_TICKS, integer=True))
        for ax in (loss_ax, acc_ax):
            ax.yaxis.set_major_locator(MaxNLocator(CELL_TICKS))
        seeds = int(stats[("val_acc", "count")].max())
        fig.text((x0 + ax_w / 2) / width, (y0 + 2 * ax_h + m["between"] + m["top"] / 2) / height,
                 f"{grid.groups.at[group, 'label']}  (n={seeds})", ha="center", va="center", fontsize="medium")
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
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=len(handles), frameon=False,
               borderaxespad=0.2)
    capped = f" — first {len(shown)} of {len(have)} groups" if len(have) > len(shown) else ""
    fig.suptitle(f"Train vs validation per configuration, mean over seeds{capped}", y=1 - 0.06 / height, va="top")
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


FigureFn = Callable[["Grid"], Drawn]
# every figure's function, by name: drawing.FIGURES says which a report draws and in what order
FUNCTIONS: dict[str, FigureFn] = {fn.__name__: fn for fn in (curves, gap, rate_sweep, vs_baseline, heatmap,
                                                             calibration)}


def draw_one(grid: Grid, out_dir: Path, formats: tuple[str, ...], panel: str,
             name: str) -> tuple[str, tuple[Path, str] | str]:
    """(key, (png path, caption)) for a drawn figure, or (key, the reason it was skipped)."""
    key = f"{name}:{panel}" if panel else name
    with matplotlib.rc_context(RC_PARAMS):
        try:
            fig, caption = FUNCTIONS[name](grid)
            return key, (save(fig, out_dir, f"{name}-{panel}" if panel else name, formats), caption)
        except NotSupported as exc:
            return key, str(exc)
        except Exception as exc:  # noqa: BLE001 - a report with five figures beats no report
            return key, f"could not be drawn ({type(exc).__name__}: {exc})"
