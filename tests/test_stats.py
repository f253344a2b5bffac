"""regbench.report.stats, the statistics kernel: interval coverage and test size by simulation (seeded),
power formulas against simulation, n = 1 / n = 2 in words, one Bonferroni family per metric, and the
report's bootstrap (paired.stays_best) (the verdicts against scipy: test_verdicts.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from regbench.report.paired import stays_best
from regbench.report.stats import (
    NO_TEST,
    PAIRED,
    WELCH,
    compare_many,
    compare_values,
    detectable_nc,
    paired,
    paired_stats,
    welch,
)

REPS = 2000  # replications per simulation: the SE of a 95% coverage is sqrt(.95 * .05 / 2000) = 0.49 pp


def _paired_arrays(rng, reps, n, shift, seed_sd=2.0, noise_sd=0.5):
    """(reps, n) values of two configs: a shared per-seed effect (same init and data order) plus own noise."""
    seed_effect = rng.normal(0, seed_sd, (reps, n))
    return seed_effect + shift + rng.normal(0, noise_sd, (reps, n)), seed_effect + rng.normal(0, noise_sd, (reps, n))


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_paired_interval_covers_the_true_difference_95_percent(n):
    a, b = _paired_arrays(np.random.default_rng(n), REPS, n, shift=0.7)
    low, high = paired(a - b).interval(0.05)  # the kernel compare_values prints from (checked below)
    hits = np.mean((low <= 0.7) & (0.7 <= high))
    # [93%, 97%] is +-4 SE around 95% at 2000 replications (SE 0.49 pp)
    assert 0.93 <= hits <= 0.97
    one = compare_values(pd.Series(a[0]), pd.Series(b[0]))
    assert (one["ci95_low"], one["ci95_high"]) == pytest.approx((low[0], high[0]))
    assert (one["ci_low"], one["ci_high"]) == (one["ci95_low"], one["ci95_high"])  # level alpha: the same


def test_paired_interval_and_p_match_scipy_on_one_case():
    a = pd.Series([0.61, 0.58, 0.64], index=[0, 1, 2])
    b = pd.Series([0.55, 0.57, 0.60], index=[0, 1, 2])
    r = compare_values(a, b)
    d = a - b
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert r["diff"] == pytest.approx(d.mean())
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert r["p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)


def test_welch_when_seeds_do_not_pair_and_its_coverage():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, (REPS, 6)), rng.normal(0.0, 2.0, (REPS, 4))
    low, high = welch(a, b).interval(0.05)
    assert 0.93 <= np.mean((low <= 1.0) & (1.0 <= high)) <= 0.97  # Welch is approximate; within 4 SE here
    r = compare_values(pd.Series(a[0], index=range(6)), pd.Series(b[0], index=range(10, 14)))  # other seeds
    assert r["test"] == WELCH and r["n"] == 0 and "do not pair" in r["note"]
    assert (r["ci95_low"], r["ci95_high"]) == pytest.approx((low[0], high[0]))


def test_one_family_of_mixed_seed_counts_and_an_unpaired_pair_is_scipys_comparison_by_comparison():
    rng = np.random.default_rng(6)
    pairs = []
    for n in (2, 3, 3, 5, 8):  # the kernel computes equal seed counts together: here four blocks
        base = pd.Series(rng.normal(0.5, 0.02, n))
        pairs.append(({"n": n}, base + rng.normal(0.01, 0.01, n), base, +1))
    welch_sides = pd.Series(rng.normal(0.5, 0.01, 4)), pd.Series(rng.normal(0.49, 0.02, 5), index=range(10, 15))
    pairs.append(({"n": 0}, *welch_sides, +1))
    frame = compare_many(pairs, margin=0.01, metric="test.acc")
    at = 0.05 / len(pairs)
    for (_, a, b, _), r in zip(pairs, frame.to_dict("records"), strict=True):
        res = sps.ttest_ind(a, b, equal_var=False) if r["test"] == WELCH else sps.ttest_rel(a, b)
        ci = res.confidence_interval(1 - at)
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
        assert r["p"] == pytest.approx(res.pvalue, rel=1e-12)
    assert list(frame["test"]) == [PAIRED] * 5 + [WELCH]


def test_false_positive_rate_under_the_null_is_alpha():
    a, b = _paired_arrays(np.random.default_rng(2), REPS, 5, shift=0.0)
    assert 0.03 <= np.mean(paired(a - b).p() < 0.05) <= 0.07  # 5% +- 4 SE (SE 0.49 pp)


def test_minimum_detectable_effect_is_detected_80_percent_of_the_time():
    n, sd = 6, 1.0
    mde = detectable_nc(n - 1) * sd / math.sqrt(n)
    rng = np.random.default_rng(3)
    diffs = rng.normal(mde, sd, (REPS, n))
    hits = np.mean(paired(diffs).p() < 0.05)
    assert 0.80 - 4 * 0.0089 <= hits <= 0.80 + 4 * 0.0089  # SE of 80% at 2000 reps: 0.89 pp


def test_n1_and_n2_are_said_in_words():
    one = compare_values(pd.Series([0.6], index=[0]), pd.Series([0.5], index=[0]))
    assert one["test"] == NO_TEST and math.isnan(one["ci_low"]) and one["diff"] == pytest.approx(0.1)
    assert "n = 1" in one["note"] and "no interval" in one["note"]
    two = compare_values(pd.Series([0.6, 0.7], index=[0, 1]), pd.Series([0.5, 0.55], index=[0, 1]))
    assert two["test"] == PAIRED and two["n"] == 2 and "n = 2" in two["note"]
    assert two["ci_high"] - two["ci_low"] > 0.5  # t(0.975, 1) = 12.7: very wide


def test_paired_stats_rows_families_and_verdicts_in_words():
    rng = np.random.default_rng(4)
    seed_effect = rng.normal(0, 0.02, 5)
    rows = []
    for g, shift in ((0, 0.0), (1, 0.10), (2, 0.0), (3, -0.10)):
        for s in range(5):
            rows.append({"group": g, "seed": s, "test.acc": 0.5 + shift + seed_effect[s] + rng.normal(0, 0.005),
                         "final.gap_acc": 0.3 - shift})
    rows.append({"group": 4, "seed": 0, "test.acc": 0.9, "final.gap_acc": 0.1})  # a single seed
    frame = paired_stats(pd.DataFrame(rows), {0: 0, 1: 0, 2: 0, 3: 0, 4: 0})
    assert len(frame) == 8 and set(frame["group"]) == {1, 2, 3, 4}
    acc = frame[frame["metric"] == "test.acc"].set_index("group")
    assert acc.at[1, "verdict"] == "better (n = 5)" and acc.at[3, "verdict"] == "worse (n = 5)"
    assert acc.at[2, "decision"] in ("equivalent", "undecided")
    assert acc.at[4, "verdict"].startswith("not testable") and "n = 1" in acc.at[4, "note"]
    # final.gap_acc: same shift in every seed (sd 0) -> exact; a smaller gap is better
    gap = frame[frame["metric"] == "final.gap_acc"].set_index("group")
    assert gap.at[1, "verdict"].startswith("better") and gap.at[3, "verdict"].startswith("worse")
    # one family per metric: m = 3 testable rows each; power numbers at alpha / m
    assert (frame["family_m"] == 3).all() and frame["p_adj"].dropna().ge(frame["p"].dropna()).all()
    d = pd.DataFrame(rows).pivot(index="seed", columns="group", values="test.acc")
    se = (d[2] - d[0]).std(ddof=1) / math.sqrt(5)
    assert acc.at[2, "mde"] == pytest.approx(detectable_nc(4, 0.05 / 3) * se)
    assert not frame.to_string().lower().count(" nan%")  # nothing renders as NaN text here


def test_stays_best_bootstrap():
    rows = [{"group": g, "seed": s, "acc": base + 0.001 * s}
            for g, base in ((0, 0.5), (1, 0.6), (2, 0.599)) for s in range(5)]
    frame = pd.DataFrame(rows)
    best = stays_best(frame, "acc")
    assert best.sum() == pytest.approx(1.0) and best[1] == 1.0  # paired: 1 beats 2 in every seed
    noisy = pd.DataFrame([{"group": g, "seed": s, "acc": v} for g in (0, 1) for s, v in
                          enumerate(np.random.default_rng(g).normal(0.5, 0.05, 4))])
    a, b = stays_best(noisy, "acc"), stays_best(noisy, "acc")
    assert a.equals(b) and 0 < a.max() < 1  # seeded: the same fraction every time; a noisy winner
    tied = pd.DataFrame([{"group": g, "seed": s, "acc": 0.5 + 0.01 * s} for g in (0, 1) for s in range(3)])
    assert stays_best(tied, "acc").tolist() == pytest.approx([0.5, 0.5])  # identical groups share the wins
    lone = stays_best(pd.DataFrame([{"group": 0, "seed": 0, "acc": 0.5}, {"group": 1, "seed": 0, "acc": 0.6}]), "acc")
    assert lone.isna().all()  # one seed: no claim


def test_power_numbers_at_a_tiny_level_with_two_seeds_do_not_crash():
    """df = 1 at alpha / m = 0.05 / 60: the noncentrality needed is far beyond the first bracket."""
    nc = detectable_nc(1, 0.05 / 60)
    assert nc > 200 and (math.isinf(nc) or nc < 1e6)
    r = compare_values(pd.Series([0.5, 0.6]), pd.Series([0.4, 0.45]), level=0.05 / 60, margin=0.01)
    assert r["test"] == PAIRED and r["mde"] > 0
    assert r["decision"] == "undecided" and r["seeds_to_decide"] > 2
