"""The report's "Against the baseline" section: paired differences with their 95% CI and the
verdict's (Bonferroni-adjusted) interval, p-values, the verdict in words, the power numbers and,
for a seed=auto sweep, how many seeds it used and why it stopped."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from regbench.report import paired, stats
from regbench.report.content import PCT, Bullets, Fold, Heading, Table, Text
from regbench.rules import verdicts
from regbench.rules.verdicts import DISPLAY, display  # noqa: F401 - the display units live with the verdicts


def interval_text(diff: float, low: float, high: float, scale: float, digits: int, unit: str = "") -> str:
    """'+4.8 pp [+1.8, +7.7]'; the difference alone where there is no interval (n = 1); '—' for nothing."""
    if pd.isna(diff):
        return "—"
    text = f"{diff * scale:+.{digits}f}" + (f" {unit}" if unit else "")
    if pd.isna(low) or pd.isna(high):
        return text + " (no CI)"
    return f"{text} [{low * scale:+.{digits}f}, {high * scale:+.{digits}f}]"


def bounds_text(low: float, high: float, scale: float, digits: int) -> str:
    """'[+1.8, +7.7]', or '—' without an interval."""
    if pd.isna(low) or pd.isna(high):
        return "—"
    return f"[{low * scale:+.{digits}f}, {high * scale:+.{digits}f}]"


def mde_text(mde: float, scale: float, unit: str, digits: int) -> str:
    """'±3.9 pp'; an accuracy difference beyond 100 pp cannot exist, so say that instead of the number."""
    if pd.isna(mde):
        return "—"
    if not math.isfinite(mde):
        return "none at these seeds (too few)"
    if scale == PCT and mde * scale > PCT:
        return "> 100 pp (far too few seeds)"
    return f"±{mde * scale:.{digits}f} {unit}".rstrip()


def p_text(p: float) -> str:
    if pd.isna(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def confidence(row: dict[str, Any]) -> str:
    """The verdict interval's confidence in words, e.g. '99.3%' (1 − 0.05/7)."""
    at = verdicts.level(int(row["family_m"]), int(row["looks"]))
    return f"{100 * (1 - at):.4g}%"


def comparison_frame(grid, comparisons: pd.DataFrame, with_power: bool = True) -> pd.DataFrame:
    """One display row per comparison in `comparisons` (rows of stats.paired_stats)."""
    labels = grid.groups["label"]
    rows = []
    for r in comparisons.to_dict("records"):
        name, scale, unit, digits = display(r["metric"])
        row = {
            "group": labels.get(r["group"], r["group"]),
            "metric": name,
            "difference [95% CI]": interval_text(r["diff"], r["ci95_low"], r["ci95_high"], scale, digits, unit),
            "verdict's interval": bounds_text(r["ci_low"], r["ci_high"], scale, digits)
            + ("" if pd.isna(r["ci_low"]) else f" ({confidence(r)})"),
            "test": f"{r['test']}, n = {stats.n_text(r)}",
            "p": p_text(r["p"]),
            "p adjusted": p_text(r["p_adj"]),
            "δ": verdicts.margin_text(r["metric"], r["margin"]) if pd.notna(r["margin"]) else "—",
            "verdict": r["verdict"] + (" — protocols differ" if r.get("mixed_protocol") else ""),
        }
        if with_power:
            row["detectable at 80% power"] = mde_text(r["mde"], scale, unit, digits)
        rows.append(row)
    return pd.DataFrame(rows)


def sequential_line(record) -> str:
    """'seed=auto: 12 seeds per cell (pilot 3, budget 20, 4 planned looks); stopped: all decided.'"""
    return (f"**seed=auto**: {record.seeds} seeds per cell (pilot {record.pilot}, budget {record.max_seeds}, "
            f"{record.looks_planned} planned looks: {record.method}); stopped: {record.reason or 'not finished'}.")


def comparison_section(grid) -> list:
    comps = grid.comparisons
    if comps is None or comps.empty:
        return []
    headline = paired.headline_metric(grid.runs)
    main = comps[comps["metric"] == headline]
    m = int(main["family_m"].max()) if len(main) else 0
    looks = int(main["looks"].max()) if len(main) else 1
    if not comps["p"].notna().any():
        return [
            Heading("Comparison with the baseline (seed-paired)"),
            Text("No comparison can be tested: every group or its baseline has a single seed (or none), so "
                 "the differences below have no interval and no p-value. Rerun with more seeds."),
            Table(comparison_frame(grid, main, with_power=False)),
        ]
    over_looks = f" and over the {looks} planned looks of this seed=auto sweep" if looks > 1 else ""
    blocks = [
        Heading("Comparison with the baseline (seed-paired)"),
        Text(
            f"Each group minus its baseline in {display(headline)[0]}, paired by seed (the same seed means the "
            "same initialisation and data order): the mean per-seed difference with its 95% Student-t interval "
            "and the two-sided paired t-test; Welch's unpaired test where the seeds do not pair. "
            f"Each metric is one family: {stats.ADJUST} over its comparisons (m = {m} for {display(headline)[0]})"
            f"{over_looks}, so the verdict reads the (1 − 0.05/{m * looks}) interval and p adjusted = "
            f"min(1, {m * looks}·p): the two agree. The last column is the smallest difference these seeds "
            "detect with 80% power at that level (noncentral t on the observed spread)."
        ),
        Text(verdicts.LEGEND),
    ]
    if grid.sequential is not None:
        blocks.append(Text(sequential_line(grid.sequential)))
    blocks.append(Table(comparison_frame(grid, main)))
    blocks.append(Bullets(tuple(_sentence(grid, r) for r in main.to_dict("records"))))
    others = comps[comps["metric"] != headline]
    if len(others):
        blocks.append(Fold(f"Every metric against the baseline ({len(others)} more comparisons; each metric its "
                           "own family)", (Table(comparison_frame(grid, others, with_power=False)),)))
    return blocks


def _sentence(grid, r: dict[str, Any]) -> str:
    """'**p=0.5** vs p=0, test acc: +4.8 pp [+1.8, +7.7] — better (n = 3) (paired t, p = 0.004, …).'"""
    labels = grid.groups["label"]
    name, scale, unit, digits = display(r["metric"])
    diff = interval_text(r["diff"], r["ci95_low"], r["ci95_high"], scale, digits, unit)
    group, base = labels.get(r["group"], r["group"]), labels.get(r["baseline"], r["baseline"])
    head = f"**{group}** vs {base}, {name}: {diff}"
    if r["test"] == stats.NO_TEST:
        return f"{head} — {r['note']}."
    detail = (f"{r['test']}, p = {p_text(r['p'])}, adjusted {p_text(r['p_adj'])}; "
              f"{confidence(r)} interval {bounds_text(r['ci_low'], r['ci_high'], scale, digits)}")
    extra = f"; {r['note']}" if "n = 2" in r["note"] or "left out" in r["note"] else ""
    if (r["ci95_low"] > 0 or r["ci95_high"] < 0) and r["decision"] not in (verdicts.BETTER, verdicts.WORSE):
        extra += f"; the unadjusted 95% CI excludes 0, the {confidence(r)} one does not"
    mixed = "; **the two use different evaluation protocols**" if r.get("mixed_protocol") else ""
    power = "" if pd.isna(r["mde"]) or not math.isfinite(r["mde"]) else \
        f"; these seeds detect {mde_text(r['mde'], scale, unit, digits)} with 80% power"
    return f"{head} — {r['verdict']} ({detail}{power}{extra}{mixed})."
