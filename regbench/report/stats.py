"""Seed-paired statistics: how sure are we that a configuration differs from its baseline?

Pure functions, DataFrame in, DataFrame out (the report, `regbench compare`, the Python API and
the `seed=auto` sweeper all call them). Runs with the same seed share their initialisation and
data order, so two configurations are compared on the per-seed *differences*:

- paired: the mean difference d̄ over the n shared seeds, its Student-t interval
  d̄ ± t(1 − level/2, n−1)·s_d/√n and the two-sided paired t-test (the numbers of scipy.stats.ttest_rel
  and its confidence_interval); TOST against ±δ as two one-sided tests (ttest_1samp's `alternative=`);
- unpaired (fewer than 2 shared seeds, both sides with ≥ 2 runs): Welch's t-interval and test
  (scipy.stats.ttest_ind with equal_var=False, Welch–Satterthwaite df), said in the `test` column;

The tests are written here on scipy.special's Student and noncentral t functions (stdtr, stdtrit,
nctdtr), the very functions scipy.stats' t-tests and `nct` call: importing scipy.stats takes ~1 s,
more than all the statistics of a 32-run report, and a report's figures wait for them.
tests/test_verdicts.py and tests/test_stats.py check every number against scipy.stats.
- n = 1 (or nothing to pair): the difference alone, no interval, said in words.

Multiple comparisons: each metric of one report is one family of m comparisons, adjusted by
Bonferroni (and over the K planned looks of a seed=auto sweep): the verdict's interval is the
(1 − α/(m·K)) interval and p_adj = min(1, m·K·p), so they agree by construction; the
unadjusted 95% interval is kept too (ci95_low/high). The verdict words are report/verdicts.py's.
The power numbers use the exact noncentral t (scipy.special.nctdtr): the smallest |difference| a
two-sided test at the verdict's level detects with 80% power given the observed spread (`mde`).
`stays_best` resamples seeds (bootstrap, seeded) and counts how often each group has the
highest mean.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from regbench.rules.verdicts import ALPHA, METRICS, UNDECIDED, UNTESTABLE, decide, level, margin_for, words

POWER = 0.8  # target power for the minimum detectable effect and the seeds needed
N_BOOT = 2000  # bootstrap resamples for `stays_best`
BOOT_SEED = 0  # the bootstrap's own generator: the same runs always give the same fraction
NC_MAX = 200.0  # search bracket for the noncentrality (df = 1 needs ~18 for 80% power at alpha = 0.05)
NC_MAX_SEARCH = 1e6  # widened up to this for tiny alpha / df = 1; beyond it the MDE is reported as inf
MAX_SEEDS = 100_000  # seeds_to_decide beyond this is reported as NaN ("more than MAX_SEEDS")
SAME_SPREAD = 1e-12  # differences whose sd is below this (relative) are "the same in every seed": no t
PAIRED, WELCH, NO_TEST = "paired t", "Welch t", "none"


# ---------------------------------------------------------------------------- power


def _power(nc: float, df: float, alpha: float = ALPHA) -> float:
    """Power of a two-sided t-test with `df` degrees of freedom at noncentrality `nc`."""
    crit = t_quantile(1 - alpha / 2, df)
    # The far tail (wrong sign) is < 1e-8 wherever the noncentral t's cdf returns NaN for it (df = 1, nc ~ 15).
    far = float(np.nan_to_num(special.nctdtr(df, nc, -crit), nan=0.0))
    near = float(np.nan_to_num(1.0 - special.nctdtr(df, nc, crit), nan=1.0 if nc > crit else 0.0))
    return near + far


NC_TOLERANCE = 1e-12  # relative: the bisection of detectable_nc stops at this width (scipy's brentq: 2e-12 abs)


@functools.lru_cache(maxsize=1024)
def detectable_nc(df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Noncentrality at which the two-sided t-test reaches `power` (MDE = this × standard error).

    inf where even NC_MAX_SEARCH falls short (df = 1 at a Bonferroni level of a big family). Found by
    bisection (power rises with nc), written here: scipy.optimize's root finders cost its ~0.3 s import.
    """
    lo, hi = 0.0, NC_MAX
    while _power(hi, df, alpha) < power:
        if hi >= NC_MAX_SEARCH:
            return math.inf
        lo, hi = hi, hi * 4
    while hi - lo > NC_TOLERANCE * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _power(mid, df, alpha) < power else (lo, mid)
    return (lo + hi) / 2


