"""The statistics kernel: how sure are we that a configuration differs from its baseline?

One kernel for the report, `regbench compare`, the Python API and `seed=auto`'s looks
(report/sequential.py), on scipy.stats. It is imported by those paths only: a lone `regbench run`
never imports it (scipy.stats alone takes ~1 s to import). Runs with the same seed share their
initialisation and data order, so two configurations are compared on the per-seed *differences*.
Every test is vectorised over a family of comparisons (`TTests`: arrays of one shape, one entry each):

- paired: the mean difference d̄ over the n shared seeds, its Student-t interval
  d̄ ± t(1 − level/2, n−1)·s_d/√n and the two-sided paired t-test: the numbers of scipy.stats.ttest_rel
  and its confidence_interval; TOST against ±δ as two one-sided tests (ttest_1samp's `alternative=`);
- unpaired (fewer than 2 shared seeds, both sides with ≥ 2 runs): Welch's t-interval and test
  (scipy.stats.ttest_ind with equal_var=False, Welch–Satterthwaite df), said in the `test` column;
- n = 1 (or nothing to pair): the difference alone, no interval, said in words.

Zero spread is not certainty. An accuracy on a split of N examples moves in steps of 1/N, so a
per-seed difference is a whole number of examples and a few seeds can all differ by the same number:
their spread of 0 would make any such difference certain (p = 0). The spread is floored at that step
(`step`, from report/table.metric_step: s = max(s_d, 1/N); for Welch each side's), so three seeds that
each gain one example give t = √3, p = 0.22 (an exact sign-flip test gives 0.25). Metrics with no step
(losses, NLL, ECE) keep the exact branch: no spread at all is an exact difference, its interval the point.
Why this rule: README.md, "Reports".

scipy's t-tests take the spread from the data as it is, so the kernel forms the estimate, its standard
error and df (their formulas, a few lines each) and reads every probability and quantile from
scipy.stats.t; tests/test_verdicts.py and tests/test_stats.py check every number against
ttest_rel / ttest_ind / ttest_1samp wherever the floor does not bind.

Multiple comparisons: each metric of one report is one family of m comparisons, adjusted by
Bonferroni (and over the K planned looks of a seed=auto sweep): the verdict's interval is the
(1 − α/(m·K)) interval and p_adj = min(1, m·K·p), so they agree by construction; the
unadjusted 95% interval is kept too (ci95_low/high). The verdict words are rules/verdicts.py's.
The power numbers use the exact noncentral t (scipy.stats.nct): the smallest |difference| a
two-sided test at the verdict's level detects with 80% power given the observed spread (`mde`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

from regbench.report.table import metric_step
from regbench.rules.verdicts import ALPHA, METRICS, UNDECIDED, decide, level, margin_for, words

POWER = 0.8  # target power for the minimum detectable effect and the seeds needed
NC_MAX = 200.0  # first search bracket for the noncentrality (df = 1 needs ~18 for 80% power at alpha = 0.05)
NC_MAX_SEARCH = 1e6  # widened up to this for tiny alpha / df = 1; beyond it the MDE is reported as inf
MAX_SEEDS = 100_000  # seeds_to_decide beyond this is reported as NaN ("more than MAX_SEEDS")
SAME_SPREAD = 1e-12  # differences whose sd is below this (relative) are "the same in every seed": no t
PAIRED, WELCH, NO_TEST = "paired t", "Welch t", "none"


# ---------------------------------------------------------------------------- the kernel


@dataclass(frozen=True)
class TTests:
    """The t-tests of a family of comparisons: arrays of one shape, one entry per comparison (NaN: no test).

    se = 0 marks an exact difference (the same in every seed): its interval is the point itself.
    """

    diff: np.ndarray  # the estimate: mean per-seed difference (paired) or difference of the means (Welch)
    se: np.ndarray  # its standard error
    df: np.ndarray  # degrees of freedom (Welch: Welch–Satterthwaite)
    spread: np.ndarray  # what k more seeds divide by √k: s_d (paired), sqrt(s_a² + s_b²) (Welch, k per side)
    df_scale: np.ndarray  # df at k seeds = df_scale·(k − 1): 1 (paired), Welch's at equal sides
    same: np.ndarray  # bool: the observed spread is 0 (every seed differs by the same amount)
    floored: np.ndarray  # bool: the observed spread was below the step, which set it

    @property
    def exact(self) -> np.ndarray:
        return self.se == 0

    def interval(self, at: float) -> tuple[np.ndarray, np.ndarray]:
        """The two-sided (1 − at) interval, as TtestResult.confidence_interval forms it."""
        tail = (1 - (1 - at)) / 2
        with np.errstate(invalid="ignore"):  # an exact row: df may be NaN (Welch), its interval is the point
            low = sps.t.ppf(tail, self.df) * self.se + self.diff
            high = sps.t.ppf(1 - tail, self.df) * self.se + self.diff
        return np.where(self.exact, self.diff, low), np.where(self.exact, self.diff, high)

    def p(self) -> np.ndarray:
        """Two-sided p of no difference; an exact one: 1 where it is 0, else 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            p = 2 * sps.t.sf(np.abs(self.diff / self.se), self.df)
        return np.where(self.exact, np.where(self.diff == 0, 1.0, 0.0), p)

    def p_tost(self, margin: float) -> np.ndarray:
        """TOST against ±margin: H0 diff ≥ δ against "less", H0 diff ≤ −δ against "greater"; the larger p."""
        with np.errstate(divide="ignore", invalid="ignore"):
            upper = sps.t.cdf((self.diff - margin) / self.se, self.df)
            lower = sps.t.sf((self.diff + margin) / self.se, self.df)
        inside = (np.abs(self.diff) < margin) | (self.diff == 0)
        exact = np.where(inside, 0.0, 1.0 if math.isfinite(margin) else np.nan)
        return np.where(self.exact, exact, np.maximum(upper, lower))

    def decide(self, at: float, margin: float, sign=1) -> np.ndarray:
        """The verdicts (rules/verdicts.decide) read from the (1 − at) interval."""
        return decide(*self.interval(at), margin, sign)

    def seeds_to_decide(self, at: float, margin: float) -> np.ndarray:
        """Smallest n at which an interval around the *observed* mean, with the observed spread, decides:
        its half width drops below |diff| (the mean would be detected) or |diff| + half width drops
        below δ (the interval would fit inside ±δ), whichever comes first. A plug-in number, not a
        power calculation: with the true difference equal to the observed one, about half of the
        repeats at that n would decide. NaN beyond MAX_SEEDS (or never: diff = 0 and no margin).
        Bisection on every comparison at once (the half width falls with n)."""
        size = np.abs(self.diff)

        def decides(k: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore"):
                half = sps.t.ppf(1 - at / 2, self.df_scale * (k - 1)) * self.spread / np.sqrt(k)
            return (half < size) | (size + half < margin)

        lo, hi = np.full(np.shape(size), 2), np.full(np.shape(size), MAX_SEEDS)
        reachable = decides(hi) & ~self.exact
        while (open_ := reachable & (lo < hi)).any():
            mid = (lo + hi) // 2
            yes = decides(mid)
            hi, lo = np.where(open_ & yes, mid, hi), np.where(open_ & ~yes, mid + 1, lo)
        return np.where(reachable, lo, np.nan)

    def mde(self, at: float, power: float = POWER) -> np.ndarray:
        """The smallest |difference| a two-sided test at `at` detects with `power`, given this spread."""
        nc = np.vectorize(lambda df: detectable_nc(float(df), at, power) if np.isfinite(df) else np.nan)
        return np.where(self.exact | np.isnan(self.se), np.nan, nc(self.df) * self.se)


def paired(d: np.ndarray, step=0.0) -> TTests:
    """The paired t-tests of per-seed differences d (..., n), n >= 2: one per leading index. step (scalar or
    (...)): the metric's step, 1/N; the spread s_d counts as at least that (0: no floor)."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    diff, observed = d.mean(axis=-1), np.var(d, axis=-1, ddof=1)
    floor = np.broadcast_to(np.square(step), np.shape(diff))
    floored, var = observed < floor, np.maximum(observed, floor)
    same = np.sqrt(observed) <= SAME_SPREAD * np.maximum(1.0, np.abs(diff))  # every seed differs by the same amount
    return TTests(diff, np.where(same & (floor == 0), 0.0, np.sqrt(var / n)), np.full(np.shape(diff), n - 1.0),
                  np.sqrt(var), np.ones(np.shape(diff)), same, floored)


def welch(a: np.ndarray, b: np.ndarray, step=0.0) -> TTests:
    """Welch's unpaired t-tests of a (..., n_a) against b (..., n_b), both with >= 2 values (scipy's df:
    the formula of ttest_ind(equal_var=False)); each side's spread counts as at least `step`."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n_a, n_b = a.shape[-1], b.shape[-1]
    diff = a.mean(axis=-1) - b.mean(axis=-1)
    observed_a, observed_b = np.var(a, axis=-1, ddof=1), np.var(b, axis=-1, ddof=1)
    floor = np.broadcast_to(np.square(step), np.shape(diff))
    floored = (observed_a < floor) | (observed_b < floor)
    var_a, var_b = np.maximum(observed_a, floor), np.maximum(observed_b, floor)
    vn_a, vn_b = var_a / n_a, var_b / n_b
    same = np.sqrt(observed_a) + np.sqrt(observed_b) <= SAME_SPREAD * np.maximum(1.0, np.abs(diff))  # no spread
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (vn_a + vn_b) ** 2 / (vn_a**2 / (n_a - 1) + vn_b**2 / (n_b - 1))
        df_scale = (var_a + var_b) ** 2 / (var_a**2 + var_b**2)
    return TTests(diff, np.where(same & (floor == 0), 0.0, np.sqrt(vn_a + vn_b)), df, np.sqrt(var_a + var_b),
                  df_scale, same, floored)


