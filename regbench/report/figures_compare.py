"""Figures that compare final results across configurations: rate sweep, baseline bars, heatmap.

All read the group table (mean and std over seeds of each group's final metrics), so a
point or bar is always a mean over seeds with its std as the error bar.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from regbench.core.dropout_types import RATE_KEYS as BASE_RATE_KEYS
from regbench.report.style import (
    ACC,
    ANNOTATION_SIZE,
    CAPSIZE,
    GAP_ACC,
    MARKER_SIZE,
    NEUTRAL,
    PCT,
    REFERENCE,
    Drawn,
    NotSupported,
    group_styles,
    outside_legend,
)
from regbench.report.table import fmt_value, make_label

if TYPE_CHECKING:  # for annotations only: drawing needs the grid's tables, not its statistics (scipy)
    from regbench.report.grid import Grid

# Rate slots (the registry's rate keys), preferred as the x axis in this order.
RATE_KEYS = tuple(f"dropout.{k}" for k in BASE_RATE_KEYS)
LOG_SPAN = 100.0  # x values spanning more than this ratio (e.g. weight decay 1e-4..0.1) are drawn evenly spaced
RATE_SIZE = (9.5, 3.6)
MARKERS = ("o", "s", "^", "D", "v", "P")
DODGE = 0.012  # sideways shift between rate-sweep series, as a fraction of the rate range
BAR_HEIGHT_PER_GROUP = 0.34  # inches; baseline bars grow with the number of groups
BAR_MIN_HEIGHT = 2.4
HEAT_PANEL = (3.8, 3.4)  # inches per heatmap facet
MAX_FACETS = 6
BAR_MARGIN = 0.08
BAR_FILL = 0.7  # bar thickness as a fraction of the row
LABEL_OFFSET = (4, 0)  # points right of the axes for the value column
DARK_CELL = 0.5  # heatmap cells darker than this (normalised) get white text


def _vs_baseline(groups: pd.DataFrame, metric: str, field: str) -> pd.Series:
    """A group's paired difference to its baseline (or a CI end), in pp; NaN where not computed."""
    column = f"{metric}.vs_baseline.{field}"
    return groups[column].astype(float) * PCT if column in groups else pd.Series(np.nan, index=groups.index)


def _with_results(grid: Grid) -> pd.DataFrame:
    return grid.groups[grid.groups["n"] > 0]


def _std(groups: pd.DataFrame, metric: str) -> pd.Series:
    """Std over seeds in display units; a single seed has no spread to draw."""
    return groups[f"{metric}.std"].fillna(0.0) * PCT


# ---------------------------------------------------------------------------- rate sweep


def swept_numeric_key(grid: Grid) -> str | None:
    """The key a rate sweep puts on its x axis: a varied dropout rate slot (p, p_conv, p_input),
    else any other varied numeric key (weight decay, L1, block size, lr ...); None if none varies."""
    numeric = [k for k in _numeric_varied(grid) if k != "seed" and grid.runs[k].dropna().nunique() > 1]
    return next((k for k in RATE_KEYS if k in numeric), numeric[0] if numeric else None)


def _positions(values: list[float]) -> dict[float, float]:
    """x position of each value: the value itself, or its rank when values span orders of magnitude."""
    positive = [v for v in values if v > 0]
    if len(positive) > 1 and max(positive) / min(positive) > LOG_SPAN:
        return {v: float(i) for i, v in enumerate(values)}
    return {v: float(v) for v in values}


