"""The report's comparisons: every group against its baseline on seed-paired differences.

Glue between the run table / group table (grid.py) and the statistics kernel (stats.py):
which runs count, which metric is the headline, which group is best and how often it stays
best (`stays_best`: seeds resampled, bootstrap, seeded), and whether two compared groups used the
same evaluation protocol.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from regbench.report import stats
from regbench.rules import verdicts

RANKING = "final.val_acc"  # the best configuration is chosen on validation, never on test
HEADLINE_ORDER = ("test.acc", "final.val_acc")  # the metric a group's verdict is about: test if the runs have it
# groups.csv: <metric>.vs_baseline.<field>
PER_METRIC = ("diff", "ci_low", "ci_high", "ci95_low", "ci95_high", "p", "p_adj", "family_m", "margin", "decision",
              "verdict")
HEADLINE_EXTRA = ("test", "n", "mde", "seeds_to_decide", "note")  # groups.csv: vs_baseline.<field> (headline only)
MARGIN_KEY = "margin"  # the config key (regbench/rules/config.py) a sweep's runs carry their report's margins in
N_BOOT = 2000  # bootstrap resamples for `stays_best`
BOOT_SEED = 0  # the bootstrap's own generator: the same runs always give the same fraction


def headline_metric(runs: pd.DataFrame) -> str:
    """test.acc when the runs scored a test split, else the final validation accuracy."""
    for metric in HEADLINE_ORDER:
        if metric in runs and runs[metric].notna().any():
            return metric
    return HEADLINE_ORDER[-1]


def counted(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs the group means use (completed; unfinished ones only where a group has nothing better)."""
    return runs[runs["aggregated"]] if "aggregated" in runs else runs


def margins(runs: pd.DataFrame, text: str | None = None) -> dict[str, float]:
    """The margins δ a report uses where they are not the defaults: `text` (--margin), else the
    runs' own `margin` config key when they all share one (a sweep's config), else none.
    A bare number is the headline metric's. Raises ConfigError for a bad --margin."""
    if text is None and MARGIN_KEY in runs:
        values = set(runs[MARGIN_KEY].dropna().astype(str))
        text = values.pop() if len(values) == 1 else None
    return verdicts.parse_margins(text, stats.METRICS, headline_metric(runs))


def compare_groups(runs: pd.DataFrame, groups: pd.DataFrame, margins: dict[str, float] | None = None,
                   looks: int = 1) -> pd.DataFrame:
    """stats.paired_stats over every group vs its baseline; adds each side's protocol and a flag
    where they differ (their test numbers were then taken from differently selected weights).
    margins: metric -> δ (else verdicts.MARGINS); looks: the planned looks of a seed=auto sweep."""
    frame = stats.paired_stats(counted(runs), groups["baseline"].to_dict(), margins=margins, looks=looks)
    protocols = runs.groupby("group")["protocol"].agg(lambda p: "; ".join(sorted(set(p.dropna()))))
    frame["protocol"] = frame["group"].map(protocols)
    frame["protocol_baseline"] = frame["baseline"].map(protocols)
    frame["mixed_protocol"] = frame["protocol"] != frame["protocol_baseline"]
    return frame


