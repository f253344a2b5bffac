"""Verdicts against scipy: the verdict's interval, the adjusted p and TOST agree with each other and
with scipy.stats (ttest_rel and its confidence_interval, ttest_1samp / ttest_ind with `alternative=`);
the sequential rule of seed=auto by simulation (seeded; tolerances from the Monte-Carlo error)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from regbench.core.errors import ConfigError
from regbench.report import sequential, stats
from regbench.rules import verdicts
from regbench.rules.verdicts import BETTER, EQUIVALENT, UNDECIDED, WORSE, parse_margins

ALPHA = 0.05


def _family(rng, m: int, n: int, margin: float):
    """m comparisons of one metric (one family), n shared seeds each, differences of every size."""
    base = pd.Series(rng.normal(0.5, 0.02, n))
    shifts = rng.choice([0.0, 0.002, 0.005, 0.01, 0.03], size=m) * rng.choice([-1, 1], size=m)
    pairs = [({"k": i}, base + s + pd.Series(rng.normal(0, rng.choice([0.001, 0.005, 0.02]), n)), base, +1)
             for i, s in enumerate(shifts)]
    return pairs, stats.compare_many(pairs, margin=margin, metric="test.acc")


def test_verdict_interval_adjusted_p_and_tost_agree_with_scipy_on_random_families():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(120):
        m, n, margin = int(rng.integers(1, 8)), int(rng.integers(2, 12)), float(rng.choice([0.005, 0.01, 0.02]))
        pairs, frame = _family(rng, m, n, margin)
        at = ALPHA / m
        for (_, a, b, _), r in zip(pairs, frame.to_dict("records"), strict=True):
            res = sps.ttest_rel(a, b)
            ci, ci95 = res.confidence_interval(1 - at), res.confidence_interval(0.95)
            assert (r["ci_low"], r["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-12)
            assert (r["ci95_low"], r["ci95_high"]) == pytest.approx((ci95.low, ci95.high), rel=1e-9, abs=1e-12)
            assert r["p_adj"] == pytest.approx(min(1.0, m * res.pvalue))
            lower = sps.ttest_1samp(a - b, -margin, alternative="greater").pvalue
            upper = sps.ttest_1samp(a - b, margin, alternative="less").pvalue
            assert r["p_tost"] == pytest.approx(max(lower, upper))
            excludes = ci.low > 0 or ci.high < 0
            # the three agree: decided better/worse <=> interval excludes 0 <=> p_adj < alpha
            assert (r["decision"] in (BETTER, WORSE)) == excludes == (r["p_adj"] < ALPHA)
            if excludes:
                assert r["decision"] == (BETTER if r["diff"] > 0 else WORSE)
                assert ("by less than" in r["verdict"]) == (-margin < ci.low and ci.high < margin)
            # equivalent <=> TOST rejects both one-sided nulls at at/2 <=> the interval lies inside +-margin
            tost = max(lower, upper) < at / 2
            assert (r["decision"] == EQUIVALENT) == (tost and not excludes)
            assert (r["decision"] == EQUIVALENT) == (r["p_tost_adj"] < ALPHA and not excludes)
            assert r["family_m"] == m and r["adjust"] == "Bonferroni"
            seen.add(r["decision"] + ("<" if "by less" in r["verdict"] else ""))
    assert seen == {BETTER, WORSE, EQUIVALENT, UNDECIDED, "better<", "worse<"}  # every verdict was exercised


def test_welch_verdicts_follow_their_interval_and_tost():
    rng = np.random.default_rng(1)
    for _ in range(100):
        a = pd.Series(rng.normal(0.5 + rng.choice([0, 0.004, 0.03]), 0.005, 5), index=range(5))
        b = pd.Series(rng.normal(0.5, 0.005, 4), index=range(10, 14))  # other seeds: no pairing
        r = stats.compare_values(a, b, level=0.01, margin=0.01)
        res = sps.ttest_ind(a, b, equal_var=False)
        ci = res.confidence_interval(0.99)
        assert r["test"] == stats.WELCH and (r["ci_low"], r["ci_high"]) == pytest.approx((ci.low, ci.high))
        tost = max(sps.ttest_ind(a + 0.01, b, equal_var=False, alternative="greater").pvalue,
                   sps.ttest_ind(a - 0.01, b, equal_var=False, alternative="less").pvalue)
        assert r["p_tost"] == pytest.approx(tost)
        assert (r["decision"] == EQUIVALENT) == (tost < 0.005 and ci.low <= 0 <= ci.high)
        assert stats.n_text(r) == "5 vs 4"


def test_identical_arms_are_equivalent_without_nan_or_error():
    a = pd.Series([0.7, 0.8, 0.75])
    r = stats.compare_many([({}, a, a.copy(), +1), ({}, a + 0.003, a, +1), ({}, a - 0.05, a, +1)],
                           margin=0.01, metric="test.acc")
    assert list(r["decision"]) == [EQUIVALENT, BETTER, WORSE]
    assert r.at[0, "verdict"] == "equivalent (within ±1 pp; n = 3)" and r.at[0, "p_adj"] == 1.0
    assert r.at[1, "verdict"] == "better, by less than 1 pp (n = 3)"
    # no margin for an unknown metric kind: identical is still equivalent (inside any margin)
    assert stats.compare_values(a, a, margin=math.nan)["decision"] == EQUIVALENT


def test_n1_is_not_testable_and_counts_out_of_the_family():
    one = pd.Series([0.6], index=[0])
    pairs = [({}, one, pd.Series([0.5], index=[0]), +1),
             ({}, pd.Series([0.6, 0.7, 0.65]), pd.Series([0.5, 0.6, 0.55]), +1)]
    r = stats.compare_many(pairs, margin=0.01, metric="test.acc")
    assert r.at[0, "verdict"] == "not testable (n = 1)" and np.isnan(r.at[0, "p_adj"])
    assert (r["family_m"] == 1).all()  # only the testable comparison counts towards m


@pytest.mark.parametrize(("mean", "margin"), [(0.3, 0.05), (0.01, 0.2), (0.0, 0.3), (0.1, math.nan)])
def test_seeds_to_decide_is_the_smallest_n_at_which_the_observed_numbers_decide(mean, margin):
    d = np.array([-1.0, 0.0, 1.0]) * 0.4 + mean  # observed mean `mean`, sd 0.4, n = 3: undecided
    r = stats.compare_values(pd.Series(d), pd.Series(np.zeros(3)), level=0.05, margin=margin)
    assert r["decision"] == UNDECIDED
    n, sd = int(r["seeds_to_decide"]), 0.4

    def decides(k):
        half = sps.t.ppf(0.975, k - 1) * sd / math.sqrt(k)
        return half < abs(mean) or abs(mean) + half < margin  # detected, or fits inside +-margin

    assert decides(n) and not decides(n - 1)
    assert f"{n} seeds would decide it" in stats.compare_many([({}, pd.Series(d), pd.Series(np.zeros(3)), 1)],
                                                              margin=margin, metric="test.acc")["verdict"][0]


def test_margins_parse_and_bad_ones_name_the_value_and_the_choices():
    metrics = ["test.acc", "final.gap_loss"]
    assert parse_margins("0.02", metrics, "test.acc") == {"test.acc": 0.02}
    assert parse_margins("test.acc=0.02,final.gap_loss=0.05", metrics, "test.acc") == {
        "test.acc": 0.02, "final.gap_loss": 0.05}
    assert parse_margins(None, metrics, "test.acc") == {}
    for bad, words in (("x", "not a number"), ("nope=0.1", "unknown metric 'nope'"), ("-1", "positive"),
                       ("test.acc=2", "200 pp"), ("final.gap_loss=inf", "positive")):
        with pytest.raises(ConfigError, match=words) as err:
            parse_margins(bad, metrics, "test.acc")
        assert "test.acc, final.gap_loss" in str(err.value) and "\n" not in str(err.value)


def test_default_margins_are_declared_per_metric_kind():
    assert verdicts.default_margin("test.acc") == verdicts.MARGINS["acc"] == 0.01
    assert verdicts.default_margin("final.gap_loss") == verdicts.MARGINS["loss"]
    assert verdicts.default_margin("calibration.test.ece") == verdicts.MARGINS["ece"]
    assert verdicts.default_margin("calibration.test.nll") == verdicts.MARGINS["nll"]
    assert math.isnan(verdicts.default_margin("seconds"))


# ---------------------------------------------------------------------------- seed=auto by simulation

SEQUENCES = 4000  # simulated sequences per check: the SE of a 5% share is sqrt(.05 * .95 / 4000) = 0.34 pp


def test_the_rule_seed_auto_simulates_is_scipys_interval():
    rng = np.random.default_rng(5)
    d = rng.normal(0.01, 0.01, (200, 6))
    ci = sps.ttest_1samp(d, 0.0, axis=-1).confidence_interval(1 - 0.01)
    assert (stats.paired(d).decide(0.01, 0.01) == verdicts.decide(ci.low, ci.high, 0.01)).all()


def test_schedule_doubles_from_the_pilot_to_the_budget():
    assert sequential.schedule(20) == [3, 6, 12, 20]
    assert sequential.schedule(3) == [3] and sequential.schedule(7, pilot=3) == [3, 6, 7]


@pytest.mark.parametrize("m", [1, 7])
def test_no_true_difference_is_called_better_or_worse_at_most_5_percent_of_sequences(m):
    diffs = np.random.default_rng(m).normal(0.0, 1.0, (SEQUENCES, sequential.MAX_SEEDS))
    final, used = sequential.simulate(diffs, margin=0.5, m=m)
    share = np.mean(np.isin(final, (BETTER, WORSE)))
    assert share <= 0.05 / m + 3 * math.sqrt(0.05 / m * (1 - 0.05 / m) / SEQUENCES)
    assert set(np.unique(used)) <= set(sequential.schedule())  # stops only at planned looks


def test_a_true_difference_of_2_sd_is_decided_in_most_sequences():
    diffs = np.random.default_rng(11).normal(2.0, 1.0, (SEQUENCES, sequential.MAX_SEEDS))
    final, used = sequential.simulate(diffs, margin=0.5, m=7)
    assert np.mean(final == BETTER) >= 0.95  # observed 1.0; the bound leaves room for the seed
    assert np.median(used) < sequential.MAX_SEEDS  # it stops before the budget


def test_an_equivalent_pair_stops_as_equivalent():
    diffs = np.random.default_rng(12).normal(0.0, 1.0, (SEQUENCES, sequential.MAX_SEEDS))
    final, _ = sequential.simulate(diffs, margin=2.0, m=1)
    assert np.mean(final == EQUIVALENT) >= 0.9


def test_stop_reason_in_words():
    assert sequential.stop_reason(0, 6, 20) == "all decided"
    assert sequential.stop_reason(2, 20, 20) == "seed budget reached: 2 undecided"
    assert sequential.stop_reason(2, 12, 20) is None


# ---------------------------------------------------------------------------- zero spread is not certainty

N_TEST = 359  # digits' test split: a per-seed difference of test accuracies is k / 359
STEP = 1 / N_TEST


def test_three_seeds_that_each_gain_one_example_are_not_better():
    """The case that motivated the floor: identical differences of one example at n = 3 were 'better, by
    less than 1 pp (n = 3)' with p_adj = 0. With the accuracy's step, p is about the exact sign-flip test's and
    the interval [−0.4, +1.0] pp is what a spread of one example allows: inside ±1 pp, so equivalent, not better
    (at seed=auto's level the same seeds are undecided: the next test)."""
    base = pd.Series([250, 262, 255]) / N_TEST
    gained = base + STEP
    old = stats.compare_many([({}, gained, base, +1)], margin=0.01, metric="test.acc")  # no step: a continuous metric
    assert old.at[0, "verdict"] == "better, by less than 1 pp (n = 3)" and old.at[0, "p_adj"] == 0
    r = stats.compare_many([stats.Pair({}, gained, base, +1, STEP)], margin=0.01, metric="test.acc").iloc[0]
    assert r["decision"] == EQUIVALENT and r["verdict"] == "equivalent (within ±1 pp; n = 3)"
    assert r["p"] == pytest.approx(sps.t.sf(math.sqrt(3), 2) * 2)  # t = √3: the spread counts as one example
    assert 0.2 < r["p"] < 0.25  # the exact sign-flip test of 3 equal signs: 2 / 2^3 = 0.25
    assert "every seed differs by exactly 0.002786" in r["note"] and "floored at one example (1/359)" in r["note"]
    ci = sps.ttest_1samp(np.array([1.0, 0.0, -1.0]) * STEP + STEP, 0.0).confidence_interval(0.95)
    assert (r["ci95_low"], r["ci95_high"]) == pytest.approx((ci.low, ci.high))  # the t interval of spread 1 example


def test_unpaired_sides_without_spread_are_floored_too():
    """Welch: each side's spread counts as at least one example; two sides each identical in every run
    (other seeds, so no pairing) one example apart are no longer an exact difference."""
    a, b = pd.Series([251 / N_TEST] * 3, index=[0, 1, 2]), pd.Series([250 / N_TEST] * 3, index=[5, 6, 7])
    assert stats.compare_values(a, b, margin=0.01)["decision"] == BETTER  # no step: exact
    r = stats.compare_values(a, b, margin=0.01, step=STEP)
    res = sps.ttest_ind_from_stats(a.mean(), STEP, 3, b.mean(), STEP, 3, equal_var=False)  # both sds at the floor
    assert r["test"] == stats.WELCH and r["p"] == pytest.approx(res.pvalue) and r["decision"] != BETTER
    assert "no spread on either side; spread floored at one example (1/359)" in r["note"]


@pytest.mark.parametrize("n", range(2, 21))
def test_identical_differences_are_decided_only_where_every_unimodal_null_makes_them_rarer(n):
    """n seeds that all differ by c examples: under a null whose per-seed difference is symmetric and unimodal
    on the examples (a sum of per-example changes), P(all n equal +c, or all −c) <= 2 / (2c + 1)^n, since
    neither ±c is likelier than any of the 2c + 1 values from −c to c. The floored t-test's p is never below
    that: a zero spread is decided only where no such null explains it."""
    c = np.arange(1, 500)
    d = np.repeat(c[:, None] * STEP, n, axis=1)  # (c, n): every seed differs by c examples
    p = stats.paired(d, STEP).p()
    assert (p >= 2.0 / (2 * c + 1.0) ** n).all()


def test_seed_auto_cannot_stop_decided_on_a_few_examples_of_zero_spread_at_the_pilot():
    looks = sequential.schedule()  # 3, 6, 12, 20: K = 4
    at = verdicts.level(1, len(looks))
    for c in range(1, 6):  # 1-5 examples of 359 in every one of the 3 pilot seeds: not decided
        assert stats.paired(np.full((1, sequential.PILOT), c * STEP), STEP).decide(at, 0.01)[0] == UNDECIDED
    # a sweep whose every seed gains one example goes on; at 6 seeds a spread of one example per seed fits ±1 pp
    final, used = sequential.simulate(np.full((1, sequential.MAX_SEEDS), STEP), margin=0.01, step=STEP)
    assert final[0] == EQUIVALENT and used[0] == 6
    final, used = sequential.simulate(np.full((1, sequential.MAX_SEEDS), 2 * STEP), margin=0.001, step=STEP)
    assert final[0] == BETTER and used[0] == 6  # two examples in each of 6 seeds: t = 2·√6 clears the level


def _null_examples(rng, kind: str, shape) -> np.ndarray:
    """Per-seed differences in examples, with no true difference (symmetric around 0)."""
    if kind == "one example up or down":  # every seed gains or loses exactly one example: the old rule's worst case
        return rng.choice([-1.0, 1.0], size=shape)
    lam = float(kind.split()[-1])  # Skellam: examples each side gets right and the other wrong, Poisson(lam) each
    return (rng.poisson(lam, shape) - rng.poisson(lam, shape)).astype(float)


NULLS = ["one example up or down", "skellam 0.2", "skellam 0.5", "skellam 2", "skellam 8"]


@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("kind", NULLS)
def test_seed_auto_on_discrete_accuracies_calls_no_true_difference_better_or_worse(kind, m):
    """seed=auto's sequential rule (pilot 3, looks at 6, 12, 20) on test accuracies of a small split: per-seed
    differences are whole examples of 359, the true difference 0. At most α/m of the sequences of one
    comparison may end better or worse (the family's m comparisons share α), within 3 Monte-Carlo SE."""
    rng = np.random.default_rng(NULLS.index(kind) + 10 * m)
    diffs = _null_examples(rng, kind, (SEQUENCES, sequential.MAX_SEEDS)) * STEP
    final, _ = sequential.simulate(diffs, margin=0.01, m=m, step=STEP)
    bound = 0.05 / m
    assert np.mean(np.isin(final, (BETTER, WORSE))) <= bound + 3 * math.sqrt(bound * (1 - bound) / SEQUENCES)
    if kind == NULLS[0] and m == 1:  # without the floor the same sequences stop "decided" at the pilot
        unfloored, used = sequential.simulate(diffs, margin=0.01, m=m)
        assert np.mean(np.isin(unfloored, (BETTER, WORSE)) & (used == sequential.PILOT)) > 0.2  # 2 / 2^3 = 25%


def test_seed_auto_on_discrete_accuracies_calls_a_difference_at_the_margin_equivalent_rarely():
    """The other error: 'equivalent (within ±1 pp)' where the true difference is the margin itself, 1 pp of
    359 examples: every seed gains 3 or 4 examples (mean 3.59), a spread below one example."""
    rng = np.random.default_rng(13)
    diffs = rng.choice([3.0, 4.0], p=[0.41, 0.59], size=(SEQUENCES, sequential.MAX_SEEDS)) * STEP
    final, _ = sequential.simulate(diffs, margin=0.01, step=STEP)
    assert np.mean(final == EQUIVALENT) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / SEQUENCES)