def rate_sweep(grid: Grid) -> Drawn:
    """Final val accuracy and final accuracy gap vs the swept rate (or other numeric key), one line
    per dropout type (and per value of any other varied key)."""
    rate = swept_numeric_key(grid)
    if rate is None:
        raise NotSupported("no numeric config value varies across the runs (a rate sweep needs at least two "
                           "values of dropout.p, dropout.p_conv, dropout.p_input or another numeric key)")
    groups = _with_results(grid)
    groups = groups[groups[rate].notna()]
    series_keys = [k for k in grid.varied if k != rate]
    series = groups.groupby(series_keys, sort=False, dropna=False).ngroup() if series_keys else 0
    groups = groups.assign(series=series)
    heads = groups.drop_duplicates("series").set_index("series")
    styles = group_styles(heads)
    names = {k: grid.names[k] for k in series_keys}

    fig = Figure(figsize=RATE_SIZE, layout="constrained")
    acc_ax, gap_ax = fig.subplots(1, 2, sharex=True)
    rates = sorted(groups[rate].dropna().unique())
    where = _positions(rates)
    span = where[rates[-1]] - where[rates[0]] if len(rates) > 1 else 0.0
    # Nudge series sideways a little so error bars at the same rate do not hide each other.
    dodge = DODGE * span
    for rank, (sid, part) in enumerate(groups.groupby("series", sort=False)):
        part = part.sort_values(rate)
        x = part[rate].map(where) + dodge * (rank - (len(heads) - 1) / 2)
        head = heads.loc[sid]
        label = make_label(head, names) if names else f"dropout={fmt_value(head['dropout'])}"
        marker = MARKERS[rank % len(MARKERS)]  # shades of one type's colour need a second cue
        line: dict[str, Any] = {"marker": marker, "markersize": MARKER_SIZE, "capsize": CAPSIZE, **styles[sid]}
        acc_ax.errorbar(x, part["final.val_acc.mean"] * PCT, yerr=_std(part, "final.val_acc"), label=label, **line)
        gap_ax.errorbar(x, part["final.gap_acc.mean"] * PCT, yerr=_std(part, "final.gap_acc"), **line)
    what = "dropout rate" if rate in RATE_KEYS else grid.names.get(rate, rate)
    acc_ax.set(ylabel=f"final validation {ACC}", title=f"Validation accuracy vs {what}")
    gap_ax.set(ylabel=f"final {GAP_ACC}", title=f"Generalization gap vs {what}")
    gap_ax.axhline(0.0, **REFERENCE)
    for ax in (acc_ax, gap_ax):
        ax.set_xticks([where[r] for r in rates], [fmt_value(r) for r in rates])
        ax.set_xlabel(f"{what} ({rate})" + (", evenly spaced" if where[rates[-1]] != rates[-1] else ""))
    outside_legend(fig, *acc_ax.get_legend_handles_labels())
    caption = (
        f"Final validation accuracy (%) and final accuracy gap (pp) against {rate}; points are means over "
        "seeds, error bars ±1 std."
    )
    if rate in RATE_KEYS and groups["dropout"].eq("none").any():
        caption += f" dropout=none ignores {rate}, so its line is the no-dropout reference."
    return fig, caption


# ---------------------------------------------------------------------------- baseline bars


def vs_baseline(grid: Grid) -> Drawn:
    """Per group: difference to the baseline in test (else val) accuracy and in the gap."""
    groups = _with_results(grid)
    if len(groups) < 2:
        raise NotSupported("only one configuration group has results, so there is no baseline to compare with")
    has_test = groups["test.acc.mean"].notna().all()
    acc = "test.acc" if has_test else "final.val_acc"
    acc_name = "test accuracy" if has_test else "validation accuracy (no test metrics in the runs)"
    styles = group_styles(grid.groups)
    colours = [styles[g]["color"] for g in groups.index]
    is_base = groups.index == groups["baseline"]
    height = max(BAR_MIN_HEIGHT, BAR_HEIGHT_PER_GROUP * len(groups) + 1.2)
    fig = Figure(figsize=(10.0, height), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(groups))
    for ax, metric, what in ((axes[0], acc, acc_name), (axes[1], "final.gap_acc", "final accuracy gap")):
        value = groups[f"{metric}.mean"] * PCT
        # Each group against the baseline of its own dataset: the mean seed-paired difference and the
        # verdict's interval (report/stats.py: Bonferroni over the metric's comparisons); a baseline bar
        # is 0, a group without an interval (n = 1) has no bar.
        delta, low, high = (_vs_baseline(groups, metric, f) for f in ("diff", "ci_low", "ci_high"))
        delta = delta.where(~is_base, 0.0)
        xerr = np.vstack([(delta - low).fillna(0.0).clip(lower=0), (high - delta).fillna(0.0).clip(lower=0)])
        bars = ax.barh(
            y,
            delta.fillna(0.0),
            xerr=xerr,
            color=colours,
            height=BAR_FILL,
            error_kw={"capsize": CAPSIZE, "elinewidth": 1, "ecolor": NEUTRAL},
        )
        for bar, base in zip(bars, is_base, strict=True):
            bar.set_hatch("//" if base else "")
        # Values in a column right of the axes, where they cannot collide with bars or error bars.
        for yi, d, v, lo, hi, base in zip(y, delta, value, low, high, is_base, strict=True):
            ci = "no CI" if np.isnan(lo) else f"[{lo:+.1f}, {hi:+.1f}]"
            text = f"{v:.1f} (baseline)" if base else "—" if np.isnan(d) else f"{v:.1f} ({d:+.1f} {ci})"
            ax.annotate(
                text,
                (1.0, yi),
                xycoords=("axes fraction", "data"),
                xytext=LABEL_OFFSET,
                textcoords="offset points",
                va="center",
                ha="left",
                fontsize=ANNOTATION_SIZE,
            )
        ax.axvline(0.0, **REFERENCE)
        ax.margins(x=BAR_MARGIN)  # keep the zero line off the frame when all differences share a sign
        ax.set(xlabel=f"{what} − baseline (pp)", title=f"{what.split(' (')[0].capitalize()} vs baseline")
    axes[0].set_yticks(y, groups["label"].where(~is_base, groups["label"] + " (baseline)"))
    axes[0].invert_yaxis()  # first group on top, as in the tables
    caption = (
        f"Difference to the baseline group (hatched; {'; '.join(grid.groups.loc[groups['baseline'].unique(), 'label'])}"
        ")"
        f" in {acc_name.split(' (')[0]} and in the final train − val accuracy gap, in percentage points; the numbers "
        "right of each panel are the group's mean and its difference [the verdict's interval]; error bars are that "
        "interval of the seed-paired difference (Student t; Welch where seeds do not pair; none at n = 1) at "
        "1 − 0.05/m, Bonferroni over the m comparisons of that metric in the report, as the verdicts read it."
    )
    return fig, caption


