"""`regbench compare`: matching configurations across two folders (or one split by --where), the
paired numbers recomputed independently from the run files, Welch where seeds do not pair, bad input."""

from __future__ import annotations

import json
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
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0 and (tmp_path / "cmp" / "compare.svg").exists()


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


@pytest.mark.parametrize("case", ["missing", "empty", "nothing_in_common", "metric", "where_key", "where_value",
                                  "where_all", "one_folder_no_where", "margin_value",
                                  "margin_metric"])
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
    }[case]
    out_dir = tmp_path / "out"
    code, out, err = _run(capsys, *args, "--out", out_dir)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("regbench: error:") and ("valid" in err or "usage:" in err)
    expected = {"missing": "nope", "empty": "no runs", "nothing_in_common": "no configuration in common",
                "metric": "test.accuracy", "where_key": "dropout.rate", "where_value": "0.9",
                "where_all": "every run", "one_folder_no_where": "--where", "margin_value": "'big' is not a number",
                "margin_metric": "unknown metric 'final.gap_loss'"}[case]
    assert expected in err
    if case.startswith("margin"):
        assert "METRIC one of test.acc" in err
    if case in ("metric", "where_key"):
        assert ("test.acc" if case == "metric" else "dropout.p") in err  # names the valid choices
    assert not out_dir.exists()
