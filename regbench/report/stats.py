"""Seed-paired statistics: how sure are we that a configuration differs from its baseline?

Pure functions, DataFrame in, DataFrame out (the report, `regbench compare` and the Python API
all call them). Runs with the same seed share their initialisation and data order, so two
configurations are compared on the per-seed *differences*:

- paired: the mean difference d̄ over the n shared seeds, its Student-t 95% interval
  d̄ ± t(0.975, n−1)·s_d/√n and the two-sided paired t-test (scipy.stats.ttest_rel and its
  confidence_interval);
- unpaired (fewer than 2 shared seeds, both sides with ≥ 2 runs): Welch's t-interval and test
  (scipy.stats.ttest_ind with equal_var=False, Welch–Satterthwaite df), said in the `test` column;
- n = 1 (or nothing to pair): the difference alone, no interval, said in words.

Holm's step-down correction runs over every p-value of one report (`holm`). The power numbers
use the exact noncentral t (scipy.stats.nct): the smallest |difference| a two-sided test
detects with 80% power given the observed spread (`mde`), and how many seeds would detect the
observed difference with 80% power (`seeds_needed`), both at the Bonferroni level α/m (m tests
in the family: Holm's strictest step), so they are consistent with the corrected verdict. `stays_best` resamples seeds
(bootstrap, seeded) and counts how often each group has the highest mean.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

ALPHA = 0.05  # two-sided significance level of every test and 1 − the interval's confidence
POWER = 0.8  # target power for the minimum detectable effect and the seeds needed
N_BOOT = 2000  # bootstrap resamples for `stays_best`
BOOT_SEED = 0  # the bootstrap's own generator: the same runs always give the same fraction
NC_MAX = 200.0  # search bracket for the noncentrality (df = 1 needs ~18 for 80% power at alpha = 0.05)
NC_MAX_SEARCH = 1e6  # widened up to this for tiny alpha / df = 1; beyond it the MDE is reported as inf
MAX_SEEDS = 100_000  # seeds_needed beyond this is reported as NaN ("more than MAX_SEEDS")
SAME_SPREAD = 1e-12  # differences whose sd is below this (relative) are "the same in every seed": no t
# Headline metrics compared against the baseline, with their direction (+1: higher is better).
METRICS: dict[str, int] = {
    "test.acc": +1,
    "final.val_acc": +1,
    "final.gap_acc": -1,  # train − val accuracy: a smaller gap is less overfitting
    "final.gap_loss": -1,
    "calibration.test.nll": -1,
    "calibration.test.ece": -1,
}
BETTER, WORSE, SAME, UNTESTABLE = "better", "worse", "no detectable difference", "not testable"
PAIRED, WELCH, NO_TEST = "paired t", "Welch t", "none"


# ---------------------------------------------------------------------------- power


def _power(nc: float, df: float, alpha: float = ALPHA) -> float:
    """Power of a two-sided t-test with `df` degrees of freedom at noncentrality `nc`."""
    crit = stats.t.ppf(1 - alpha / 2, df)
    # The far tail (wrong sign) is < 1e-8 wherever scipy's nct.cdf returns NaN for it (df = 1, nc ~ 15).
    far = float(np.nan_to_num(stats.nct.cdf(-crit, df, nc), nan=0.0))
    near = float(np.nan_to_num(stats.nct.sf(crit, df, nc), nan=1.0 if nc > crit else 0.0))
    return near + far


@functools.lru_cache(maxsize=1024)
def detectable_nc(df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Noncentrality at which the two-sided t-test reaches `power` (MDE = this × standard error).

    inf where even NC_MAX_SEARCH falls short (df = 1 at a Bonferroni level of a big family).
    """
    hi = NC_MAX
    while _power(hi, df, alpha) < power:
        if hi >= NC_MAX_SEARCH:
            return math.inf
        hi *= 4
    return float(optimize.brentq(lambda nc: _power(nc, df, alpha) - power, 0.0, hi))


def _smallest_n(reaches, lo: int = 2) -> int | None:
    """Smallest n >= lo with reaches(n) True (monotone in n); None beyond MAX_SEEDS."""
    hi = lo
    while not reaches(hi):
        if hi >= MAX_SEEDS:
            return None
        lo, hi = hi + 1, min(2 * hi, MAX_SEEDS)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid + 1, hi)
    return lo