def _power(nc: float, df: float, at: float) -> float:
    """Power of a two-sided t-test with `df` degrees of freedom at noncentrality `nc`."""
    crit = sps.t.ppf(1 - at / 2, df)
    # The far tail (wrong sign) is < 1e-8 wherever the noncentral t's cdf returns NaN for it (df = 1, nc ~ 18).
    far = float(np.nan_to_num(sps.nct.cdf(-crit, df, nc), nan=0.0))
    near = float(np.nan_to_num(sps.nct.sf(crit, df, nc), nan=1.0 if nc > crit else 0.0))
    return near + far


@functools.lru_cache(maxsize=1024)
def detectable_nc(df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Noncentrality at which the two-sided t-test reaches `power` (MDE = this × standard error).

    inf where even NC_MAX_SEARCH falls short (df = 1 at a Bonferroni level of a big family)."""
    hi = NC_MAX
    while _power(hi, df, alpha) < power:
        if hi >= NC_MAX_SEARCH:
            return math.inf
        hi *= 4
    return optimize.brentq(lambda nc: _power(nc, df, alpha) - power, 0.0, hi)


# ---------------------------------------------------------------------------- a family of comparisons


class Pair(NamedTuple):
    """One comparison of a family, as compare_many takes it (a plain 4-tuple is a Pair with no step)."""

    keys: dict  # what starts its row (e.g. group and metric)
    values: pd.Series  # the configuration's metric, indexed by seed
    baseline: pd.Series  # the baseline's, indexed by seed
    direction: int  # +1 where higher is better
    step: float = 0.0  # the metric's step (report/table.metric_step): its spread's floor


class Sides(NamedTuple):
    a: pd.Series  # one value per seed of the configuration
    b: pd.Series  # ... and of its baseline
    shared: pd.Index  # their shared seeds
    test: str  # PAIRED, WELCH or NO_TEST


def _per_seed(values: pd.Series) -> pd.Series:
    """One value per seed (the mean of reruns of the same seed), seeds without a value dropped."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.index.is_unique:  # one run per seed, the common case: what the groupby would return, faster
        return values.sort_index()
    return values.groupby(level=0).mean()


def sides(values: pd.Series, baseline: pd.Series) -> Sides:
    """Per-seed values of each side, their shared seeds and the test they allow."""
    a, b = _per_seed(values), _per_seed(baseline)
    shared = a.index.intersection(b.index)
    test = PAIRED if len(shared) >= 2 else WELCH if len(a) >= 2 and len(b) >= 2 else NO_TEST
    return Sides(a, b, shared, test)


FIELDS = ("diff", "se", "df", "spread", "df_scale", "same", "floored")


def family(all_sides: Sequence[Sides], steps) -> TTests:
    """The t-tests of a family, in its order (NaN where a comparison has no test); steps: each comparison's
    step (its spread's floor). Comparisons with the same test and seed counts are computed together."""
    steps = np.broadcast_to(np.asarray(steps, dtype=float), (len(all_sides),))
    out = {f: np.full(len(all_sides), np.nan) for f in FIELDS}
    out["same"], out["floored"] = np.zeros(len(all_sides), bool), np.zeros(len(all_sides), bool)
    blocks: dict[tuple, list[int]] = {}
    for i, s in enumerate(all_sides):
        if s.test != NO_TEST:
            key = (s.test, len(s.shared)) if s.test == PAIRED else (s.test, len(s.a), len(s.b))
            blocks.setdefault(key, []).append(i)
    for key, rows in blocks.items():
        picked = [all_sides[i] for i in rows]
        if key[0] == PAIRED:  # (rows, n): the same seeds in order on both sides
            part = paired(np.stack([s.a[s.shared].to_numpy(float) - s.b[s.shared].to_numpy(float) for s in picked]),
                          steps[rows])
        else:
            part = welch(np.stack([s.a.to_numpy(float) for s in picked]),
                         np.stack([s.b.to_numpy(float) for s in picked]), steps[rows])
        for f in FIELDS:
            out[f][rows] = getattr(part, f)
    return TTests(**out)


def _note(s: Sides, tests: TTests, i: int, step: float, diff: float) -> str:
    exact, same = bool(tests.exact[i]), bool(tests.same[i])
    floored = [f"spread floored at one example (1/{round(1 / step)})"] if tests.floored[i] else []
    if len(s.a) == 0 or len(s.b) == 0:
        return "no values to compare"
    if s.test == NO_TEST:
        lone = "n = 1" if min(len(s.a), len(s.b)) == 1 else "too few runs"
        return f"{lone}: no interval and no test (one seed cannot measure the spread between seeds)"
    if s.test == WELCH:
        note = [f"seeds do not pair: unpaired Welch test ({len(s.a)} vs {len(s.b)} runs)"]
        return "; ".join(note + (["no spread on either side"] if same else []) + floored)
    n, dropped = len(s.shared), len(s.a) + len(s.b) - 2 * len(s.shared)
    note = [f"paired over {n} seeds"] + ([f"{dropped} unpaired run(s) left out"] if dropped else [])
    if same:
        note.append("identical in every seed" if diff == 0 else f"every seed differs by exactly {diff:.4g}")
    if n == 2 and not exact:
        note.append("n = 2: the interval rests on 1 degree of freedom, so it is very wide")
    return "; ".join(note + floored)


def family_rows(all_sides: Sequence[Sides], at: float, margin: float = math.nan, signs: Any = +1,
                power: float | None = POWER, steps: Any = 0.0) -> list[dict]:
    """One row per comparison of a family, at the two-sided level `at`: n, means, diff = mean(values) −
    mean(baseline) (paired: mean of per-seed differences), the unadjusted 95% interval (ci95_low/high),
    the verdict's (1 − at) interval (ci_low/high), the two-sided p-value, the TOST p-value against
    ±margin, the test used, the decision (verdicts.decide), the seeds that would decide an undecided one,
    the minimum detectable effect at `power` (at `at`; power=None: NaN) and a note in words.
    signs: +1 where higher is better; steps: the metric's step, the spread's floor (each: one per
    comparison, or one for all)."""
    if not all_sides:
        return []
    steps = np.broadcast_to(np.asarray(steps, dtype=float), (len(all_sides),))
    tests = family(all_sides, steps)
    ci95, ci = tests.interval(ALPHA), tests.interval(at)
    decision = decide(*ci, margin, signs)
    seeds = tests.seeds_to_decide(at, margin) if (decision == UNDECIDED).any() else np.full(len(all_sides), np.nan)
    mde = tests.mde(at, power) if power is not None else np.full(len(all_sides), np.nan)
    p, p_tost = tests.p(), tests.p_tost(margin)
    rows = []
    for i, s in enumerate(all_sides):
        diff = float(tests.diff[i]) if s.test != NO_TEST else float(s.a.mean() - s.b.mean())
        if len(s.a) == 0 or len(s.b) == 0:
            diff = np.nan
        rows.append({"n": len(s.shared), "n_a": len(s.a), "n_b": len(s.b), "mean": s.a.mean(),
                     "mean_baseline": s.b.mean(), "diff": diff, "ci95_low": float(ci95[0][i]),
                     "ci95_high": float(ci95[1][i]), "ci_low": float(ci[0][i]), "ci_high": float(ci[1][i]),
                     "p": float(p[i]), "p_tost": float(p_tost[i]), "test": s.test, "decision": str(decision[i]),
                     "mde": float(mde[i]),
                     "seeds_to_decide": seeds[i] if decision[i] == UNDECIDED else np.nan,
                     "note": _note(s, tests, i, float(steps[i]), diff)})
    return rows


def compare_values(values: pd.Series, baseline: pd.Series, level: float = ALPHA, margin: float = math.nan,
                   sign: int = +1, power: float | None = POWER, step: float = 0.0) -> dict:
    """Compare one metric of a configuration with its baseline (both Series indexed by seed) at the two-sided
    level `level`: a family of one (family_rows has the fields). sign: +1 where higher is better; step: the
    metric's step (report/table.metric_step), the floor of the spread."""
    return family_rows([sides(values, baseline)], level, margin, sign, power, step)[0]


def n_text(row: Mapping[str, Any]) -> str:
    """'3' for 3 seed pairs; '4 vs 3' for unpaired sides."""
    if row["test"] == WELCH or not row["n"]:
        return f"{row['n_a']} vs {row['n_b']}"
    return str(row["n"])


COLUMNS = ["test", "n", "n_a", "n_b", "mean", "mean_baseline", "diff", "ci_low", "ci_high", "ci95_low", "ci95_high",
           "p", "p_adj", "family_m", "looks", "adjust", "margin", "p_tost", "p_tost_adj", "decision", "verdict",
           "mde", "seeds_to_decide", "note"]  # what compare_many adds to each row's keys
ADJUST = "Bonferroni"  # the method's name in comparisons.csv and the report


def compare_many(pairs: Sequence[Pair | tuple], margin: float = math.nan, looks: int = 1, alpha: float = ALPHA,
                 power: float = POWER, metric: str = "") -> pd.DataFrame:
    """One family of comparisons (one metric): Bonferroni over its m testable ones and K looks.

    pairs: a Pair (keys, values, baseline, direction[, step]) per comparison; keys (e.g. group and metric)
    start the row, values / baseline are Series indexed by seed, direction is +1 where higher is better,
    step the metric's step (the spread's floor; 0: none).
    Every row's verdict interval, p_adj = min(1, m·K·p) and p_tost_adj = min(1, 2·m·K·p_tost)
    read the same level α/(m·K), so "better"/"worse" holds exactly when p_adj < α and the
    interval excludes 0, "equivalent" exactly when p_tost_adj < α and the interval contains 0.
    The power numbers (mde) are at that level too.
    """
    pairs = [Pair(*p) for p in pairs]
    all_sides = [sides(p.values, p.baseline) for p in pairs]
    m = sum(s.test != NO_TEST for s in all_sides)
    at = level(m, looks, alpha)
    found = family_rows(all_sides, at, margin, np.array([p.direction for p in pairs]), power,
                        np.array([p.step for p in pairs]))
    if not found:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame([{**p.keys, **row} for p, row in zip(pairs, found, strict=True)])
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
            step = metric_step(pd.concat([mine, theirs]), m)
            pairs.append(Pair({"group": g, "baseline": base, "metric": m}, mine[m], theirs[m], direction(m), step))
        if pairs:
            frames.append(compare_many(pairs, margin_for(m, margins), looks, alpha, power, metric=m))
    if not frames:
        return pd.DataFrame(columns=["group", "baseline", "metric", *COLUMNS])
    return pd.concat(frames, ignore_index=True)