@functools.lru_cache(maxsize=4096)
def t_quantile(q: float, df: float) -> float:
    """Student's t quantile (scipy.stats.t.ppf's own function), cached: every comparison of a family
    searches the same seed counts at the same level (seeds_to_decide)."""
    return float(special.stdtrit(df, q))


def t_test(estimate, se, df, null=0.0, alternative: str = "two-sided"):
    """The p-value of t = (estimate − null) / se on df degrees of freedom, as scipy.stats' t-tests give
    it (elementwise on arrays; se = 0 gives t = ±inf or NaN, as there)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.divide(np.subtract(estimate, null), se)
    if alternative == "less":
        return special.stdtr(df, t)
    if alternative == "greater":
        return special.stdtr(df, -t)
    return 2 * special.stdtr(df, -np.abs(t))


def t_interval(estimate, se, df, alpha: float = ALPHA):
    """(low, high): the two-sided (1 − alpha) Student-t interval, as TtestResult.confidence_interval forms it."""
    tail = (1 - (1 - alpha)) / 2
    return special.stdtrit(df, tail) * se + estimate, special.stdtrit(df, 1 - tail) * se + estimate


def welch_se_df(a, b) -> tuple:
    """Standard error of mean(a) − mean(b) and its Welch–Satterthwaite df, on the last axis (scipy's
    formula: df = 1 where both variances are 0, so that t = ±inf or NaN decides, not df)."""
    vn1 = np.var(a, axis=-1, ddof=1) / np.shape(a)[-1]
    vn2 = np.var(b, axis=-1, ddof=1) / np.shape(b)[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (vn1 + vn2) ** 2 / (vn1**2 / (np.shape(a)[-1] - 1) + vn2**2 / (np.shape(b)[-1] - 1))
    return np.sqrt(vn1 + vn2), np.where(np.isnan(df), 1.0, df)


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


# ---------------------------------------------------------------------------- one comparison


def paired_t(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, ...]:
    """Paired t on the last axis: (mean difference a − b, interval low, high, two-sided p).

    Vectorised over leading axes ((..., n) in, (...) out), so a simulation can check the very
    numbers the report prints (compare_values forms them with the same t_test / t_interval).
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = d.shape[-1]
    diff, se = d.mean(axis=-1), np.sqrt(np.var(d, axis=-1, ddof=1) / n)
    low, high = t_interval(diff, se, n - 1, alpha)
    return diff, low, high, t_test(diff, se, n - 1)


def welch_t(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, ...]:
    """Welch's unpaired t on the last axis: (mean(a) − mean(b), interval low, high, two-sided p, df)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = np.mean(a, axis=-1) - np.mean(b, axis=-1)
    se, df = welch_se_df(a, b)
    low, high = t_interval(diff, se, df, alpha)
    return diff, low, high, t_test(diff, se, df), df


def _per_seed(values: pd.Series) -> pd.Series:
    """One value per seed (the mean of reruns of the same seed), seeds without a value dropped."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.index.is_unique:  # one run per seed, the common case: what the groupby would return, faster
        return values.sort_index()
    return values.groupby(level=0).mean()


def _sides(values: pd.Series, baseline: pd.Series) -> tuple[pd.Series, pd.Series, pd.Index, str]:
    """Per-seed values of each side, their shared seeds and the test they allow."""
    a, b = _per_seed(values), _per_seed(baseline)
    shared = a.index.intersection(b.index)
    test = PAIRED if len(shared) >= 2 else WELCH if len(a) >= 2 and len(b) >= 2 else NO_TEST
    return a, b, shared, test


def seeds_to_decide(diff: float, half_width, margin: float) -> int | None:
    """Smallest n at which an interval around the *observed* mean, with the observed spread, decides:
    its half width drops below |diff| (the mean would be detected) or |diff| + half width drops
    below δ (the interval would fit inside ±δ), whichever comes first. A plug-in number, not a
    power calculation: with the true difference equal to the observed one, about half of the
    repeats at that n would decide. None beyond MAX_SEEDS (or never: diff = 0 and no margin)."""
    if not math.isfinite(diff):
        return None
    return _smallest_n(lambda n: half_width(n) < abs(diff) or abs(diff) + half_width(n) < margin)