def paired_seeds_needed(diff: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Seed pairs a paired t-test needs to detect `diff` at the observed sd of the differences."""
    if diff == 0 or not math.isfinite(diff) or not (sd > 0):
        return None
    return _smallest_n(lambda n: _power(abs(diff) / (sd / math.sqrt(n)), n - 1, alpha) >= power)


def welch_seeds_needed(diff: float, sd_a: float, sd_b: float, alpha: float = ALPHA,
                       power: float = POWER) -> int | None:
    """Seeds per side a Welch test needs to detect `diff` (equal n on both sides)."""
    var = sd_a**2 + sd_b**2
    if diff == 0 or not math.isfinite(diff) or not (var > 0):
        return None

    def reaches(n: int) -> bool:
        df = var**2 / ((sd_a**4 + sd_b**4) / (n - 1))  # Welch–Satterthwaite with n per side
        return _power(abs(diff) / math.sqrt(var / n), df, alpha) >= power

    return _smallest_n(reaches)


# ---------------------------------------------------------------------------- one comparison


def paired_t(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, ...]:
    """Paired t on the last axis: (mean difference a − b, interval low, high, two-sided p).

    Vectorised over leading axes ((..., n) in, (...) out), so a simulation can check the very
    numbers the report prints; the interval is scipy's own (TtestResult.confidence_interval).
    """
    res = stats.ttest_rel(a, b, axis=-1)
    ci = res.confidence_interval(1 - alpha)
    return np.mean(np.asarray(a) - np.asarray(b), axis=-1), ci.low, ci.high, res.pvalue


def welch_t(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, ...]:
    """Welch's unpaired t on the last axis: (mean(a) − mean(b), interval low, high, two-sided p, df)."""
    res = stats.ttest_ind(a, b, axis=-1, equal_var=False)
    ci = res.confidence_interval(1 - alpha)
    return np.mean(a, axis=-1) - np.mean(b, axis=-1), ci.low, ci.high, res.pvalue, res.df


def _per_seed(values: pd.Series) -> pd.Series:
    """One value per seed (the mean of reruns of the same seed), seeds without a value dropped."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    return values.groupby(level=0).mean()


def compare_values(values: pd.Series, baseline: pd.Series, alpha: float = ALPHA, power: float | None = POWER,
                   power_alpha: float | None = None) -> dict:
    """Compare one metric of a configuration with its baseline. Both Series are indexed by seed.

    Returns diff = mean(values) − mean(baseline) (paired: mean of per-seed differences), the
    (1 − alpha) interval, the two-sided p-value, the test used, n, the minimum detectable
    effect at `power`, the seeds needed for the observed diff, and a note in words.
    The power numbers are for a test at `power_alpha` (default: alpha); power=None skips them
    (NaN), since each costs a root search.
    """
    level = alpha if power_alpha is None else power_alpha
    a, b = _per_seed(values), _per_seed(baseline)
    shared = a.index.intersection(b.index)
    out: dict[str, Any] = {"n": len(shared), "n_a": len(a), "n_b": len(b), "mean": a.mean(), "mean_baseline": b.mean(),
                           "diff": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "test": NO_TEST,
                           "mde": np.nan, "seeds_needed": np.nan, "note": ""}
    if len(a) == 0 or len(b) == 0:
        out["note"] = "no values to compare"
        return out
    if len(shared) >= 2:
        x, y = a[shared].to_numpy(float), b[shared].to_numpy(float)  # (n,) each, the same seeds in order
        n, mean, sd = len(x), float(np.mean(x - y)), float(np.std(x - y, ddof=1))
        out.update(test=PAIRED, diff=mean)
        dropped = len(a) + len(b) - 2 * n
        note = [f"paired over {n} seeds"] + ([f"{dropped} unpaired run(s) left out"] if dropped else [])
        if sd <= SAME_SPREAD * max(1.0, abs(mean)):  # every seed differs by the same amount: t is undefined
            out.update(ci_low=mean, ci_high=mean, p=1.0 if mean == 0 else 0.0)
            note.append("identical in every seed" if mean == 0 else f"every seed differs by exactly {mean:.4g}")
        else:
            _, low, high, p = paired_t(x, y, alpha)
            out.update(ci_low=float(low), ci_high=float(high), p=float(p))
            if power is not None:
                se = sd / math.sqrt(n)
                out.update(mde=detectable_nc(n - 1, level, power) * se,
                           seeds_needed=paired_seeds_needed(mean, sd, level, power) or np.nan)
            if n == 2:
                note.append("n = 2: the interval rests on 1 degree of freedom, so it is very wide")
        out["note"] = "; ".join(note)
        return out
    out["diff"] = float(a.mean() - b.mean())
    if len(a) >= 2 and len(b) >= 2:
        sd_a, sd_b = float(a.std(ddof=1)), float(b.std(ddof=1))
        out["test"] = WELCH
        if sd_a + sd_b <= SAME_SPREAD * max(1.0, abs(out["diff"])):
            out.update(ci_low=out["diff"], ci_high=out["diff"], p=1.0 if out["diff"] == 0 else 0.0,
                       note="seeds do not pair: unpaired; no spread on either side")
            return out
        _, low, high, p, df = welch_t(a.to_numpy(float), b.to_numpy(float), alpha)
        out.update(ci_low=float(low), ci_high=float(high), p=float(p),
                   note=f"seeds do not pair: unpaired Welch test ({len(a)} vs {len(b)} runs)")
        if power is not None:
            se = math.sqrt(sd_a**2 / len(a) + sd_b**2 / len(b))
            out.update(mde=detectable_nc(float(df), level, power) * se,
                       seeds_needed=welch_seeds_needed(out["diff"], sd_a, sd_b, level, power) or np.nan)
        return out
    lone = "n = 1" if min(len(a), len(b)) == 1 else "too few runs"
    out["note"] = f"{lone}: no interval and no test (one seed cannot measure the spread between seeds)"
    return out


# ---------------------------------------------------------------------------- many comparisons


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaN entries stay NaN and do not count towards m).

    Written here because scipy.stats offers only Benjamini–Hochberg (false_discovery_control);
    Holm controls the family-wise error: sorted ascending, p_(i) × (m − i + 1), made monotone.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adjusted
    return out


def n_text(row: Mapping[str, Any]) -> str:
    """'3' for 3 seed pairs; '4 vs 3' for unpaired sides."""
    if row["test"] == WELCH or not row["n"]:
        return f"{row['n_a']} vs {row['n_b']}"
    return str(row["n"])


def verdict(row: Mapping[str, Any], direction: int, alpha: float = ALPHA) -> str:
    """better / worse / no detectable difference (n = …) / not testable, from the Holm-adjusted p."""
    n = n_text(row)
    if row["test"] == NO_TEST or pd.isna(row.get("p_holm")):
        return f"{UNTESTABLE} (n = {n})"
    if row["p_holm"] < alpha and row["diff"] != 0:
        return f"{BETTER if direction * row['diff'] > 0 else WORSE} (n = {n})"
    return f"{SAME} (n = {n})"


COLUMNS = ["test", "n", "n_a", "n_b", "mean", "mean_baseline", "diff", "ci_low", "ci_high", "p", "p_holm",
           "verdict", "mde", "seeds_needed", "note"]  # what compare_many adds to each row's keys


def compare_many(pairs: Sequence[tuple[dict, pd.Series, pd.Series, int]], alpha: float = ALPHA,
                 power: float = POWER) -> pd.DataFrame:
    """One family of comparisons: Holm over all of them, verdicts, power numbers at α/m.

    pairs: (keys, values, baseline, direction) per comparison; keys (e.g. group and metric) start
    the row, values / baseline are Series indexed by seed, direction is +1 where higher is better.
    The power numbers use the Bonferroni level α/m, Holm's strictest step, so a difference of
    `mde` (or one measured with `seeds_needed` seeds) would be called better / worse here.
    """
    rows = [{**keys, **compare_values(v, b, alpha, power=None)} for keys, v, b, _ in pairs]
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(rows)
    frame["p_holm"] = holm(frame["p"])
    frame["verdict"] = [verdict(r, d, alpha) for r, (*_, d) in zip(frame.to_dict("records"), pairs, strict=True)]
    m = max(1, int(frame["p"].notna().sum()))
    for i, (_, v, b, _) in enumerate(pairs):
        if not np.isnan(frame.at[i, "p"]):
            again = compare_values(v, b, alpha, power, power_alpha=alpha / m)
            frame.loc[i, ["mde", "seeds_needed"]] = again["mde"], again["seeds_needed"]
    return frame[[c for c in frame.columns if c not in COLUMNS] + COLUMNS]


def direction(metric: str) -> int:
    """+1 where higher is better; -1 for losses, calibration errors and gaps."""
    if metric in METRICS:
        return METRICS[metric]
    return -1 if any(word in metric for word in ("loss", "nll", "ece", "brier", "gap")) else +1


def paired_stats(runs: pd.DataFrame, baselines: Mapping[Any, Any], metrics: Sequence[str] | None = None,
                 group: str = "group", seed: str = "seed", alpha: float = ALPHA, power: float = POWER) -> pd.DataFrame:
    """Every group against its baseline, for every metric present: one row per (group, metric).

    runs: one row per run with columns `group`, `seed` and the metrics (pass only the runs that
    count: completed ones). baselines: group -> its baseline group (a baseline's own rows are
    left out). All rows are one family (`compare_many`): Holm over every p-value together.
    Columns: group, baseline, metric, then COLUMNS.
    """
    metrics = [m for m in (metrics or METRICS) if m in runs and runs[m].notna().any()]
    indexed = runs.set_index(seed)
    pairs = []
    for g, base in baselines.items():
        if g == base:
            continue
        mine, theirs = indexed[indexed[group] == g], indexed[indexed[group] == base]
        pairs += [({"group": g, "baseline": base, "metric": m}, mine[m], theirs[m], direction(m)) for m in metrics]
    frame = compare_many(pairs, alpha, power)
    return frame if len(frame) else pd.DataFrame(columns=["group", "baseline", "metric", *COLUMNS])


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
