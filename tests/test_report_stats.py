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

from regbench.cli.report_commands import compare_main
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
        ci95, ci = res.confidence_interval(0.95), res.confidence_interval(1 - 0.05 / 2)  # m = 2 per metric
        assert row["test.acc.vs_baseline.diff"] == pytest.approx(sum(x) / 4 - sum(y) / 4)
        assert (row["test.acc.vs_baseline.ci95_low"], row["test.acc.vs_baseline.ci95_high"]) == pytest.approx(
            (ci95.low, ci95.high))
        assert (row["test.acc.vs_baseline.ci_low"], row["test.acc.vs_baseline.ci_high"]) == pytest.approx(
            (ci.low, ci.high))  # the verdict's interval: Bonferroni within test accuracy's family
        assert row["test.acc.vs_baseline.p"] == pytest.approx(res.pvalue)
        assert row["test.acc.vs_baseline.p_adj"] == pytest.approx(min(1.0, 2 * res.pvalue))
        assert row["test.acc.vs_baseline.family_m"] == 2 and row["test.acc.vs_baseline.margin"] == 0.01
        assert row["vs_baseline.test"] == "paired t" and row["vs_baseline.n"] == 4
        p_values[p] = res.pvalue
    # one family per metric: m = the 2 groups' comparisons of that metric, not all of the report's tests
    assert comps["metric"].nunique() >= 4 and (comps["family_m"] == 2).all() and (comps["adjust"] == "Bonferroni").all()
    assert comps["p_adj"].to_numpy() == pytest.approx((comps["p"] * 2).clip(upper=1).to_numpy())
    excludes = (comps["ci_low"] > 0) | (comps["ci_high"] < 0)
    assert (excludes == comps["decision"].isin(["better", "worse"])).all()
    assert (excludes == (comps["p_adj"] < 0.05)).all()
    baseline = groups[groups["dropout.p"] == 0.0].iloc[0]
    assert pd.isna(baseline["test.acc.vs_baseline.diff"])  # the baseline is not compared with itself
    assert 0 <= groups["stays_best"].min() and groups["stays_best"].sum() == pytest.approx(1.0)
    text = result.markdown.read_text()
    assert "## Comparison with the baseline (seed-paired)" in text and "Bonferroni over its comparisons (m = 2" in text
    assert "Evaluation protocol: the test split is scored with" in text
    assert "bootstrap resamples of the seeds" in text
    assert "Verdicts: **better** / **worse**" in text  # the legend
    assert "Bonferroni over the m comparisons of that metric" in text  # the vs_baseline caption


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


def test_margin_from_the_command_line_and_from_the_runs_config(tmp_path, capsys):
    from regbench.cli.report_commands import report_main as main

    for p, seed in [(p, s) for p in (0.0, 0.3) for s in range(3)]:
        write_run(tmp_path / "runs", p=p, seed=seed)
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "wide"), "--format", "png", "--margin",
                 "test.acc=0.9,final.gap_loss=5"]) == 0
    wide = pd.read_csv(tmp_path / "wide" / "comparisons.csv").set_index("metric")
    assert wide.at["test.acc", "margin"] == 0.9 and wide.at["final.gap_loss", "margin"] == 5.0
    assert wide.at["final.val_acc", "margin"] == 0.01  # not named: its kind's default
    # every interval that contains 0 fits inside +-0.9 of accuracy: equivalent
    row = wide.loc["test.acc"]
    assert row["decision"] == ("equivalent" if row["ci_low"] <= 0 <= row["ci_high"] else row["decision"])
    assert row["decision"] != "undecided" and "δ" in (tmp_path / "wide" / "report.md").read_text()
    # the runs' own `margin` config key (a sweep's config): a bare number is the headline metric's
    for config in (tmp_path / "runs").rglob("config.yaml"):
        cfg = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**cfg, "margin": "0.5"}))
    result = build_report([tmp_path / "runs"], tmp_path / "own", formats=["png"])
    assert result.groups["test.acc.vs_baseline.margin"].dropna().eq(0.5).all()
    capsys.readouterr()
    for bad, named in (("-0.1", "'-0.1' must be a positive number"), ("test.err=0.1", "unknown metric 'test.err'")):
        assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "bad"), "--margin", bad]) == 2
        err = capsys.readouterr().err
        assert named in err and "test.acc" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()