# ---------------------------------------------------------------------------- heatmap


def _numeric_varied(grid: Grid) -> list[str]:
    def numeric(column: pd.Series) -> bool:
        return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)

    return [k for k in grid.varied if numeric(grid.runs[k])]


def heatmap(grid: Grid) -> Drawn:
    """Mean final val accuracy over two numeric varied keys; one panel per value of the other varied keys."""
    numeric = _numeric_varied(grid)
    if len(numeric) != 2:
        found = f" ({', '.join(numeric)})" if numeric else ""
        raise NotSupported(f"needs exactly two numeric config values that vary; found {len(numeric)}{found}")
    x_key = next((k for k in RATE_KEYS if k in numeric), numeric[1])
    y_key = next(k for k in numeric if k != x_key)
    facet_keys = [k for k in grid.varied if k not in numeric]
    groups = grid.groups
    facets = list(groups.groupby(facet_keys, sort=False, dropna=False)) if facet_keys else [((), groups)]
    if len(facets) > MAX_FACETS:
        raise NotSupported(f"{len(facets)} panels (one per {', '.join(facet_keys)}) exceed the limit of {MAX_FACETS}")
    xs, ys = sorted(groups[x_key].dropna().unique()), sorted(groups[y_key].dropna().unique())
    values = groups["final.val_acc.mean"] * PCT
    vmin, vmax = np.nanmin(values), np.nanmax(values)

    fig = Figure(figsize=(HEAT_PANEL[0] * len(facets) + 1.0, HEAT_PANEL[1]), layout="constrained")
    axes = fig.subplots(1, len(facets), squeeze=False).ravel()
    for ax, (_, part) in zip(axes, facets, strict=True):
        cells = part.pivot(index=y_key, columns=x_key, values=["final.val_acc.mean", "final.val_acc.std"])
        mean = cells["final.val_acc.mean"].reindex(index=ys, columns=xs).to_numpy(dtype=float) * PCT
        std = cells["final.val_acc.std"].reindex(index=ys, columns=xs).to_numpy(dtype=float) * PCT
        image = ax.imshow(mean, cmap="viridis", vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
        for (row, col), m in np.ndenumerate(mean):
            dark = not np.isnan(m) and image.norm(m) < DARK_CELL
            text = "—" if np.isnan(m) else f"{m:.1f}" + ("" if np.isnan(std[row, col]) else f"\n±{std[row, col]:.1f}")
            colour = "white" if dark else "black"
            ax.text(col, row, text, ha="center", va="center", fontsize=ANNOTATION_SIZE, color=colour)
        ax.set_xticks(range(len(xs)), [fmt_value(v) for v in xs])
        ax.set_yticks(range(len(ys)), [fmt_value(v) for v in ys])
        ax.set(xlabel=x_key, ylabel=y_key)
        if facet_keys:
            ax.set_title(make_label(part.iloc[0], {k: grid.names[k] for k in facet_keys}))
        ax.grid(False)
    colourbar = fig.colorbar(image, ax=list(axes), label=f"mean final validation {ACC}")
    colourbar.ax.yaxis.set_major_locator(MaxNLocator(5))
    caption = f"Mean final validation accuracy (%) over {y_key} × {x_key}, ± std over seeds in each cell" + (
        f"; one panel per {', '.join(facet_keys)}." if facet_keys else "."
    )
    return fig, caption