def with_comparisons(groups: pd.DataFrame, comparisons: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """groups plus `<metric>.vs_baseline.<field>` columns, the headline's extras and `stays_best`."""
    out = groups.copy()
    for metric, part in comparisons.groupby("metric", sort=False):
        part = part.set_index("group")
        for f in PER_METRIC:
            out[f"{metric}.vs_baseline.{f}"] = part[f].reindex(out.index)
    headline = comparisons[comparisons["metric"] == headline_metric(runs)].set_index("group")
    for f in HEADLINE_EXTRA:
        out[f"vs_baseline.{f}"] = headline[f].reindex(out.index) if f in headline else pd.NA
    out["vs_baseline.mixed_protocol"] = headline["mixed_protocol"].reindex(out.index) if len(headline) else False
    out["stays_best"] = best_fractions(runs, groups).reindex(out.index)
    return out


def best_fractions(runs: pd.DataFrame, groups: pd.DataFrame) -> pd.Series:
    """How often each group has the best mean RANKING metric when the seeds are resampled,
    per dataset (runs of different datasets never compete)."""
    used = counted(runs).dropna(subset=[RANKING])
    if used.empty:
        return pd.Series(dtype=float)
    if "dataset.name" not in used:
        return stays_best(used, RANKING)
    parts = [stays_best(part, RANKING) for _, part in used.groupby("dataset.name", dropna=False)]
    return pd.concat(parts) if parts else pd.Series(dtype=float)


def stays_best(runs: pd.DataFrame, metric: str, group: str = "group", seed: str = "seed", n_boot: int = N_BOOT,
               rng_seed: int = BOOT_SEED, higher_is_better: bool = True) -> pd.Series:
    """Fraction of bootstrap resamples of the seeds in which each group has the best mean `metric`.

    Seeds shared by every group are resampled jointly (the same seeds for all groups, keeping
    the pairing); otherwise each group's runs are resampled on their own. numpy, not
    scipy.stats.bootstrap: that returns intervals of a statistic, not an arg-max frequency.
    Groups with a single value get NaN: one seed cannot say whether a winner stays a winner. Groups
    tied for the best mean in a resample share that resample's win.
    """
    wide = runs.pivot_table(index=seed, columns=group, values=metric, aggfunc="mean")  # (seeds, groups)
    if wide.empty:
        return pd.Series(dtype=float)
    rng = np.random.default_rng(rng_seed)
    sign = 1.0 if higher_is_better else -1.0
    complete = wide.dropna()
    if len(complete) >= 2:
        x = complete.to_numpy() * sign  # (S, G)
        picks = rng.integers(0, len(x), size=(n_boot, len(x)))  # (B, S) seed indices, shared by all groups
        means = x[picks].mean(axis=1)  # (B, G)
    else:
        columns = [wide[c].dropna().to_numpy() * sign for c in wide]
        means = np.stack([c[rng.integers(0, len(c), size=(n_boot, len(c)))].mean(axis=1) for c in columns], axis=1)
    top = np.isclose(means, means.max(axis=1, keepdims=True), rtol=0, atol=1e-12)  # (B, G): ties share the win
    wins = (top / top.sum(axis=1, keepdims=True)).mean(axis=0)
    counts = wide.notna().sum()
    return pd.Series(wins, index=wide.columns, name="stays_best").where(counts.to_numpy() >= 2)


def best_line(groups: pd.DataFrame, group: Any) -> str:
    """'stays best in 87% of 2000 bootstrap resamples of the seeds' — or why no such claim is made."""
    n = groups.at[group, "n"]
    fraction = groups.at[group, "stays_best"] if "stays_best" in groups else float("nan")
    if n < 2 or pd.isna(fraction):
        return (f"the highest mean only — n = {n}: one seed cannot tell a winner from noise, so it is not "
                "called best; rerun with more seeds")
    return (f"stays best in {fraction:.0%} of {N_BOOT} bootstrap resamples of the seeds "
            f"(n = {n})" + ("" if fraction >= 0.95 else ": not a clear winner"))


def protocol_notes(runs: pd.DataFrame, comparisons: pd.DataFrame) -> list[str]:
    """The protocol in words, and a warning where comparisons mix protocols."""
    labels = sorted(set(runs["protocol"].dropna())) if "protocol" in runs else []
    notes = []
    if len(labels) == 1:
        notes.append(f"Evaluation protocol: the test split is scored with {describe(labels[0])} (`{labels[0]}`).")
    elif labels:
        mixed = comparisons.loc[comparisons["mixed_protocol"], "group"].nunique() if len(comparisons) else 0
        notes.append(f"**Runs mix evaluation protocols** ({'; '.join(f'`{p}`' for p in labels)}): "
                     f"{mixed} comparison(s) with the baseline mix them and are marked; their test numbers "
                     "come from differently selected weights.")
    return notes


def describe(label: str) -> str:
    """`select=val_loss, …` -> 'the weights of the lowest-validation-loss epoch', etc."""
    select = label.split(",")[0].removeprefix("select=")
    words = {"final": "the final weights (last epoch trained)",
             "val_loss": "the weights of the epoch with the lowest validation loss",
             "val_acc": "the weights of the epoch with the highest validation accuracy"}
    return words.get(select, f"weights chosen by {select}")