def test_a_bad_margin_config_key_is_refused_before_a_run(tmp_path, cli):
    code, _, err = cli("run", "-m", "seed=0,1", f"results_dir={tmp_path}", "margin='test.acc=3'")
    assert code == 2 and "300 pp" in err and not list(tmp_path.rglob("summary.json"))


def _gains_one_example(root: Path, n_test: int = 359, record_sizes: bool = True) -> None:
    """p = 0.5 scores exactly one more of the n_test test examples than p = 0 in each of seeds 0, 1, 2."""
    for p in (0.0, 0.5):
        for seed in range(3):
            write_run(root, p=p, seed=seed)
    for summary in root.rglob("summary.json"):
        s = json.loads(summary.read_text())
        s["test"]["acc"] = (250 + 7 * s["seed"] + ("p0.5" in summary.parent.name)) / n_test
        if record_sizes:  # as every run regbench writes: examples per split
            s["data"] = {"n_train": 1150, "n_val": 288, "n_test": n_test}
        summary.write_text(json.dumps(s))


def test_seeds_that_all_gain_one_example_are_not_called_better_by_report_compare_or_seed_auto(tmp_path, capsys):
    from regbench.report.sequential import Record
    from regbench.report.table import metric_step
    from regbench.sweeps.auto_seeds import undecided

    _gains_one_example(tmp_path / "runs")
    result = build_report([tmp_path / "runs"], tmp_path / "out", formats=["png"], figures=[])
    assert result.table["data.n_test"].eq(359).all()  # runs.csv carries each split's size
    row = pd.read_csv(tmp_path / "out" / "comparisons.csv").set_index("metric").loc["test.acc"]
    assert row["decision"] != "better" and row["p_adj"] > 0.2  # was: better, by less than 1 pp (n = 3), p_adj = 0
    assert "every seed differs by exactly 0.002786; spread floored at one example (1/359)" in row["note"]
    assert "Zero spread is not certainty" in result.markdown.read_text()  # the legend says why
    # regbench compare judges the same way
    assert compare_main([str(tmp_path / "runs"), "--where", "dropout.p=0", "--out", str(tmp_path / "cmp")]) == 0
    capsys.readouterr()
    assert pd.read_csv(tmp_path / "cmp" / "compare.csv").at[0, "decision"] != "better"
    # seed=auto's look at its pilot of 3 seeds (K = 4 planned looks): undecided, so the sweep goes on
    assert undecided(tmp_path / "runs", 3, Record(pilot=3, max_seeds=20, looks_planned=4)) == (1, 1)
    # runs that did not record their split sizes (no step known) keep the exact difference
    _gains_one_example(tmp_path / "old", record_sizes=False)
    old = build_report([tmp_path / "old"], tmp_path / "old-out", formats=["png"], figures=[]).groups
    assert old["test.acc.vs_baseline.verdict"].dropna().tolist() == ["better, by less than 1 pp (n = 3)"]
    runs = result.table
    assert metric_step(runs, "test.acc") == 1 / 359 and metric_step(runs, "final.val_acc") == 1 / 288
    assert metric_step(runs, "final.gap_acc") == 1 / 288  # the coarser of its two splits: train (1150) and val
    assert metric_step(runs.assign(**{"trainer.train_eval_size": 100}), "final.gap_acc") == 1 / 100  # train subset
    assert metric_step(runs, "final.gap_loss") == 0.0 and metric_step(runs.drop(columns="data.n_test"), "test.acc") == 0