def compare_values(values: pd.Series, baseline: pd.Series, level: float = ALPHA, margin: float = math.nan,
                   sign: int = +1, power: float | None = POWER) -> dict:
    """Compare one metric of a configuration with its baseline. Both Series are indexed by seed.

    Returns diff = mean(values) − mean(baseline) (paired: mean of per-seed differences), the
    unadjusted 95% interval (ci95_low/high), the verdict's (1 − level) interval (ci_low/high),
    the two-sided p-value, the TOST p-value against ±margin (the larger of the two one-sided
    p-values), the test used, n, the decision (verdicts.decide), the seeds that would decide an
    undecided one, the minimum detectable effect at `power` (at `level`; power=None: NaN) and a
    note in words. sign: +1 where higher is better.
    """
    a, b, shared, test = _sides(values, baseline)
    out: dict[str, Any] = {"n": len(shared), "n_a": len(a), "n_b": len(b), "mean": a.mean(), "mean_baseline": b.mean(),
                           "diff": np.nan, "ci95_low": np.nan, "ci95_high": np.nan, "ci_low": np.nan,
                           "ci_high": np.nan, "p": np.nan, "p_tost": np.nan, "test": test, "decision": UNTESTABLE,
                           "mde": np.nan, "seeds_to_decide": np.nan, "note": ""}
    if len(a) == 0 or len(b) == 0:
        out["note"] = "no values to compare"
        return out
    if test == NO_TEST:
        out["diff"] = float(a.mean() - b.mean())
        lone = "n = 1" if min(len(a), len(b)) == 1 else "too few runs"
        out["note"] = f"{lone}: no interval and no test (one seed cannot measure the spread between seeds)"
        return out
    if test == PAIRED:
        x, y = a[shared].to_numpy(float), b[shared].to_numpy(float)  # (n,) each, the same seeds in order
        n, diff, sd = len(x), float(np.mean(x - y)), float(np.std(x - y, ddof=1))
        dropped = len(a) + len(b) - 2 * n
        note = [f"paired over {n} seeds"] + ([f"{dropped} unpaired run(s) left out"] if dropped else [])
        same = sd <= SAME_SPREAD * max(1.0, abs(diff))  # every seed differs by the same amount: t is undefined
        if not same:
            df, se = n - 1, math.sqrt(float(np.var(x - y, ddof=1)) / n)
            if n == 2:
                note.append("n = 2: the interval rests on 1 degree of freedom, so it is very wide")

            def half_width(k: int) -> float:
                return t_quantile(1 - level / 2, k - 1) * sd / math.sqrt(k)
        else:
            note.append("identical in every seed" if diff == 0 else f"every seed differs by exactly {diff:.4g}")
    else:
        sd_a, sd_b = float(a.std(ddof=1)), float(b.std(ddof=1))
        diff = float(a.mean() - b.mean())
        note = [f"seeds do not pair: unpaired Welch test ({len(a)} vs {len(b)} runs)"]
        same = sd_a + sd_b <= SAME_SPREAD * max(1.0, abs(diff))
        if not same:
            se, df = (float(v) for v in welch_se_df(a.to_numpy(float), b.to_numpy(float)))
            var = sd_a**2 + sd_b**2

            def half_width(k: int) -> float:  # k seeds per side, Welch–Satterthwaite df at equal n
                dfk = var**2 / ((sd_a**4 + sd_b**4) / (k - 1))
                return t_quantile(1 - level / 2, dfk) * math.sqrt(var / k)
        else:
            note.append("no spread on either side")
    out["diff"] = diff
    if same:  # an exact difference: the interval is the point, p says whether it is 0
        out.update(ci95_low=diff, ci95_high=diff, ci_low=diff, ci_high=diff, p=1.0 if diff == 0 else 0.0,
                   p_tost=0.0 if abs(diff) < margin or diff == 0 else 1.0 if math.isfinite(margin) else np.nan)
    else:
        (ci95_low, ci95_high), (ci_low, ci_high) = t_interval(diff, se, df, ALPHA), t_interval(diff, se, df, level)
        # TOST: H0 diff >= δ against "less", H0 diff <= −δ against "greater"; the larger p decides
        upper, lower = t_test(diff, se, df, margin, "less"), t_test(diff, se, df, -margin, "greater")
        out.update(ci95_low=float(ci95_low), ci95_high=float(ci95_high), ci_low=float(ci_low),
                   ci_high=float(ci_high), p=float(t_test(diff, se, df)), p_tost=float(max(upper, lower)))
        if power is not None:
            out["mde"] = detectable_nc(df, level, power) * se
    out["decision"] = str(decide(out["ci_low"], out["ci_high"], margin, sign))
    if out["decision"] == UNDECIDED:
        out["seeds_to_decide"] = seeds_to_decide(diff, half_width, margin) or np.nan
    out["note"] = "; ".join(note)
    return out


