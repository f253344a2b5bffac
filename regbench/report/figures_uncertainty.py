"""Calibration figure: reliability diagram plus an uncertainty summary, for runs with MC-dropout fields.

Seeds are pooled per reliability bin weighted by the bin counts (a bin's accuracy is
the fraction correct among all its examples), which is what one larger evaluation would
have measured; the scalar metrics are mean ± std over seeds like everywhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from regbench.report.style import (
    CAPSIZE,
    MARKER_SIZE,
    NEUTRAL,
    PCT,
    REFERENCE,
    Drawn,
    NotSupported,
    group_styles,
    outside_legend,
)

if TYPE_CHECKING:  # for annotations only: drawing needs the grid's tables, not its statistics (scipy)
    from regbench.report.grid import Grid

MAX_GROUPS = 8  # reliability curves beyond this overlap into noise
KIND_STYLE = {"MC dropout": "-", "deterministic": "--"}
KIND_PREFIX = {"MC dropout": "mc", "deterministic": "calibration"}
PANEL = (3.6, 3.4)
BAR_WIDTH = 0.38


def _pooled(bins: pd.DataFrame) -> pd.DataFrame:
    """Count-weighted confidence and accuracy per (group, kind, bin), pooled over seeds."""
    weighted = bins.assign(c=bins["confidence"] * bins["count"], a=bins["accuracy"] * bins["count"])
    sums = weighted.groupby(["group", "kind", "bin"])[["c", "a", "count"]].sum()
    nonempty = sums[sums["count"] > 0]
    return pd.DataFrame({"confidence": nonempty["c"], "accuracy": nonempty["a"]}).div(nonempty["count"], axis=0)


def _split(grid: Grid) -> str:
    """Report the test split when the runs measured it, else validation."""
    has_test = [c for c in grid.groups if c.startswith(("mc.test.", "calibration.test.")) and c.endswith(".mean")]
    return "test" if has_test and grid.groups[has_test].notna().any().any() else "val"


def _paired_bars(ax, groups: pd.DataFrame, columns: dict[str, str], styles: dict, scale: float) -> None:
    """Side-by-side horizontal bars per group, one bar per column (the second hatched)."""
    y = np.arange(len(groups))
    for i, (label, column) in enumerate(columns.items()):
        offset = (i - (len(columns) - 1) / 2) * BAR_WIDTH
        ax.barh(
            y + offset,
            groups[f"{column}.mean"] * scale,
            xerr=groups[f"{column}.std"].fillna(0.0) * scale,
            height=BAR_WIDTH,
            color=[styles[g]["color"] for g in groups.index],
            hatch="//" if i else "",
            edgecolor="white",
            capsize=CAPSIZE,
            label=label,
        )
    ax.set_yticks(y, groups["label"])


def _bar_key(columns: dict[str, str]) -> str:
    names = list(columns)
    return names[0] + (f" vs {names[1]} (//)" if len(names) > 1 else "")


def calibration(grid: Grid) -> Drawn:
    if grid.calibration.empty:
        raise NotSupported("no run has MC-dropout calibration bins (summary.json 'mc')")
    pooled = _pooled(grid.calibration)
    shown = grid.groups.index.intersection(pooled.index.unique("group"))[:MAX_GROUPS]
    groups = grid.groups.loc[shown]
    styles = group_styles(grid.groups)
    split = _split(grid)
    ece = {
        kind: f"{KIND_PREFIX[kind]}.{split}.ece"
        for kind in KIND_STYLE
        if f"{KIND_PREFIX[kind]}.{split}.ece.mean" in groups
    }
    spread = {
        name: f"mc.{split}.{key}"
        for name, key in (("entropy", "entropy"), ("mutual info", "mutual_info"))
        if f"mc.{split}.{key}.mean" in groups
    }
    panels = 1 + bool(ece) + bool(spread)
    fig = Figure(figsize=(PANEL[0] * panels + 1.5, PANEL[1]), layout="constrained")
    axes = list(fig.subplots(1, panels, squeeze=False).ravel())
    for ax in axes[2:]:  # bar panels share the group axis; labels once, first group on top
        ax.sharey(axes[1])

    reliability = axes.pop(0)
    reliability.plot([0, PCT], [0, PCT], linestyle=":", **REFERENCE)
    for (group, kind), curve in pooled.groupby(level=["group", "kind"]):
        if group in shown:
            reliability.plot(
                curve["confidence"] * PCT,
                curve["accuracy"] * PCT,
                marker="o",
                markersize=MARKER_SIZE / 2,
                color=styles[group]["color"],
                linestyle=KIND_STYLE.get(kind, "-"),
            )
    reliability.set(xlabel="confidence (%)", ylabel="accuracy (%)", title="Reliability (diagonal = calibrated)")
    group_handles = [Line2D([], [], color=styles[g]["color"], label=groups.at[g, "label"]) for g in shown]
    kind_handles = [
        Line2D([], [], color=NEUTRAL, linestyle=s, label=k)
        for k, s in KIND_STYLE.items()
        if k in pooled.index.unique("kind")
    ]
    if ece:
        ax = axes.pop(0)
        _paired_bars(ax, groups, ece, styles, PCT)
        ax.set(xlabel=f"expected calibration error, {split} (%)", title="ECE: " + _bar_key(ece))
    if spread:
        ax = axes.pop(0)
        _paired_bars(ax, groups, spread, styles, 1.0)
        ax.set(xlabel=f"MC-dropout uncertainty, {split} (nats)", title=_bar_key(spread))
        if ece:
            ax.tick_params(labelleft=False)
    if ece or spread:
        fig.axes[1].invert_yaxis()  # first group on top, as in the tables (shared by both bar panels)
    handles = group_handles + kind_handles
    outside_legend(fig, handles, [h.get_label() for h in handles])
    kinds = [k for k in KIND_STYLE if k in pooled.index.unique("kind")]
    styles_said = " and ".join(f"{k} {'solid' if KIND_STYLE[k] == '-' else 'dashed'}" for k in kinds)
    bin_splits = sorted(set(grid.calibration.get("split", pd.Series(dtype=str)).dropna())) or ["unrecorded"]
    caption = (
        f"Reliability diagram (bins from the {'/'.join(bin_splits)} split, pooled over seeds, weighted by count), "
        f"{styles_said}, with ECE" + (" and MC-dropout uncertainty" if spread else "")
        + f" on the {split} split (mean ± std over seeds)."
    )
    if "MC dropout" not in kinds:
        caption += " No run made MC-dropout passes (eval.mc_samples=0), so only deterministic curves are drawn."
    if len(shown) < pooled.index.unique("group").size:
        caption += f" Only the first {len(shown)} groups are drawn."
    return fig, caption
