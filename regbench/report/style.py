"""The shared look of report figures: fixed colours per dropout type, units, sizes, saving.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot), so no GUI backend
or global figure state is involved and nothing leaks between reports.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from regbench.report.table import dropout_spec

DPI = 200
PCT = 100.0  # accuracies are stored as fractions and shown in %
BAND_ALPHA = 0.2  # shaded ±1 std band
CAPSIZE = 3  # error-bar caps, points
MARKER_SIZE = 4  # points
ANNOTATION_SIZE = 7  # points: numbers written onto figures
THIN = 1.0  # secondary lines (train-mode minibatch loss)
NEUTRAL = "0.35"  # reference lines, and legend swatches that explain line styles rather than groups
REFERENCE = {"color": NEUTRAL, "linewidth": 0.8}  # zero and identity lines

# A dropout type has the same colour in every figure of every report: its spec's `colour`, else one of these.
FALLBACK_COLOURS = ("#e377c2", "#bcbd22", "#aec7e8", "#98df8a", "#ff9896", "#c5b0d5")
LINESTYLES = ("-", "--", ":", "-.")
SHADE_RANGE = (-0.35, 0.5)  # groups of one dropout type: darker (<0) to lighter (>0) variants of its colour

EPOCH = "epoch"
LOSS = "loss (nats)"
ACC = "accuracy (%)"
GAP_ACC = "gap: train − val accuracy (pp)"
GAP_LOSS = "gap: val − train loss (nats)"

RC_PARAMS = {
    "font.size": 8,
    "axes.titlesize": 9,
    "figure.titlesize": 10,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "none",  # keep SVG text as text: smaller files, searchable
    "svg.hashsalt": "regbench",  # stable SVG ids, so unchanged figures give unchanged files
}

# No dates or versions inside the files, so rerunning a report on the same runs changes nothing (and a
# matplotlib upgrade that draws the same figure writes the same file): each key is one that matplotlib
# fills in itself unless given None (tests/test_report_reproducible.py)
UNDATED = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
           "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}
# zlib level 1 instead of PIL's 6: PNG encoding at half the CPU time for files ~8% larger (the curves
# grid of a 32-run report: 0.13 s vs 0.24 s, 488 vs 453 KiB)
SAVE_OPTIONS = {"png": {"pil_kwargs": {"compress_level": 1}}}

Drawn = tuple[Figure, str]  # the figure and a one-line caption for the report


class NotSupported(Exception):
    """The data cannot support this figure; the message is the one-line reason for the report."""


def dropout_colour(name: Any) -> str:
    spec = dropout_spec(name)
    if spec is not None and spec.colour:
        return spec.colour
    # Types without a colour (or unknown here) still get a colour that is the same in every report.
    return FALLBACK_COLOURS[zlib.crc32(str(name).encode()) % len(FALLBACK_COLOURS)]


def shade(colour: str, amount: float) -> tuple[float, float, float]:
    """Mix towards white (amount > 0) or black (amount < 0) by |amount|."""
    rgb = np.array(to_rgb(colour))
    target = 1.0 if amount > 0 else 0.0
    return tuple(rgb + (target - rgb) * abs(amount))


def group_styles(groups: pd.DataFrame) -> dict[Any, dict[str, Any]]:
    """Colour by dropout type; within a type, shade and dash tell its groups apart."""
    styles: dict[Any, dict[str, Any]] = {}
    for name, members in groups.groupby("dropout", sort=False, dropna=False).groups.items():
        shades = np.linspace(*SHADE_RANGE, len(members)) if len(members) > 1 else [0.0]
        for rank, (group, amount) in enumerate(zip(members, shades, strict=True)):
            styles[group] = {
                "color": shade(dropout_colour(name), amount),
                "linestyle": LINESTYLES[rank % len(LINESTYLES)],
            }
    return styles


def band(ax: Axes, stats: pd.DataFrame, metric: str, scale: float, **line: Any) -> None:
    """Mean line with a shaded ±1 std band; std is 0 where a single seed ran."""
    mean = stats[(metric, "mean")] * scale
    std = stats[(metric, "std")].fillna(0.0) * scale
    ax.plot(stats.index, mean, **line)
    ax.fill_between(stats.index, mean - std, mean + std, color=line.get("color"), alpha=BAND_ALPHA, linewidth=0)


def share_limits(axes: Iterable[Axes]) -> None:
    """One y range for comparable panels, so heights can be compared across them."""
    axes = list(axes)
    if axes:
        lows, highs = zip(*(ax.get_ylim() for ax in axes), strict=True)
        for ax in axes:
            ax.set_ylim(min(lows), max(highs))


def save(fig: Figure, out_dir: Path, name: str, formats: Iterable[str]) -> Path:
    """Write name.<fmt> for each format (PNG always: the report embeds it); returns the PNG."""
    engine = fig.get_layout_engine()
    if engine is not None:
        # Lay the figure out once, here: with a layout engine set, every savefig first runs a whole dry
        # draw of the figure to lay it out, then draws it again to write it.
        engine.execute(fig)
        fig.set_layout_engine("none")
    for fmt in dict.fromkeys(["png", *formats]):
        fig.savefig(out_dir / f"{name}.{fmt}", dpi=DPI, metadata=UNDATED.get(fmt), **SAVE_OPTIONS.get(fmt, {}))
    return out_dir / f"{name}.png"



MAX_LEGEND_COLUMNS = 8  # beyond this a legend is unreadable anyway; the tables list every group


def outside_legend(fig: Figure, handles, labels) -> None:
    """A legend right of the axes that never squeezes them: more columns until it fits the figure's
    height, and the figure widened by the legend's measured width (constrained layout would
    otherwise shrink the axes to make room, down to nothing with many or long labels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    width, height = fig.get_size_inches()
    limit = 0.95 * height * fig.dpi
    ncols = 1
    while True:
        legend = fig.legend(handles, labels, loc="outside right upper", ncols=ncols, frameon=False)
        box = legend.get_window_extent(renderer)
        if box.height <= limit or ncols == MAX_LEGEND_COLUMNS:
            break
        legend.remove()
        # k columns are at least 1/k of one column's height, so no count below this fits: start there
        # (one or two legends measured instead of up to MAX_LEGEND_COLUMNS, each a full text layout)
        ncols = ncols + 1 if ncols > 1 else min(MAX_LEGEND_COLUMNS, max(2, math.ceil(box.height / limit)))
    fig.set_size_inches(width + box.width / fig.dpi, height)
