"""The CLI from the outside: run folder contract, sweeps, bad input, list/help, user experiments."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import FAST, read_metrics, read_summary, run_dirs

from regbench.records.results import METRIC_COLUMNS


def test_default_run_writes_the_run_folder_contract(cli, tmp_path):
    code, out, err = cli("run", *FAST)
    assert code == 0, err
    [run] = run_dirs(tmp_path / "runs")
    assert f"results: {run.relative_to(tmp_path)}" in out

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["dataset"]["name"] == "digits" and cfg["model"]["name"] == "mlp" and cfg["seed"] == 0
    assert "hydra" not in cfg

    rows = read_metrics(run)
    assert list(rows[0]) == METRIC_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for r in rows:
        f = {k: float(v) for k, v in r.items()}
        assert math.isclose(f["gap_acc"], f["train_acc"] - f["val_acc"], abs_tol=1e-12)
        assert math.isclose(f["gap_loss"], f["val_loss"] - f["train_loss"], abs_tol=1e-12)
        assert 0 <= f["train_acc"] <= 1 and 0 <= f["val_acc"] <= 1 and f["seconds"] > 0

    s = read_summary(run)
    assert s["status"] == "completed" and s["seed"] == 0 and s["device"] == "cpu"
    assert s["epochs_completed"] == 2 and s["best_epoch"] in (1, 2)
    assert s["final"]["val_acc"] == pytest.approx(float(rows[-1]["val_acc"]))
    best_row = rows[s["best_epoch"] - 1]
    assert s["best"]["val_loss"] == pytest.approx(float(best_row["val_loss"]))
    assert 0 <= s["test"]["acc"] <= 1
    assert len(s["config_hash"]) == 16 and s["versions"]["torch"]
    assert "git_commit" in s
    assert s["command"].startswith("regbench run") and "trainer.epochs=2" in s["overrides"]


def test_multirun_flag_anywhere_runs_the_grid_into_one_sweep_folder(cli, tmp_path):
    with_report = [o for o in FAST if o != "report=false"]
    code, out, err = cli("run", "dropout=standard", "dropout.p=0,0.5", "-m", "seed=0,1", *with_report)
    assert code == 0, err
    runs = run_dirs(tmp_path / "runs")
    assert len(runs) == 4
    assert len({r.parent for r in runs}) == 1 and runs[0].parent.name.startswith("sweep-standard-dropout.p+seed-")
    combos = {(read_summary(r)["seed"], yaml.safe_load((r / "config.yaml").read_text())["dropout"]["p"]) for r in runs}
    assert combos == {(0, 0.0), (0, 0.5), (1, 0.0), (1, 0.5)}
    assert "sweep finished: 4 runs: 4 completed" in out
    report = runs[0].parent / "report"  # written by the multirun callback
    assert (report / "report.md").exists() and (report / "rate_sweep.png").exists()
    assert len((report / "runs.csv").read_text().splitlines()) == 1 + 4
    # the rerun command of each cell names its own values, not the sweep
    assert all(",".join(["0", "0.5"]) not in read_summary(r)["command"] for r in runs)


def test_same_config_twice_gets_two_folders_and_the_same_hash(cli, tmp_path):
    assert cli("run", *FAST)[0] == 0
    assert cli("run", *FAST, "resume=false")[0] == 0
    a, b = run_dirs(tmp_path / "runs")
    assert a != b
    assert read_summary(a)["config_hash"] == read_summary(b)["config_hash"]
    assert cli("run", *FAST, "seed=1", "results_dir=other")[0] == 0
    [c] = run_dirs(tmp_path / "other")
    assert read_summary(c)["config_hash"] != read_summary(a)["config_hash"]


def test_unknown_command_is_one_line_exit_2(cli):
    code, _, err = cli("train")
    assert code == 2 and "train" in err and "run, report, compare, list" in err


def test_list_shows_every_registry(cli):
    code, out, _ = cli("list")
    assert code == 0
    for name in ("digits", "mnist1d", "cifar10", "synthetic", "mlp", "cnn", "standard", "none",
                 "adamw", "sgd", "mlp_dropout"):
        assert name in out
    for section in ("datasets:", "models:", "dropout:", "optimizers:", "augmentations:", "experiments:"):
        assert section in out


def test_help_texts(cli):
    code, out, _ = cli("--help")
    assert code == 0 and "regbench run" in out and "regbench report" in out
    code, out, _ = cli("run", "--help")
    assert code == 0
    assert "dropout" in out and "dataset" in out and "regbench run -m" in out


def test_user_experiment_from_config_dir(cli, tmp_path):
    user = tmp_path / "my_configs" / "experiment"
    user.mkdir(parents=True)
    (user / "tiny_wide.yaml").write_text(
        "# @package _global_\nmodel:\n  hidden: [48]\ntrainer:\n  epochs: 1\nname: tiny_wide\n"
    )
    code, _, err = cli("run", "--config-dir", str(tmp_path / "my_configs"), "+experiment=tiny_wide",
                       "trainer.progress=false")
    assert code == 0, err
    [run] = run_dirs(tmp_path / "runs")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["hidden"] == [48] and cfg["trainer"]["epochs"] == 1
    assert "_tiny_wide-digits-mlp-none-s0_" in run.name


@pytest.mark.parametrize("order", ["-m first", "-m last", "-m between"])
def test_multirun_next_to_config_dir_in_any_order(cli, tmp_path, order):
    user = tmp_path / "my_configs" / "experiment"
    user.mkdir(parents=True)
    (user / "my_grid.yaml").write_text("# @package _global_\nmodel:\n  hidden: [16]\ntrainer:\n  epochs: 1\n")
    line = {"-m first": ["-m", "--config-dir", str(tmp_path / "my_configs"), "+experiment=my_grid", "seed=0,1"],
            "-m last": ["--config-dir", str(tmp_path / "my_configs"), "+experiment=my_grid", "seed=0,1", "-m"],
            "-m between": ["+experiment=my_grid", "--config-dir", str(tmp_path / "my_configs"), "-m", "seed=0,1"]}
    code, out, err = cli("run", *line[order], "trainer.progress=false", "report=false")
    assert code == 0, err
    runs = run_dirs(tmp_path / "runs")
    assert len(runs) == 2 and {r.parent.name for r in runs} == {"sweep-my_grid-seed-" + runs[0].parent.name[-8:]}


def test_hydra_options_go_first_and_the_overrides_after():
    from regbench.cli.commands import hydra_args, split_flags

    assert split_flags(["a=1", "--config-dir", "d", "b=2", "--info", "defaults", "-cn", "x", "--resolve"]) == (
        ["--config-dir", "d", "--info", "defaults", "-cn", "x", "--resolve"], ["a=1", "b=2"])
    # --info's topic is optional: written out, as argparse would take `a=1` for the topic
    assert split_flags(["--info", "a=1"]) == (["--info", "all"], ["a=1"])
    assert split_flags(["seed=1", "-5"]) == ([], ["seed=1", "-5"])  # a negative number is not an option
    line = hydra_args(["a=1,2", "-cd", "d", "-m"])
    assert line[:3] == ["-cd", "d", "--multirun"] and line[3].startswith("sweep_name=") and line[4:] == ["a=1,2"]


def test_multirun_with_cfg_prints_every_cell_and_info_the_first(cli):
    code, out, err = cli("run", "-m", "dropout=standard", "dropout.p=0,0.5", "--cfg", "job")
    assert code == 0, err
    assert [ln for ln in out.splitlines() if ln.startswith("# cell")] == ["# cell 1/2: dropout.p=0",
                                                                          "# cell 2/2: dropout.p=0.5"]
    assert out.count("\n  p: 0.5\n") == 1 and out.count("\n  p: 0.0\n") == 1
    code, out, err = cli("run", "--info", "defaults", "-m", "seed=0,1")
    assert code == 0 and out.startswith("# cell 1/2: seed=0") and "Defaults List" in out, err
    code, out, err = cli("run", "-m", "dropout.p=interval(0,1)", "--cfg", "job")
    assert code == 2 and "dropout.p=interval(0,1) is a continuous range" in err


def test_options_take_either_form_and_a_printed_config_shows_sweep_settings(cli):
    # --cfg=job is --cfg job: with -m each cell is printed (the = form went to Hydra, which refused -m with --cfg)
    code, out, err = cli("run", "-m", "dropout=standard", "dropout.p=0,0.5", "--cfg=job")
    assert code == 0 and out.count("# cell ") == 2, err
    # --info without a topic before an override: argparse took the override for the topic (its usage block)
    code, out, err = cli("run", "--info", "seed=1")
    assert code == 0 and "Defaults List" in out and "seed: 1" in out, err
    # printing runs nothing, so a sweep-only setting is shown, not refused
    code, out, err = cli("run", "--cfg", "hydra", "hydra/launcher=basic", "hydra.sweeper.max_seeds=5")
    assert code == 0 and "RegbenchBasicLauncher" in out and "max_seeds: 5" in out, err


@pytest.mark.parametrize(("text", "message"), [
    ("trainer:\n  epochs: abc\n",
     "my_configs/experiment/bad.yaml: trainer.epochs: Value 'abc' of type 'str' could not be converted to Integer"),
    ("trainer:\n  epochz: 3\n", "my_configs/experiment/bad.yaml: unknown key 'trainer.epochz'; did you mean "
                                 "trainer.epochs? valid keys in trainer: epochs, batch_size"),
    ("trainer: [\n", "experiment/bad.yaml (line 3, column 1): expected the node content"),
])
@pytest.mark.parametrize("multirun", [[], ["-m", "seed=0,1"]])
def test_user_config_that_fails_names_the_file_the_key_and_the_reason(cli, tmp_path, text, message, multirun):
    user = tmp_path / "my_configs" / "experiment"
    user.mkdir(parents=True)
    (user / "bad.yaml").write_text("# @package _global_\n" + text)
    code, out, err = cli("run", "--config-dir", str(tmp_path / "my_configs"), "+experiment=bad", *multirun)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "runs").exists()


def test_shipped_experiment_composes(make_cfg):
    cfg = make_cfg("+experiment=mlp_dropout")
    assert cfg.dropout.name == "standard" and cfg.dataset.name == "mnist1d" and cfg.dataset.train_size == 1000


def test_sweep_folder_ignores_override_order_and_launcher_options():
    from regbench.cli.commands import default_sweep_name

    a = default_sweep_name(["seed=0,1", "trainer.epochs=1"])
    assert a == default_sweep_name(["trainer.epochs=1", "seed=0,1", "hydra/launcher=vectorized", "report=false"])
    assert a != default_sweep_name(["seed=0,1", "trainer.epochs=2"])


def test_folder_names_carry_the_experiment_groups_and_swept_values(cli, tmp_path):
    from regbench.cli.commands import default_sweep_name

    assert default_sweep_name(["+experiment=cnn_spatialdrop"]).startswith("sweep-cnn_spatialdrop-")
    a = default_sweep_name(["dropout=standard", "dropout.p=0,0.5"])
    b = default_sweep_name(["dropout=gaussian", "dropout.p=0,0.5"])
    assert a.startswith("sweep-standard-dropout.p-") and b.startswith("sweep-gaussian-dropout.p-")
    # a list value is one value, not a swept key; Hydra's sweep syntaxes are swept keys
    assert default_sweep_name(["model.hidden=[100,100]", "seed=0,1"]).startswith("sweep-seed-")
    assert default_sweep_name(["seed=range(3)", "dropout=choice(none,standard)"]).startswith("sweep-dropout+seed-")
    code, out, err = cli("run", "-m", *FAST, "model=cnn", "dataset=mnist1d", "dataset.num_samples=200",
                         "dropout=spatial", "dropout.p=0", "dropout.p_conv=0.1,0.3", "optim=adam,sgd")
    assert code == 0, err
    names = sorted(r.name.split("_", 1)[1].rsplit("_", 1)[0] for r in run_dirs(tmp_path / "runs"))
    assert names == sorted(f"mnist1d-cnn-spatial-p0-pconv{p}-{o}-s0" for p in ("0.1", "0.3") for o in ("adam", "sgd"))
    assert "cell" in out and "dropout.p_conv=0.3 optim=sgd" in out  # the closing table names the cells


@pytest.mark.parametrize("sweep", [["-m", "seed=0,1", "report=false"], ["seed=0"]], ids=["sweep", "lone run"])
def test_a_run_or_a_sweep_without_its_report_imports_no_report_libraries(tmp_path, sweep):
    # pandas + scipy.stats + matplotlib cost ~2 s of start-up: only a report (or seed=auto's looks) needs them
    heavy = ("pandas", "matplotlib", "scipy.stats", "regbench.report")
    code = ("import sys; from regbench.cli.commands import main; "
            f"rc = main(['run', *{sweep!r}, 'trainer.epochs=1', 'trainer.progress=false', 'model.hidden=[8]', "
            "'resume=false']); "
            f"print(rc, sorted(m for m in {heavy!r} if m in sys.modules))")
    for _ in range(2):  # the first fills the dataset cache (scikit-learn's loader imports pandas and scipy.stats)
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr


def test_the_program_returns_mains_code_and_skips_the_last_collection():
    """The console script is console_main: main()'s exit code, with every object frozen out of the interpreter's
    final garbage collection (~0.5 s of each exit once torch is imported); main() itself leaves gc alone."""
    import tomllib

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["regbench"] == "regbench.cli:console_main"
    code = ("import gc, sys; from regbench.cli import console_main, main; "
            "sys.argv = ['regbench', 'nonsense']; a = main(); frozen = gc.get_freeze_count(); "
            "b = console_main(); print(a, frozen, b, gc.get_freeze_count() > 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["2", "0", "2", "True"], proc.stderr
