"""`regbench run -m <grid> seed=auto`: looks of seeds until decided, with any launcher; a rerun
replays the looks and trains nothing again; bad input is one line, exit 2, nothing written.
(The rule itself, by simulation: test_verdicts.py.)"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import fast, run_dirs

from regbench.core.errors import ConfigError
from regbench.sweeps import auto_seeds

GRID = ["dataset=digits", "dataset.train_size=120", "model.hidden=[8]", "dropout=standard", "dropout.p=0,0.5"]


def _sweep_dir(root):
    (folder,) = [p for p in root.iterdir() if p.name.startswith("sweep-")]
    return folder


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=vectorized"]])
def test_seed_auto_adds_looks_until_the_budget_and_a_rerun_trains_nothing(cli, tmp_path, launcher):
    # a tiny 2-epoch net: its test accuracy differences stay undecided, so every planned look runs
    args = ["run", "-m", *fast(*GRID, "report=true"), "seed=auto", "hydra.sweeper.max_seeds=6",
            f"results_dir={tmp_path / 'runs'}", *launcher]
    code, out, err = cli(*args)
    assert code == 0, err
    folder = _sweep_dir(tmp_path / "runs")
    record = json.loads((folder / "seed_auto.json").read_text())
    comps = pd.read_csv(folder / "report" / "comparisons.csv")
    head = comps[comps["metric"] == "test.acc"].iloc[0]
    assert record["seeds"] in (3, 6)  # the planned looks of a budget of 6: 3, then 6
    if head["decision"] == "undecided":
        assert record["seeds"] == 6 and record["reason"] == "seed budget reached: 1 undecided"
    else:
        assert record["reason"] == "all decided"
    look = 1 if record["seeds"] == 3 else 2
    assert f"seed=auto: look {look}/2 at {record['seeds']} seeds per cell" in out
    assert f"stopped: {record['reason']}" in out and out.count("seed=auto: look") == look
    seeds = sorted(json.loads((d / "summary.json").read_text())["seed"] for d in run_dirs(folder))
    assert seeds == sorted(list(range(record["seeds"])) * 2)  # every cell got the same seeds
    assert record["looks_planned"] == 2 and (comps["looks"] == 2).all()  # the report reads the looks' level
    text = (folder / "report" / "report.md").read_text()
    assert f"**seed=auto**: {record['seeds']} seeds per cell" in text and record["reason"] in text
    assert "seed=auto hydra.sweeper.max_seeds=6" in text  # the Rerun command reruns it as seed=auto
    # a report of the folder above the sweep finds the sweep's record too: the same verdicts
    code, _, err = cli("report", str(tmp_path / "runs"), "--out", str(tmp_path / "above"))
    assert code == 0, err
    above = pd.read_csv(tmp_path / "above" / "comparisons.csv")
    pd.testing.assert_frame_equal(above, comps)
    # and `regbench compare --where` on the sweep judges at the same level (its 2 planned looks)
    code, out_c, err = cli("compare", str(folder), "--where", "dropout.p=0", "--metric", "test.acc")
    assert code == 0, err
    level = 100 * (1 - 0.05 / (2 * int(head["family_m"])))  # the report's family of test.acc, over 2 looks
    assert f"({level:.1f}%)" in out_c and "and the 2 planned looks of its seed=auto sweep" in out_c, out_c
    # a rerun of the same command: the same folder, every look replayed, nothing trained again
    before = sorted(run_dirs(tmp_path / "runs"))
    code, out2, err = cli(*args)
    assert code == 0, err and _sweep_dir(tmp_path / "runs") == folder
    assert sorted(run_dirs(tmp_path / "runs")) == before
    assert json.loads((folder / "seed_auto.json").read_text()) == record


def test_seed_auto_stops_at_the_pilot_when_all_is_decided(cli, tmp_path):
    # a margin of 90 pp: any interval of two digits nets' accuracy difference lies inside it
    code, out, err = cli("run", "-m", *fast(*GRID), "seed=auto", 'margin="test.acc=0.9"',
                         f"results_dir={tmp_path / 'runs'}")
    assert code == 0, err
    assert "seed=auto: look 1/4 at 3 seeds per cell: 1 of 1 comparison(s) decided; stopped: all decided" in out
    assert len(run_dirs(tmp_path / "runs")) == 6


@pytest.mark.parametrize(("extra", "words"), [
    (["-m", "seed=auto,1"], "seed=auto,1 mixes seed=auto with explicit seeds"),
    (["seed=auto"], "seed=auto needs -m"),
    (["-m", "seed=auto", "hydra.sweeper.max_seeds=2"], "hydra.sweeper.max_seeds=2 is below the pilot of 3"),
    (["-m", "seed=0,1", "hydra.sweeper.max_seeds=5"], "hydra.sweeper.max_seeds=5 only applies with seed=auto"),
])
def test_bad_seed_auto_input_is_one_line_exit_2_and_writes_nothing(cli, tmp_path, extra, words):
    code, out, err = cli("run", *fast(*GRID), *extra, f"results_dir={tmp_path / 'runs'}")
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.*"))


def test_the_rewrite_keeps_everything_else_and_the_sweep_name_is_the_typed_one():
    from regbench.cli.commands import default_sweep_name, hydra_args

    args = ["dropout.p=0,0.5", "seed=auto"]
    assert auto_seeds.rewrite(args, multirun=True) == ["dropout.p=0,0.5", auto_seeds.FLAG]
    assert auto_seeds.rewrite(["seed=1"], multirun=False) == ["seed=1"]
    assert hydra_args([*args, "-m"])[1] == f"sweep_name={default_sweep_name(args)}"
    with pytest.raises(ConfigError, match="seed=1,auto mixes"):
        auto_seeds.rewrite(["seed=1,auto"], multirun=True)
