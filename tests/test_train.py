"""The training loop and its writers: determinism, strength 0, early stopping, divergence,
interruption, weight-decay groups, schedules, folder uniqueness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, read_metrics, read_summary, run_dirs
from omegaconf import OmegaConf

from regbench.engine.optimizers import SGDW, build_optimizer, param_groups
from regbench.engine.train import run
from regbench.records import results
from regbench.rules.config import Config, config_hash

NOT_TIMING = [c for c in results.METRIC_COLUMNS if c != "seconds"]


def _metrics_without_time(run_dir: Path) -> list[dict]:
    return [{k: r[k] for k in NOT_TIMING} for r in read_metrics(run_dir)]


def test_same_seed_same_metrics_on_cpu(make_cfg, tmp_path):
    cfg = make_cfg(*FAST, "dropout=standard", "dropout.p=0.3", f"results_dir={tmp_path}")
    a, b = run(cfg)["run_dir"], run(cfg)["run_dir"]
    assert _metrics_without_time(Path(a)) == _metrics_without_time(Path(b))
    c = run(make_cfg(*FAST, "dropout=standard", "dropout.p=0.3", "seed=1", f"results_dir={tmp_path}"))["run_dir"]
    assert _metrics_without_time(Path(a)) != _metrics_without_time(Path(c))


def test_dropout_rate_zero_reproduces_the_baseline_bit_for_bit(make_cfg, tmp_path):
    base = run(make_cfg(*FAST, "dropout=none", f"results_dir={tmp_path}"))
    zero = run(make_cfg(*FAST, "dropout=standard", "dropout.p=0", "dropout.p_input=0", f"results_dir={tmp_path}"))
    assert _metrics_without_time(Path(base["run_dir"])) == _metrics_without_time(Path(zero["run_dir"]))
    assert base["test"] == zero["test"]


def test_dropout_changes_training(make_cfg, tmp_path):
    base = run(make_cfg(*FAST, f"results_dir={tmp_path}"))
    drop = run(make_cfg(*FAST, "dropout=standard", "dropout.p=0.5", f"results_dir={tmp_path}"))
    assert _metrics_without_time(Path(base["run_dir"])) != _metrics_without_time(Path(drop["run_dir"]))


def test_early_stopping_restores_the_best_epoch(make_cfg, tmp_path):
    # Tiny training set + big model + high lr: validation loss turns up after a few epochs.
    cfg = make_cfg("trainer.epochs=40", "trainer.patience=3", "trainer.select=val_loss", "trainer.progress=false",
                   "dataset.train_size=100",
                   "model.hidden=[256]", "optim.lr=0.01", f"results_dir={tmp_path}")
    s = run(cfg)
    rows = read_metrics(Path(s["run_dir"]))
    val = [float(r["val_loss"]) for r in rows]
    assert s["stopped_early"] and len(rows) < 40
    assert s["best_epoch"] == 1 + val.index(min(val))
    assert len(rows) == s["best_epoch"] + 3  # stopped after `patience` epochs without improvement
    assert s["test"]["weights"] == "val_loss" and s["test"]["epoch"] == s["best_epoch"]
    assert s["test_final"]["epoch"] == len(rows) and s["test_final"] != s["test"]
    on_disk = read_summary(Path(s["run_dir"]))
    assert on_disk["best"]["val_loss"] == pytest.approx(min(val))


def test_divergence_is_recorded_and_rows_kept(make_cfg, tmp_path):
    s = run(make_cfg(*FAST, "trainer.epochs=5", "optim=sgd", "optim.lr=1e6", f"results_dir={tmp_path}"))
    assert s["status"] == "diverged" and "non-finite" in s["error"]
    rows = read_metrics(Path(s["run_dir"]))
    assert 1 <= len(rows) < 5 and read_summary(Path(s["run_dir"]))["epochs_completed"] == len(rows)


def test_diverged_cell_does_not_stop_a_sweep(cli, tmp_path):
    code, out, _ = cli("run", "-m", "optim=sgd", "optim.lr=0.05,1e6", *FAST)
    assert code == 1  # the sweep reports that not every run completed
    statuses = sorted(read_summary(r)["status"] for r in run_dirs(tmp_path / "runs"))
    assert statuses == ["completed", "diverged"]
    assert "2 runs: 1 completed, 1 diverged" in out


def test_sigterm_mid_run_writes_interrupted_and_whole_rows(tmp_path):
    cmd = [sys.executable, "-m", "regbench.cli", "run", "trainer.epochs=500", "dataset=synthetic",
           "dataset.num_samples=2000", "trainer.progress=false", f"results_dir={tmp_path}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until a few epochs are on disk
        csvs = [d / "metrics.csv" for d in run_dirs(tmp_path) if (d / "metrics.csv").exists()]  # walk-safe
        if csvs and len(csvs[0].read_text().splitlines()) > 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    [run_dir] = run_dirs(tmp_path)
    s = read_summary(run_dir)
    assert s["status"] == "interrupted"
    rows = read_metrics(run_dir)
    assert s["epochs_completed"] == len(rows) >= 3
    assert all(len(r) == len(results.METRIC_COLUMNS) and None not in r.values() for r in rows)


def test_weight_decay_only_on_weights_by_default():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    decay, no_decay = param_groups(model, 0.1, decay_norm_and_bias=False)
    assert {p.ndim for p in decay["params"]} == {2} and len(decay["params"]) == 2
    assert {p.ndim for p in no_decay["params"]} == {1} and no_decay["weight_decay"] == 0.0
    [everything] = param_groups(model, 0.1, decay_norm_and_bias=True)
    assert len(everything["params"]) == len(list(model.parameters()))


def test_sgdw_decouples_decay_from_the_gradient():
    """With a zero gradient SGDW shrinks weights by exactly lr*wd; coupled SGD momentum-feeds the decay."""
    w = torch.nn.Parameter(torch.ones(2, 2))
    opt = SGDW([{"params": [w], "weight_decay": 0.5}], lr=0.1, momentum=0.9)
    w.grad = torch.zeros_like(w)
    opt.step()
    assert torch.allclose(w, torch.full((2, 2), 1 - 0.1 * 0.5))
    v = torch.nn.Parameter(torch.ones(2, 2))
    coupled = torch.optim.SGD([v], lr=0.1, momentum=0.9, weight_decay=0.5)
    v.grad = torch.zeros_like(v)
    coupled.step()
    coupled.step()
    w.grad = torch.zeros_like(w)
    opt.step()
    assert not torch.allclose(v, w)  # momentum carries coupled decay forward; decoupled decay does not


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimizers_and_cosine_schedule(name):
    cfg = OmegaConf.merge(OmegaConf.structured(Config), {"optim": {"name": name, "schedule": "cosine",
                                                                   "warmup_epochs": 1}}).optim
    model = torch.nn.Linear(3, 2)
    opt, sched = build_optimizer(cfg, model, epochs=4, steps_per_epoch=5)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(cfg.lr / 5)  # warm-up starts at 1/warmup_steps
    assert max(lrs) == pytest.approx(cfg.lr)
    assert lrs[-1] < 0.05 * cfg.lr  # cosine has decayed almost to zero by the last step


def test_step_schedule():
    cfg = OmegaConf.merge(OmegaConf.structured(Config), {"optim": {"schedule": "step", "step_size": 2,
                                                                   "gamma": 0.5}}).optim
    opt, sched = build_optimizer(cfg, torch.nn.Linear(3, 2), epochs=6, steps_per_epoch=3)
    lrs = []
    for _ in range(18):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == lrs[5] == cfg.lr and lrs[6] == lrs[11] == cfg.lr / 2 and lrs[12] == cfg.lr / 4


def test_run_folders_never_collide_even_in_the_same_second(make_cfg, tmp_path):
    cfg = make_cfg(f"results_dir={tmp_path}")
    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(results.create_run_dir(cfg))) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 40 and all(p.is_dir() for p in made)


def test_metrics_writer_appends_whole_rows(tmp_path):
    w = results.MetricsWriter(tmp_path / "m.csv", ["epoch", "loss"])
    w.append({"epoch": 1, "loss": 0.5})
    w.append({"epoch": 2, "loss": float("nan")})
    w.close()
    assert (tmp_path / "m.csv").read_text() == "epoch,loss\n1,0.5\n2,nan\n"


def test_config_hash_ignores_where_results_go(make_cfg):
    a = make_cfg("results_dir=a", "sweep_name=x")
    b = make_cfg("results_dir=b")
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(make_cfg("dropout=standard"))


def test_no_stray_files_in_the_working_directory(cli, tmp_path):
    assert cli("run", *FAST, "dataset=mnist1d", "dataset.num_samples=500")[0] == 0
    assert sorted(os.listdir(tmp_path)) == ["runs"]


def test_tensorboard_logger_mirrors_epochs_and_hparams(make_cfg, tmp_path):
    pytest.importorskip("tensorboard")  # installed by `make test` (extra "tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    s = run(make_cfg(*FAST, "logger=tensorboard", f"results_dir={tmp_path}"))
    tb = Path(s["run_dir"]) / "tensorboard"
    events = EventAccumulator(str(tb)).Reload()
    loss = events.Scalars("loss/val")
    assert [e.step for e in loss] == [1, 2]
    assert loss[-1].value == pytest.approx(s["final"]["val_loss"], rel=1e-5)
    assert "acc/train" in events.Tags()["scalars"]
    assert "hparam/final_val_acc" in events.Tags()["scalars"]  # the HParams tab's metrics
    assert events.PluginTagToContent("hparams")  # and the run's hyperparameters


def test_tensorboard_missing_is_a_one_line_config_error(make_cfg, tmp_path, monkeypatch):
    from regbench.core.errors import ConfigError
    from regbench.records.loggers import check_loggers

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r'logger=tensorboard needs the optional extra: pip install -e "\.\[tensorb'):
        check_loggers(make_cfg("logger=tensorboard"))


def test_dropblock_linear_ramp_reaches_the_full_rate_on_the_last_step(make_cfg, tmp_path, monkeypatch):
    from regbench.regularizers.dropblock import DropBlock

    seen = []
    original = DropBlock.set_progress
    monkeypatch.setattr(DropBlock, "set_progress", lambda self, t: (seen.append(t), original(self, t))[1])
    run(make_cfg(*FAST, "model=cnn", "dropout=dropblock", "dropout.schedule=linear", "dataset.train_size=128",
                 "trainer.batch_size=64", f"results_dir={tmp_path}"))
    per_module = sorted(set(seen))
    assert per_module[0] == pytest.approx(1 / 4) and per_module[-1] == pytest.approx(1.0)  # 2 epochs x 2 steps


def test_summary_records_threads(make_cfg, tmp_path):
    s = run(make_cfg(*FAST, "trainer.threads=1", f"results_dir={tmp_path}"))
    assert read_summary(Path(s["run_dir"]))["threads"] == 1


def test_deterministic_switch_sets_the_torch_flags(make_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    try:
        a = run(make_cfg(*FAST, "trainer.deterministic=true", f"results_dir={tmp_path}"))
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        b = run(make_cfg(*FAST, "trainer.deterministic=true", f"results_dir={tmp_path}"))
        assert _metrics_without_time(Path(a["run_dir"])) == _metrics_without_time(Path(b["run_dir"]))
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]
        torch.backends.cudnn.deterministic = False


def test_small_models_get_one_cpu_thread_unless_told(make_cfg, tmp_path, monkeypatch):
    from regbench.models import build_model, macs_per_example

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        s = run(make_cfg(*FAST, f"results_dir={tmp_path}"))  # digits MLP: ~10k MACs per example
        assert s["threads"] == 1
        s = run(make_cfg(*FAST, "trainer.threads=2", f"results_dir={tmp_path}"))
        assert s["threads"] == 2
    finally:
        torch.set_num_threads(before)
    from regbench.engine.setup import SMALL_MODEL_MACS, set_threads

    model, cfg = build_model(make_cfg("model.hidden=[32]"), (1, 8, 8), 10), make_cfg("model.hidden=[32]")
    macs = macs_per_example(model, (1, 8, 8))
    from regbench.engine import setup

    big = SMALL_MODEL_MACS // macs + 1  # a stack counts its cells: this many together are not small
    # the process's default as on a 2-core machine, whatever OMP_NUM_THREADS this session runs with (make test: 1)
    monkeypatch.setattr(setup, "_PROCESS_THREADS", 2)
    try:  # set every time, in either direction: one process may train a small cell, then a large stack
        for cells, expected in ((1, 1), (big - 1, 1), (big, setup._PROCESS_THREADS), (1, 1),
                                (big, setup._PROCESS_THREADS)):
            set_threads(cfg, torch.device("cpu"), model, (1, 8, 8), cells)
            assert torch.get_num_threads() == expected, cells
        setup.limit_job_threads(3)  # a parallel launcher's share bounds what a large stack gets
        set_threads(cfg, torch.device("cpu"), model, (1, 8, 8), big)
        assert torch.get_num_threads() == 3
        setup.limit_job_threads(None)  # the next job has no share (launchers.setup_job resets it each job)
        set_threads(cfg, torch.device("cpu"), model, (1, 8, 8), big)
        assert torch.get_num_threads() == setup._PROCESS_THREADS
    finally:
        setup._job_threads = None
        torch.set_num_threads(before)
    # the count itself: Linear(64 -> 32) then Linear(32 -> 10)
    mlp = build_model(make_cfg("model.hidden=[32]"), (1, 8, 8), 10)
    assert macs_per_example(mlp, (1, 8, 8)) == 64 * 32 + 32 * 10
    # conv: 3x3 kernel, 1 -> 4 channels on 8x8 (same padding) = 8*8*4*9 MACs, then the head
    cnn = build_model(make_cfg("model=cnn", "model.channels=[4]", "model.hidden=[]"), (1, 8, 8), 10)
    assert macs_per_example(cnn, (1, 8, 8)) == 8 * 8 * 4 * 9 + (4 * 4 * 4) * 10


def test_cosine_schedule_spans_every_step_even_with_a_partial_last_batch(make_cfg, tmp_path):
    # 100 examples, batch 64: two steps per epoch (the second one partial); lr must not hit 0 early
    s = run(make_cfg(*FAST, "trainer.epochs=4", "dataset.train_size=100", "optim.schedule=cosine",
                     f"results_dir={tmp_path}"))
    lrs = [float(r["lr"]) for r in read_metrics(Path(s["run_dir"]))]
    assert all(lr > 0 for lr in lrs[:-1]) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert lrs == sorted(lrs, reverse=True)


def test_diverged_summary_is_strict_json(make_cfg, tmp_path):
    import json

    s = run(make_cfg(*FAST, "trainer.epochs=3", "optim=sgd", "optim.lr=1e10", f"results_dir={tmp_path}"))
    text = (Path(s["run_dir"]) / "summary.json").read_text()
    assert s["status"] == "diverged" and "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


# a ResNet for a few steps: BatchNorm's NHWC kernels round otherwise, and over an epoch of early training its
# steps amplify that to ~1e-3 (measured: bit-identical after 2 steps, 6e-4 relative after 18)
@pytest.mark.parametrize("model", [["model=cnn", "model.channels=[4]"],
                                   ["model=resnet", "model.depth=8", "dataset.train_size=256"]])
def test_channels_last_trains_the_same_model(make_cfg, tmp_path, model):
    base = run(make_cfg(*FAST, *model, f"results_dir={tmp_path}"))
    nhwc = run(make_cfg(*FAST, *model, "trainer.channels_last=true", f"results_dir={tmp_path}"))
    assert nhwc["status"] == "completed"
    a, b = read_metrics(Path(base["run_dir"])), read_metrics(Path(nhwc["run_dir"]))
    for ra, rb in zip(a, b, strict=True):  # same numbers up to the summation order of the conv kernels
        assert float(ra["val_loss"]) == pytest.approx(float(rb["val_loss"]), rel=1e-4)


@pytest.mark.parametrize("model", [[], ["model=vit"], ["model=resnet", "dataset=mnist1d", "dataset.num_samples=600"]])
def test_channels_last_needs_a_2d_convolutional_network(make_cfg, model):
    from regbench.core.errors import ConfigError
    from regbench.engine.train import check_config

    with pytest.raises(ConfigError, match="trainer.channels_last=true needs a 2-D convolutional network"):
        check_config(make_cfg("trainer.channels_last=true", *model))


@pytest.mark.slow  # torch.compile takes ~20 s on 2 CPU cores
def test_compiled_forward_trains_like_eager(make_cfg, tmp_path):
    base = run(make_cfg(*FAST, f"results_dir={tmp_path}"))
    comp = run(make_cfg(*FAST, "trainer.compile=true", f"results_dir={tmp_path}"))
    a, b = read_metrics(Path(base["run_dir"])), read_metrics(Path(comp["run_dir"]))
    for ra, rb in zip(a, b, strict=True):
        assert float(ra["val_loss"]) == pytest.approx(float(rb["val_loss"]), rel=1e-3)