# ---------------------------------------------------------------------------- many comparisons


def n_text(row: Mapping[str, Any]) -> str:
    """'3' for 3 seed pairs; '4 vs 3' for unpaired sides."""
    if row["test"] == WELCH or not row["n"]:
        return f"{row['n_a']} vs {row['n_b']}"
    return str(row["n"])


COLUMNS = ["test", "n", "n_a", "n_b", "mean", "mean_baseline", "diff", "ci_low", "ci_high", "ci95_low", "ci95_high",
           "p", "p_adj", "family_m", "looks", "adjust", "margin", "p_tost", "p_tost_adj", "decision", "verdict",
           "mde", "seeds_to_decide", "note"]  # what compare_many adds to each row's keys
ADJUST = "Bonferroni"  # the method's name in comparisons.csv and the report


def compare_many(pairs: Sequence[tuple[dict, pd.Series, pd.Series, int]], margin: float = math.nan,
                 looks: int = 1, alpha: float = ALPHA, power: float = POWER, metric: str = "") -> pd.DataFrame:
    """One family of comparisons (one metric): Bonferroni over its m testable ones and K looks.

    pairs: (keys, values, baseline, direction) per comparison; keys (e.g. group and metric) start
    the row, values / baseline are Series indexed by seed, direction is +1 where higher is better.
    Every row's verdict interval, p_adj = min(1, m·K·p) and p_tost_adj = min(1, 2·m·K·p_tost)
    read the same level α/(m·K), so "better"/"worse" holds exactly when p_adj < α and the
    interval excludes 0, "equivalent" exactly when p_tost_adj < α and the interval contains 0.
    The power numbers (mde) are at that level too.
    """
    m = sum(_sides(v, b)[3] != NO_TEST for _, v, b, _ in pairs)
    at = level(m, looks, alpha)
    rows = [{**keys, **compare_values(v, b, at, margin, d, power)} for keys, v, b, d in pairs]
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(rows)
    frame["p_adj"] = np.minimum(1.0, frame["p"] * alpha / at)
    frame["p_tost_adj"] = np.minimum(1.0, 2 * frame["p_tost"] * alpha / at)
    frame["family_m"], frame["looks"], frame["adjust"], frame["margin"] = m, looks, ADJUST, margin
    frame["verdict"] = [words(r["decision"], r["ci_low"], r["ci_high"], metric, margin, n_text(r),
                              r["seeds_to_decide"]) for r in frame.to_dict("records")]
    return frame[[c for c in frame.columns if c not in COLUMNS] + COLUMNS]


def direction(metric: str) -> int:
    """+1 where higher is better; -1 for losses, calibration errors and gaps."""
    if metric in METRICS:
        return METRICS[metric]
    return -1 if any(word in metric for word in ("loss", "nll", "ece", "brier", "gap")) else +1


def paired_stats(runs: pd.DataFrame, baselines: Mapping[Any, Any], metrics: Sequence[str] | None = None,
                 group: str = "group", seed: str = "seed", alpha: float = ALPHA, power: float = POWER,
                 margins: Mapping[str, float] | None = None, looks: int = 1) -> pd.DataFrame:
    """Every group against its baseline, for every metric present: one row per (group, metric).

    runs: one row per run with columns `group`, `seed` and the metrics (pass only the runs that
    count: completed ones). baselines: group -> its baseline group (a baseline's own rows are
    left out). Each metric is one family (`compare_many`): Bonferroni over that metric's
    comparisons; margins: metric -> δ where it is not the default (verdicts.MARGINS); looks: the
    planned looks of a seed=auto sweep. Columns: group, baseline, metric, then COLUMNS.
    """
    metrics = [m for m in (metrics or METRICS) if m in runs and runs[m].notna().any()]
    indexed = runs.set_index(seed)
    frames = []
    for m in metrics:
        pairs = []
        for g, base in baselines.items():
            if g == base:
                continue
            mine, theirs = indexed[indexed[group] == g], indexed[indexed[group] == base]
            pairs.append(({"group": g, "baseline": base, "metric": m}, mine[m], theirs[m], direction(m)))
        if pairs:
            frames.append(compare_many(pairs, margin_for(m, margins), looks, alpha, power, metric=m))
    if not frames:
        return pd.DataFrame(columns=["group", "baseline", "metric", *COLUMNS])
    return pd.concat(frames, ignore_index=True)


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
