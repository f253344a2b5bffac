"""The report carries the seed-paired statistics: groups.csv / comparisons.csv numbers recomputed
independently from the run files, verdicts and n = 1 / n = 2 in words, the best-configuration
bootstrap line, the protocol statement and the flag on comparisons that mix protocols."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy import stats as sps
from test_report import write_run

from regbench.report import build_report


def _acc(root: Path) -> dict[tuple[float, int], float]:
    out = {}
    for summary in root.rglob("summary.json"):
        s = json.loads(summary.read_text())
        out[yaml.safe_load((summary.parent / "config.yaml").read_text())["dropout"]["p"], s["seed"]] = s["test"]["acc"]
    return out


def _report(tmp_path, runs):
    for p, seed in runs:
        write_run(tmp_path / "runs", p=p, seed=seed)
    return build_report([tmp_path / "runs"], tmp_path / "out", formats=["png"])


def test_groups_csv_and_comparisons_match_an_independent_recomputation(tmp_path):
    result = _report(tmp_path, [(p, s) for p in (0.0, 0.3, 0.5) for s in range(4)])
    groups = pd.read_csv(tmp_path / "out" / "groups.csv", index_col="group")
    comps = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    acc = _acc(tmp_path / "runs")
    p_values = {}
    for p in (0.3, 0.5):
        row = groups[groups["dropout.p"] == p].iloc[0]
        x, y = [acc[p, s] for s in range(4)], [acc[0.0, s] for s in range(4)]
        res = sps.ttest_rel(x, y)
        ci = res.confidence_interval(0.95)
        assert row["test.acc.vs_baseline.diff"] == pytest.approx(sum(x) / 4 - sum(y) / 4)
        assert (row["test.acc.vs_baseline.ci_low"], row["test.acc.vs_baseline.ci_high"]) == pytest.approx(
            (ci.low, ci.high))
        assert row["test.acc.vs_baseline.p"] == pytest.approx(res.pvalue)
        assert row["vs_baseline.test"] == "paired t" and row["vs_baseline.n"] == 4
        p_values[p] = res.pvalue
    # Holm runs over every test of the report: 2 groups x the metrics present
    m = int(comps["p"].notna().sum())
    assert m == 2 * comps["metric"].nunique() and m >= 8
    ranked = comps["p"].rank(method="first").astype(int)
    assert (comps["p_holm"] >= comps["p"] - 1e-12).all()
    smallest = comps.loc[ranked == 1]
    assert smallest["p_holm"].iloc[0] == pytest.approx(min(1.0, smallest["p"].iloc[0] * m))
    baseline = groups[groups["dropout.p"] == 0.0].iloc[0]
    assert pd.isna(baseline["test.acc.vs_baseline.diff"])  # the baseline is not compared with itself
    assert 0 <= groups["stays_best"].min() and groups["stays_best"].sum() == pytest.approx(1.0)
    text = result.markdown.read_text()
    assert "## Comparison with the baseline (seed-paired)" in text and f"adjusted over all {m} tests" in text
    assert "Evaluation protocol: the test split is scored with" in text
    assert "bootstrap resamples of the seeds" in text
    assert "95% confidence interval of the seed-paired difference" in text  # the vs_baseline caption


def test_n1_and_n2_groups_are_said_in_words_and_no_winner_at_n1(tmp_path):
    result = _report(tmp_path, [(0.0, 0), (0.3, 0)])  # one seed each
    text = result.markdown.read_text()
    assert "not testable (n = 1)" in text and "no interval" in text
    assert "not called best" in text and "| best |" not in text
    assert "nan" not in text.lower()
    two = _report(tmp_path / "two", [(p, s) for p in (0.0, 0.3) for s in (0, 1)]).markdown.read_text()
    assert "n = 2: the interval rests on 1 degree of freedom" in two


def test_unpaired_seeds_use_welch_in_the_report(tmp_path):
    result = _report(tmp_path, [(0.0, s) for s in (0, 1, 2)] + [(0.3, s) for s in (5, 6, 7)])
    row = result.groups[result.groups["dropout.p"] == 0.3].iloc[0]
    assert row["vs_baseline.test"] == "Welch t"
    assert "Welch t, n = 3 vs 3" in result.markdown.read_text()


def test_a_comparison_that_mixes_protocols_is_flagged(tmp_path):
    for p, seed in [(p, s) for p in (0.0, 0.3) for s in range(3)]:
        write_run(tmp_path / "runs", p=p, seed=seed)
    for summary in (tmp_path / "runs").rglob("summary.json"):  # the p = 0.3 runs scored the final weights
        s = json.loads(summary.read_text())
        select = "final" if "p0.3" in summary.parent.name else "val_loss"
        s["protocol"] = {"select": select, "monitor": None, "patience": None, "min_delta": 0.0}
        summary.write_text(json.dumps(s))
    result = build_report([tmp_path / "runs"], tmp_path / "out", formats=["png"])
    text = result.markdown.read_text()
    assert "Runs mix evaluation protocols" in text and "protocols differ" in text
    assert result.groups["vs_baseline.mixed_protocol"].any()


def test_the_baseline_is_the_least_regularized_group(tmp_path):
    """p = 0 and no augmentation: '["crop"]' sorts before '[]', so group order alone would pick the
    augmented group as the baseline."""
    for p in (0.0, 0.5):
        for s in range(2):
            write_run(tmp_path / "plain", p=p, seed=s)
            write_run(tmp_path / "augmented", p=p, seed=s)
    for config in (tmp_path / "augmented").rglob("config.yaml"):
        cfg = yaml.safe_load(config.read_text())
        cfg["augment"] = {"name": "crop", "ops": ["crop"]}
        config.write_text(yaml.safe_dump(cfg))
    result = build_report([tmp_path], tmp_path / "out", formats=["png"], figures=[])
    g = result.groups
    base = g.loc[g["baseline"].iloc[0]]
    assert base["dropout.p"] == 0.0 and base["augment.ops"] == "[]"
    assert g.index[0] != g["baseline"].iloc[0]  # it is not simply the first group
