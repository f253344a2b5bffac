"""What the report says, as a list of format-neutral blocks that render.py writes as Markdown and HTML.

Text may hold `code` and **bold** spans, which both formats understand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regbench.report import paired
from regbench.report.collect import Skipped
from regbench.report.commands import multirun_command, run_commands
from regbench.report.grid import Grid
from regbench.report.table import COMPLETED, fmt_value, sort_key

PCT = 100.0
# Fixed settings worth stating next to the varied ones, when they are the same for all runs.
HEADLINE_KEYS = (
    "dataset.name",
    "dataset.train_size",
    "model.name",
    "model.hidden",
    "model.channels",
    "model.batchnorm",
    "dropout.name",
    "dropout.p",
    "optim.name",
    "optim.lr",
    "optim.weight_decay",
    "augment.name",
    "reg.label_smoothing",
    "trainer.epochs",
    "trainer.batch_size",
)
# Settings that mean nothing for some models; shown only when the condition holds.
RELEVANT_WHEN = {"model.channels": ("model.name", "cnn"), "model.kernel_size": ("model.name", "cnn")}
MAX_COMMANDS = 200  # beyond this the per-run commands live in runs.csv only


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame


@dataclass(frozen=True)
class Image:
    path: Path
    title: str
    caption: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Fold:
    """Collapsed in HTML (long lists); plain in Markdown."""

    summary: str
    blocks: tuple[Any, ...]


Block = Heading | Text | Bullets | Table | Image | Code | Fold

FIGURE_TITLES = {
    "curves": "Learning curves",
    "gap": "Generalization gap",
    "rate_sweep": "Dropout rate sweep",
    "vs_baseline": "Against the baseline",
    "heatmap": "Heatmap of two varied values",
    "calibration": "Calibration and uncertainty",
}


def pm(groups: pd.DataFrame, metric: str, scale: float, digits: int) -> pd.Series:
    """'mean ± std' strings; a lone seed shows the mean only, no data shows a dash."""
    mean, std = groups[f"{metric}.mean"] * scale, groups[f"{metric}.std"] * scale
    text = mean.map(lambda m: "—" if np.isnan(m) else f"{m:.{digits}f}")
    return text.where(std.isna() | mean.isna(), text + std.map(lambda s: f" ± {s:.{digits}f}"))


def _time_digits(seconds: pd.Series) -> int:
    """Decimals that keep two significant digits of a typical run time (0.4 s must not read 0 ± 0)."""
    typical = seconds.median()
    return 0 if not np.isfinite(typical) or typical >= 10 else 1 if typical >= 1 else 2


def results_frame(grid: Grid) -> pd.DataFrame:
    g = grid.groups
    columns: dict[str, Any] = {grid.names[k]: g[k].map(fmt_value) for k in grid.varied} or {"group": g["label"]}
    columns["n"] = g["n"]
    columns["val acc (%)"] = pm(g, "final.val_acc", PCT, 1)
    if g["test.acc.mean"].notna().any():
        columns["test acc (%)"] = pm(g, "test.acc", PCT, 1)
    headline = paired.headline_metric(grid.runs)
    if f"{headline}.vs_baseline.diff" in g:
        name = "test acc" if headline == "test.acc" else "val acc"
        columns[f"Δ {name} vs baseline (pp) [verdict's interval]"] = [
            "" if g_ == b else paired_interval(g, g_, headline)
            for g_, b in zip(g.index, g["baseline"], strict=True)
        ]
        columns["verdict"] = g[f"{headline}.vs_baseline.verdict"].fillna("")
    if "test_final.acc.mean" in g and g["test_final.acc.mean"].notna().any() and not (
        grid.runs["protocol"].fillna("select=final").str.startswith("select=final").all()
    ):
        columns["test acc, final weights (%)"] = pm(g, "test_final.acc", PCT, 1)
    columns |= {
        "train acc (%)": pm(g, "final.train_acc", PCT, 1),
        "gap acc (pp)": pm(g, "final.gap_acc", PCT, 1),
        "gap loss (nats)": pm(g, "final.gap_loss", 1.0, 3),
        "best val acc (%)": pm(g, "best.val_acc", PCT, 1),
        "best epoch": pm(g, "best_epoch", 1.0, 1),
        "time (s)": pm(g, "seconds", 1.0, _time_digits(g["seconds.mean"])),
    }
    if not g["statuses"].eq(g["n_runs"].map(lambda n: f"{COMPLETED} {n}")).all():
        columns["runs"] = g["statuses"]
    best = _best_groups(grid)
    columns[""] = [  # a lone seed never crowns a winner
        " ".join(m for m, on in (("baseline", g_ == b), ("best" if n >= 2 else f"highest mean (n = {n})", g_ in best))
                 if on)
        for g_, b, n in zip(g.index, g["baseline"], g["n"], strict=True)
    ]
    return pd.DataFrame(columns).reset_index(drop=True)


def paired_interval(g: pd.DataFrame, group: Any, metric: str) -> str:
    """'+4.8 [+1.8, +7.7]' in pp for one group's headline difference to its baseline, with the interval its
    verdict reads (Bonferroni within the metric: content_compare shows the unadjusted 95% one next to it)."""
    diff, low, high = (g.at[group, f"{metric}.vs_baseline.{f}"] for f in ("diff", "ci_low", "ci_high"))
    if pd.isna(diff):
        return "—"
    text = f"{diff * PCT:+.1f}"
    return text + (" (no CI)" if pd.isna(low) else f" [{low * PCT:+.1f}, {high * PCT:+.1f}]")


def _best_groups(grid: Grid) -> list[Any]:
    """Highest mean final val accuracy, per dataset when datasets are mixed."""
    scored = grid.groups.dropna(subset=["final.val_acc.mean"])
    if scored.empty:
        return []
    if "dataset.name" in scored:
        return list(scored.groupby("dataset.name")["final.val_acc.mean"].idxmax())
    return [scored["final.val_acc.mean"].idxmax()]


def _describe(grid: Grid, group: Any) -> str:
    one = grid.groups.loc[[group]]
    test = "" if one["test.acc.mean"].isna().all() else f", test {pm(one, 'test.acc', PCT, 1).iloc[0]} %"
    return (
        f"**{one['label'].iloc[0]}**: validation accuracy {pm(one, 'final.val_acc', PCT, 1).iloc[0]} % "
        f"(n={one['n'].iloc[0]}){test}, gap {pm(one, 'final.gap_acc', PCT, 1).iloc[0]} pp"
    )


def grid_section(grid: Grid, skipped: list[Skipped]) -> list[Block]:
    runs = grid.runs
    def values(key: str) -> str:  # sorted as the groups are: numbers numerically, dropout types baseline first
        unique = runs[key].drop_duplicates()
        return ", ".join(fmt_value(v) for v in unique.iloc[sort_key(unique).argsort(kind="stable")])

    varied = [f"`{k}` ∈ {{{values(k)}}}" for k in grid.varied]
    constant = {
        k: runs[k].iloc[0] for k in HEADLINE_KEYS if k in runs and k not in grid.varied and runs[k].nunique() == 1
    }
    fixed = [
        f"{k}={fmt_value(v)}"
        for k, v in constant.items()
        if runs[k].notna().all()
        and (k not in RELEVANT_WHEN or constant.get(RELEVANT_WHEN[k][0]) == RELEVANT_WHEN[k][1])
    ]
    n = grid.groups.loc[grid.groups["n"] > 0, "n"]
    seeds = sorted(runs["seed"].dropna().unique())
    statuses = ", ".join(f"{s} {c}" for s, c in runs["status"].value_counts().items())
    items = [
        ("Varied: " + "; ".join(varied)) if varied else "No config value varies across the runs: one configuration.",
        f"{len(grid.groups)} configuration group(s) from {len(runs)} runs ({statuses}); "
        f"{len(skipped)} folder(s) skipped.",
        f"Seeds: {', '.join(fmt_value(s) for s in seeds) or 'none recorded'}; "
        + (f"n = {n.min()}–{n.max()} per group" if n.nunique() > 1 else f"n = {n.max() if len(n) else 0} per group")
        + " (completed runs; groups with none use their unfinished runs).",
    ]
    if fixed:
        items.append("Fixed: " + ", ".join(f"`{f}`" for f in fixed))
    items += paired.protocol_notes(runs, grid.comparisons)
    blocks: list[Block] = [Heading("Grid"), Bullets(tuple(items))]
    if grid.notes:
        blocks.append(Bullets(tuple(f"**Note:** {note}" for note in grid.notes)))
    return blocks


def best_section(grid: Grid) -> list[Block]:
    best = _best_groups(grid)
    if not best:
        return [Heading("Best configuration"), Text("No group has a validation accuracy yet.")]
    lines = [f"{_describe(grid, b)}; {paired.best_line(grid.groups, b)}" for b in best]
    baselines = [grid.groups.at[b, "baseline"] for b in best]
    lines += [f"Baseline {_describe(grid, b)}" for b in dict.fromkeys(baselines) if b not in best]
    return [
        Heading("Best configuration"),
        Text("Highest mean final-epoch validation accuracy (chosen on validation, not on test), and how often "
             "that group stays best when the seeds are resampled with replacement (bootstrap, paired across "
             "groups where they share seeds)."),
        Bullets(tuple(lines)),
    ]


def results_section(grid: Grid) -> list[Block]:
    return [
        Heading("Results"),
        Text(
            "Mean ± std over seeds (n = runs averaged); accuracies in %, gaps in percentage points (pp, train − "
            "validation accuracy), losses in nats, final epoch unless marked best. Click a header to sort. "
            "Per-group numbers: `groups.csv`; per run: `runs.csv`."
        ),
        Table(results_frame(grid)),
    ]


def figures_section(written: dict[str, tuple[Path, str]], skipped: dict[str, str]) -> list[Block]:
    blocks: list[Block] = [Heading("Figures")]
    for name, (path, caption) in written.items():
        base, _, panel = name.partition(":")  # "gap:mnist1d-cnn" when the report spans datasets / models
        title = FIGURE_TITLES.get(base, base) + (f" — {panel}" if panel else "")
        blocks += [Heading(title, 3), Image(path, title, caption)]
    if skipped:
        blocks += [Heading("Not drawn", 3), Bullets(tuple(f"`{name}`: {reason}" for name, reason in skipped.items()))]
    return blocks


def attention_section(grid: Grid, skipped: list[Skipped]) -> list[Block]:
    runs = grid.runs
    flagged = runs[runs["status"].ne(COMPLETED) | runs["issues"].astype(bool)]
    blocks: list[Block] = []
    if len(flagged):
        epochs = flagged["epochs_completed"].map(fmt_value) + "/" + flagged["epochs_planned"].map(fmt_value)
        detail = flagged["error"].fillna("").astype(str) + " " + flagged["issues"].fillna("").astype(str)
        frame = pd.DataFrame(
            {
                "run folder": flagged["path"],
                "status": flagged["status"],
                "epochs": epochs,
                "group": flagged["label"],
                "details": detail.str.strip(),
            }
        )
        blocks += [
            Heading("Runs that need attention"),
            Text(
                "Not completed, or read with a caveat. Diverged, failed and superseded runs are left out of means and "
                "curves; unfinished runs count only in groups with no completed run."
            ),
            Table(frame.reset_index(drop=True)),
        ]
    if skipped:
        frame = pd.DataFrame({"folder": [s.path for s in skipped], "reason": [s.reason for s in skipped]})
        blocks += [
            Heading("Skipped folders"),
            Text("These folders could not be read and are not in any table."),
            Table(frame),
        ]
    return blocks


def rerun_section(grid: Grid) -> list[Block]:
    command, note = multirun_command(grid)
    commands = run_commands(grid)
    blocks: list[Block] = [Heading("Rerun"), Text("The whole grid as one multirun:"), Code(command), Text(note)]
    if commands:
        shown = commands[:MAX_COMMANDS]
        more = f" (first {len(shown)}; all are in `runs.csv`)" if len(commands) > len(shown) else ""
        blocks.append(Fold(f"Exact command of each run: {len(commands)}{more}", (Code("\n".join(shown)),)))
    return blocks


def report_blocks(
    grid: Grid,
    skipped: list[Skipped],
    written: dict[str, tuple[Path, str]],
    figures_skipped: dict[str, str],
    inputs: list[str],
    comparison: list[Block] | tuple[Block, ...] = (),
) -> list[Block]:
    """The whole report; `comparison` (content_compare.comparison_section) follows the results table."""
    intro = Text(
        f"Runs read from {', '.join(f'`{p}`' for p in inputs)}: {len(grid.runs)} read, {len(skipped)} skipped."
    )
    return [
        Heading("regbench report", 1),
        intro,
        *grid_section(grid, skipped),
        *best_section(grid),
        *results_section(grid),
        *comparison,
        *figures_section(written, figures_skipped),
        *attention_section(grid, skipped),
        *rerun_section(grid),
    ]
