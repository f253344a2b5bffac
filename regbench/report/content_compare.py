"""The report's "Against the baseline" section: paired differences with their 95% CI, p-values
(raw and Holm-adjusted over the whole report), the verdict in words and the power numbers."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from regbench.report import paired, stats
from regbench.report.content import PCT, Bullets, Fold, Heading, Table, Text

# How each compared metric is shown: (name, scale to display units, unit, digits).
DISPLAY = {
    "test.acc": ("test acc", PCT, "pp", 1),
    "final.val_acc": ("val acc", PCT, "pp", 1),
    "final.gap_acc": ("gap acc", PCT, "pp", 1),
    "final.gap_loss": ("gap loss", 1.0, "nats", 3),
    "calibration.test.nll": ("test NLL", 1.0, "nats", 3),
    "calibration.test.ece": ("test ECE", PCT, "pp", 1),
}


def display(metric: str) -> tuple[str, float, str, int]:
    return DISPLAY.get(metric, (metric, 1.0, "", 3))


def interval_text(diff: float, low: float, high: float, scale: float, digits: int, unit: str = "") -> str:
    """'+4.8 pp [+1.8, +7.7]'; the difference alone where there is no interval (n = 1); '—' for nothing."""
    if pd.isna(diff):
        return "—"
    text = f"{diff * scale:+.{digits}f}" + (f" {unit}" if unit else "")
    if pd.isna(low) or pd.isna(high):
        return text + " (no CI)"
    return f"{text} [{low * scale:+.{digits}f}, {high * scale:+.{digits}f}]"


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


def _seeds_text(row: dict[str, Any]) -> str:
    """Seeds that would detect the observed difference with 80% power, in words where there is no number."""
    if row["test"] == stats.NO_TEST or pd.isna(row["mde"]):
        return "—"
    if row["diff"] == 0:
        return "never (no difference)"
    if pd.isna(row["seeds_needed"]):
        return f"> {stats.MAX_SEEDS}"
    return str(int(row["seeds_needed"])) + (" per side" if row["test"] == stats.WELCH else "")


def comparison_frame(grid, comparisons: pd.DataFrame, with_power: bool = True) -> pd.DataFrame:
    """One display row per comparison in `comparisons` (rows of stats.paired_stats)."""
    labels = grid.groups["label"]
    rows = []
    for r in comparisons.to_dict("records"):
        name, scale, unit, digits = display(r["metric"])
        row = {
            "group": labels.get(r["group"], r["group"]),
            "metric": name,
            "difference [95% CI]": interval_text(r["diff"], r["ci_low"], r["ci_high"], scale, digits, unit),
            "test": f"{r['test']}, n = {stats.n_text(r)}",
            "p": p_text(r["p"]),
            "p (Holm)": p_text(r["p_holm"]),
            "verdict": r["verdict"] + (" — protocols differ" if r.get("mixed_protocol") else ""),
        }
        if with_power:
            mde = r["mde"]
            row["detectable at 80% power"] = mde_text(mde, scale, unit, digits)
            row["seeds to detect this difference"] = _seeds_text(r)
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_section(grid) -> list:
    comps = grid.comparisons
    if comps is None or comps.empty:
        return []
    headline = paired.headline_metric(grid.runs)
    m = int(comps["p"].notna().sum())
    main = comps[comps["metric"] == headline]
    if m == 0:
        return [
            Heading("Comparison with the baseline (seed-paired)"),
            Text("No comparison can be tested: every group or its baseline has a single seed (or none), so "
                 "the differences below have no interval and no p-value. Rerun with more seeds."),
            Table(comparison_frame(grid, main, with_power=False)),
        ]
    blocks = [
        Heading("Comparison with the baseline (seed-paired)"),
        Text(
            f"Each group minus its baseline in {display(headline)[0]}, paired by seed (the same seed means the "
            "same initialisation and data order): the mean per-seed difference with its 95% Student-t interval "
            "and the two-sided paired t-test; Welch's unpaired test where the seeds do not pair. "
            f"p (Holm) is adjusted over all {m} tests in this report, and the verdict reads it at α = 0.05: "
            "**better** / **worse**, or **no detectable difference** — which is not evidence of no effect: "
            f"the next column is the smallest difference these seeds detect with 80% power at α/m = 0.05/{m} "
            "(Holm's strictest step: noncentral t on the observed spread), and the last is how many seeds "
            "would detect the observed difference at that level."
        ),
        Table(comparison_frame(grid, main)),
    ]
    words = [_sentence(grid, r) for r in main.to_dict("records")]
    blocks.append(Bullets(tuple(words)))
    others = comps[comps["metric"] != headline]
    if len(others):
        blocks.append(Fold(f"Every metric against the baseline ({len(others)} more comparisons)",
                           (Table(comparison_frame(grid, others, with_power=False)),)))
    return blocks


def _sentence(grid, r: dict[str, Any]) -> str:
    """'**p=0.5**: better than p=0 by +4.8 pp [+1.8, +7.7] in test acc (paired t, n = 3, p = 0.012, Holm 0.036).'"""
    labels = grid.groups["label"]
    name, scale, unit, digits = display(r["metric"])
    diff = interval_text(r["diff"], r["ci_low"], r["ci_high"], scale, digits, unit)
    group, base = labels.get(r["group"], r["group"]), labels.get(r["baseline"], r["baseline"])
    head = f"**{group}** vs {base}, {name}: {diff}"
    if r["test"] == stats.NO_TEST:
        return f"{head} — {r['note']}."
    detail = f"{r['test']}, p = {p_text(r['p'])}, Holm {p_text(r['p_holm'])}"
    extra = f"; {r['note']}" if "n = 2" in r["note"] or "left out" in r["note"] else ""
    if r["ci_low"] > 0 or r["ci_high"] < 0:
        if not (r["p_holm"] < stats.ALPHA):
            extra += "; the uncorrected 95% CI excludes 0, but the difference does not survive Holm's correction"
    mixed = "; **the two use different evaluation protocols**" if r.get("mixed_protocol") else ""
    power = "" if pd.isna(r["mde"]) or not math.isfinite(r["mde"]) else \
        f"; these seeds detect {mde_text(r['mde'], scale, unit, digits)} with 80% power"
    return f"{head} — {r['verdict']} ({detail}{power}{extra}{mixed})."
