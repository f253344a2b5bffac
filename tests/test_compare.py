"""`regbench compare`: matching configurations across two folders (or one split by --where), the
paired numbers recomputed independently from the run files, Welch where seeds do not pair, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats as sps
from test_report import write_run

from regbench.cli.commands import main

RATES = (0.0, 0.3, 0.5)


def _sweep(root: Path, weight_decay: float = 0.0, seeds=(0, 1, 2), rates=RATES) -> Path:
    for p in rates:
        for s in seeds:
            write_run(root, p=p, seed=s, weight_decay=weight_decay)
    return root


def _test_acc(root: Path) -> dict[tuple[float, int], float]:
    """(p, seed) -> test accuracy, read straight from each summary.json / config (no regbench code)."""
    import yaml

    out = {}
    for summary in root.rglob("summary.json"):
        s = json.loads(summary.read_text())
        cfg = yaml.safe_load((summary.parent / "config.yaml").read_text())
        out[cfg["dropout"]["p"], s["seed"]] = s["test"]["acc"]
    return out


def _written(out: str) -> list[Path]:
    """The files the line after the table names ('...; written: a, b')."""
    line = next(line for line in out.splitlines() if "; written: " in line)
    return [Path(p) for p in line.split("; written: ", 1)[1].split(", ")]


def _run(capsys, *args):
    code = main(["compare", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_two_sweeps_matched_by_configuration_and_recomputed_independently(tmp_path, capsys):
    a, b = _sweep(tmp_path / "A"), _sweep(tmp_path / "B", weight_decay=1e-3)
    code, out, err = _run(capsys, a, b, "--out", tmp_path / "cmp")
    assert code == 0, err
    assert "optim.weight_decay: 0 → 0.001" in out and "metric: test.acc" in out
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert len(table) == 3 and set(table["test"]) == {"paired t"} and (table["n"] == 3).all()
    acc_a, acc_b = _test_acc(a), _test_acc(b)
    p_values = []
    for p in RATES:
        row = table[table["configuration"] == f"dropout.p={p:g}"].iloc[0]
        x = [acc_b[p, s] for s in range(3)]
        y = [acc_a[p, s] for s in range(3)]
        res = sps.ttest_rel(x, y)
        ci95, ci = res.confidence_interval(0.95), res.confidence_interval(1 - 0.05 / 3)  # one family of 3
        assert row["diff"] == pytest.approx(sum(x) / 3 - sum(y) / 3)
        assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((ci95.low, ci95.high))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
        assert row["p"] == pytest.approx(res.pvalue)
        assert row["p_adj"] == pytest.approx(min(1.0, 3 * res.pvalue)) and row["family_m"] == 3
        assert (row["decision"] in ("better", "worse")) == (ci.low > 0 or ci.high < 0) == (row["p_adj"] < 0.05)
        p_values.append(res.pvalue)
    assert (table["margin"] == 0.01).all() and "Verdicts: better / worse" in out and "Bonferroni over 3" in out
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    # --format's default is the report's (DEFAULT_REPORT_FORMATS: PNG only); it wrote compare.svg besides, unnamed
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == ["compare.csv", "compare.png"]
    assert _written(out) == [tmp_path / "cmp" / "compare.csv", tmp_path / "cmp" / "compare.png"]


def test_one_folder_split_by_where(tmp_path, capsys):
    root = _sweep(tmp_path / "sweep")
    code, out, err = _run(capsys, root, "--where", "dropout.p=0", "--metric", "final.val_acc")
    assert code == 0, err
    table = pd.read_csv(root / "compare" / "compare.csv")  # default: <folder>/compare
    assert list(table["variant"]) == ["dropout.p=0.3", "dropout.p=0.5"] and (table["metric"] == "final.val_acc").all()
    assert any(word in out for word in ("undecided", "equivalent", "better", "worse"))


def test_seeds_that_do_not_pair_use_welch(tmp_path, capsys):
    a, b = _sweep(tmp_path / "A", rates=(0.3,)), _sweep(tmp_path / "B", weight_decay=1e-3, seeds=(5, 6, 7),
                                                         rates=(0.3,))
    code, out, err = _run(capsys, a, b, "--out", tmp_path / "cmp")
    assert code == 0, err
    row = pd.read_csv(tmp_path / "cmp" / "compare.csv").iloc[0]
    x, y = list(_test_acc(b).values()), list(_test_acc(a).values())
    assert row["test"] == "Welch t" and row["p"] == pytest.approx(sps.ttest_ind(x, y, equal_var=False).pvalue)
    assert "Welch t, n = 3 vs 3" in out


def test_single_seed_sides_are_said_in_words(tmp_path, capsys):
    a, b = _sweep(tmp_path / "A", seeds=(0,), rates=(0.3,)), _sweep(tmp_path / "B", 1e-3, seeds=(0,), rates=(0.3,))
    code, out, _ = _run(capsys, a, b, "--out", tmp_path / "cmp")
    assert code == 0 and "not testable (n = 1)" in out and "nan" not in out.lower()
    # nothing was tested, so nothing was adjusted: this said "Bonferroni over 0 comparison(s)"
    assert "no comparison is testable" in out and "over 0" not in out
    assert pd.read_csv(tmp_path / "cmp" / "compare.csv").at[0, "family_m"] == 0


def test_every_metric_compare_accepts_says_its_margin_in_full(tmp_path, capsys):
    """`--metric seconds` printed "δ = δ" (an unfilled placeholder): seconds, epochs, Brier score, entropy and
    mutual information have no default margin. Every metric compare accepts is compared here: the line after the
    table either gives δ or says there is none, and no verdict reads "±δ"."""
    from test_report import write_run

    from regbench.cli.report_commands import compare_main
    from regbench.report import compare
    from regbench.rules import verdicts

    for p in (0.0, 0.3):
        for s in (0, 1, 2):
            write_run(tmp_path / "runs", p=p, seed=s, mc=True)
    with pytest.raises(Exception, match="valid choices") as info:
        compare.compare([tmp_path / "runs"], "dropout.p=0", "no.such.metric")
    metrics = str(info.value).split("valid choices: ", 1)[1].split(", ")
    assert {"seconds", "epochs_completed", "test.acc", "calibration.test.brier"} <= set(metrics)
    without = []
    for metric in metrics:
        result = compare.compare([tmp_path / "runs"], "dropout.p=0", metric)
        words = compare.margin_words(result)
        if math.isnan(verdicts.default_margin(metric)):
            without.append(metric)
            assert words.startswith(f"no δ for {metric} (no default margin") and "δ = " not in words
        else:
            assert words == f"δ = {verdicts.margin_text(metric, verdicts.default_margin(metric))}"
        assert compare.family_text(result) == "Bonferroni over 1 comparison(s)", metric
        assert not result.table["verdict"].str.contains("δ").any(), metric
    assert {"seconds", "epochs_completed", "best_epoch", "calibration.test.brier"} <= set(without)
    # through the command line: the line after the table, in full; with --margin the metric has a δ
    assert compare_main([str(tmp_path / "runs"), "--where", "dropout.p=0", "--metric", "seconds"]) == 0
    out = capsys.readouterr().out
    assert "Bonferroni over 1 comparison(s); no δ for seconds (no default margin" in out and "δ = δ" not in out
    assert compare_main([str(tmp_path / "runs"), "--where", "dropout.p=0", "--metric", "seconds",
                         "--margin", "0.5"]) == 0
    assert "δ = 0.5; written:" in capsys.readouterr().out


def test_a_metric_without_margin_is_equivalent_only_when_identical_and_says_so(tmp_path, capsys):
    """epochs_completed is the same in every run: equivalent without a δ, in words ("within ±δ" before)."""
    root = _sweep(tmp_path / "sweep", rates=(0.0, 0.3))
    code, out, err = _run(capsys, root, "--where", "dropout.p=0", "--metric", "epochs_completed")
    assert code == 0, err
    row = pd.read_csv(root / "compare" / "compare.csv").iloc[0]
    assert row["decision"] == "equivalent" and row["verdict"] == "equivalent (identical in every seed; n = 3)"
    table_and_line = out.split("Verdicts:")[0]  # the legend after them explains δ in general
    assert "±δ" not in table_and_line and "no δ for epochs_completed" in table_and_line


def test_format_default_is_the_reports_and_every_file_written_is_named(tmp_path, capsys):
    from regbench.cli.report_commands import compare_parser, report_parser
    from regbench.rules.config import DEFAULT_REPORT_FORMATS

    default = ",".join(DEFAULT_REPORT_FORMATS)
    assert compare_parser().get_default("format") == report_parser().get_default("format") == default
    root = _sweep(tmp_path / "sweep", rates=(0.0, 0.3))
    code, out, err = _run(capsys, root, "--where", "dropout.p=0", "--format", "svg,pdf", "--out", tmp_path / "cmp")
    assert code == 0, err
    files = sorted((tmp_path / "cmp").iterdir())
    assert [p.name for p in files] == ["compare.csv", "compare.pdf", "compare.png", "compare.svg"]
    assert sorted(_written(out)) == files  # PNG always, then each format asked for


def test_from_the_shell(tmp_path):
    """The installed `regbench` executable: a repeated --where and a --where without a value are one line, exit
    2, nothing written; --metric seconds prints its whole line and writes what --format's default says."""
    exe = Path(sys.executable).with_name("regbench")
    assert exe.exists(), "regbench console script not installed next to the interpreter"
    root = _sweep(tmp_path / "sweep", rates=(0.0, 0.3))

    def shell(*args):
        return subprocess.run([str(exe), "compare", str(root), *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)

    for args, expected in (
        (["--where", "dropout.p=0", "--where", "seed=0"], "--where is given twice (--where dropout.p=0 and "
                                                          "--where seed=0)"),
        (["--where", "dropout.p"], "--where dropout.p needs a value; valid: --where dropout.p=VALUE with VALUE one "
                                   "of 0, 0.3"),
    ):
        proc = shell(*args)
        assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith("regbench: error: ") and len(proc.stderr.strip().splitlines()) == 1
        assert expected in proc.stderr
        assert not (root / "compare").exists()
    proc = shell("--where", "dropout.p=0", "--metric", "seconds")
    assert proc.returncode == 0, proc.stderr
    assert "Bonferroni over 1 comparison(s); no δ for seconds" in proc.stdout and "δ = δ" not in proc.stdout
    written = [root / "compare" / "compare.csv", root / "compare" / "compare.png"]
    assert _written(proc.stdout) == written and sorted((root / "compare").iterdir()) == written


@pytest.mark.parametrize("case", ["missing", "empty", "nothing_in_common", "metric", "where_key", "where_value",
                                  "where_all", "one_folder_no_where", "margin_value",
                                  "margin_metric", "where_twice", "where_three_times", "where_no_value",
                                  "where_empty_value"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, case):
    a = _sweep(tmp_path / "A", rates=(0.0, 0.3))
    other = {"missing": [tmp_path / "nope"], "empty": [tmp_path / "empty"],
             "nothing_in_common": [_sweep(tmp_path / "B", rates=(0.5,))]}
    (tmp_path / "empty").mkdir()
    args = {
        "missing": [a, *other["missing"]],
        "empty": [a, *other["empty"]],
        "nothing_in_common": [a, *other["nothing_in_common"]],
        "metric": [a, "--where", "dropout.p=0", "--metric", "test.accuracy"],
        "where_key": [a, "--where", "dropout.rate=0"],
        "where_value": [a, "--where", "dropout.p=0.9"],
        "where_all": [a, "--where", "dropout.name=standard"],
        "one_folder_no_where": [a],
        "margin_value": [a, "--where", "dropout.p=0", "--margin", "big"],
        "margin_metric": [a, "--where", "dropout.p=0", "--margin", "final.gap_loss=0.1"],
        # compare splits on one key: a second --where was dropped silently (the last one won), exit 0
        "where_twice": [a, "--where", "dropout.p=0", "--where", "optim.weight_decay=0"],
        "where_three_times": [a, "--where", "dropout.p=0", "--where", "dropout.p=0.3", "--where", "seed=0"],
        # the key is right, its value is missing: this said "'dropout.p' is not a config key", listing dropout.p
        "where_no_value": [a, "--where", "dropout.p"],
        "where_empty_value": [a, "--where", "dropout.p="],
    }[case]
    out_dir = tmp_path / "out"
    code, out, err = _run(capsys, *args, "--out", out_dir)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("regbench: error:") and ("valid" in err or "usage:" in err)
    expected = {"missing": "nope", "empty": "no runs", "nothing_in_common": "no configuration in common",
                "metric": "test.accuracy", "where_key": "dropout.rate", "where_value": "0.9",
                "where_all": "every run", "one_folder_no_where": "--where", "margin_value": "'big' is not a number",
                "margin_metric": "unknown metric 'final.gap_loss'",
                "where_twice": "--where is given twice (--where dropout.p=0 and --where optim.weight_decay=0)",
                "where_three_times": "given 3 times (--where dropout.p=0, --where dropout.p=0.3 and --where seed=0)",
                "where_no_value": "--where dropout.p needs a value; valid: --where dropout.p=VALUE with VALUE one "
                                  "of 0, 0.3",
                "where_empty_value": "--where dropout.p= needs a value; valid: --where dropout.p=VALUE"}[case]
    assert expected in err
    assert "not a config key" not in err or case == "where_key"
    if case.startswith("margin"):
        assert "METRIC one of test.acc" in err
    if case in ("metric", "where_key"):
        assert ("test.acc" if case == "metric" else "dropout.p") in err  # names the valid choices
    assert not out_dir.exists()
