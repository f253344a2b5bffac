"""Calibration and MC dropout: metrics on hand-made probability tables, mc_mode, BatchNorm safety,
batched passes, and the end-to-end summary.json blocks / mc_convergence.csv."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import pytest
import torch
from conftest import FAST, read_metrics
from torch import nn

from regbench.core.errors import ConfigError
from regbench.engine import uncertainty
from regbench.engine.evaluate import loss_and_correct
from regbench.engine.train import check_config, run
from regbench.engine.uncertainty import evaluate_split, is_stochastic, mc_mode, table_metrics
from regbench.records import results

NO_AUTOCAST = lambda: __import__("contextlib").nullcontext()  # noqa: E731
IDENTITY = lambda x: x  # noqa: E731


def H(*p: float) -> float:  # entropy in nats
    return -sum(q * math.log(q) for q in p if q > 0)


# ---------------------------------------------------------------------------- metrics by hand


def test_deterministic_table_metrics_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.65, 0.35], [0.25, 0.75], [0.15, 0.85]])
    y = torch.tensor([0, 1, 1, 0])  # predictions 0, 0, 1, 1: right, wrong, right, wrong
    r = table_metrics(probs, y, n_bins=15)
    m = r.metrics
    assert m["acc"] == pytest.approx(0.5)
    assert m["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.35) + math.log(0.75) + math.log(0.15)) / 4)
    # Brier: sum over classes of (p - onehot)^2, mean over examples
    assert m["brier"] == pytest.approx((2 * 0.1**2 + 2 * 0.65**2 + 2 * 0.25**2 + 2 * 0.85**2) / 4)
    # 15 bins of width 1/15: confidences 0.9, 0.65, 0.75, 0.85 fall in bins 13, 9, 11, 12, one each
    assert m["ece"] == pytest.approx((abs(1 - 0.9) + abs(0 - 0.65) + abs(1 - 0.75) + abs(0 - 0.85)) / 4)
    assert r.bins["bin_count"] == [0] * 9 + [1, 0, 1, 1, 1, 0]
    assert r.bins["bin_confidence"][13] == pytest.approx(0.9) and r.bins["bin_accuracy"][9] == 0.0
    assert m["entropy"] == pytest.approx((H(0.9, 0.1) + H(0.65, 0.35) + H(0.25, 0.75) + H(0.15, 0.85)) / 4)
    assert m["mutual_info"] == 0.0


def test_ece_pools_examples_within_a_bin():
    probs = torch.tensor([[0.9, 0.1], [0.65, 0.35], [0.25, 0.75], [0.15, 0.85]])
    y = torch.tensor([0, 1, 1, 0])
    # two bins (0, .5], (.5, 1]: all four in the upper bin, accuracy 0.5 vs mean confidence 0.7875
    r = table_metrics(probs, y, n_bins=2)
    assert r.metrics["ece"] == pytest.approx(abs(0.5 - (0.9 + 0.65 + 0.75 + 0.85) / 4))
    assert r.bins == {"bin_confidence": [0.0, pytest.approx(0.7875)], "bin_accuracy": [0.0, 0.5], "bin_count": [0, 4]}
    perfect = table_metrics(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), n_bins=15)
    assert perfect.metrics["ece"] == 0.0 and perfect.metrics["nll"] == 0.0 and perfect.metrics["entropy"] == 0.0


def test_mc_table_averages_probabilities_then_takes_the_log():
    probs = torch.tensor([[[0.8, 0.2], [0.4, 0.6]],  # pass 1
                          [[0.6, 0.4], [0.2, 0.8]]])  # pass 2: mean [[.7, .3], [.3, .7]]
    y = torch.tensor([0, 1])
    r = table_metrics(probs, y, n_bins=15, convergence=True)
    m = r.metrics
    assert m["acc"] == 1.0
    assert m["nll"] == pytest.approx(-math.log(0.7))  # not the mean of the per-pass NLLs
    assert m["brier"] == pytest.approx(2 * 0.3**2)
    assert m["entropy"] == pytest.approx(H(0.7, 0.3))
    bald = H(0.7, 0.3) - (H(0.8, 0.2) + H(0.6, 0.4)) / 2  # same for both examples (H(.4) = H(.6))
    assert m["mutual_info"] == pytest.approx(bald, abs=1e-7) and bald > 0  # float32: a difference of ~0.6s
    acc, nll = r.curve
    assert acc == [1.0, 1.0]
    assert nll[0] == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)  # t = 1: the first pass alone
    assert nll[1] == pytest.approx(m["nll"])
    first = table_metrics(probs[0], y).metrics  # T = 1 row == a single pass
    assert (acc[0], nll[0]) == pytest.approx((first["acc"], first["nll"]))


# ---------------------------------------------------------------------------- modules and modes


class Noisy(nn.Module):
    """A custom dropout-like module wrapping a layer (like DropConnect): only it must go to train mode."""

    stochastic = True

    def __init__(self, d: int, shared: bool = False):
        super().__init__()
        self.layer = nn.Linear(d, d)
        self.shared = shared

    def forward(self, x):
        if not self.training:
            return self.layer(x)
        shape = (1, x.shape[1]) if self.shared else x.shape  # shared: one mask for the whole batch
        return self.layer(x * torch.empty(shape).bernoulli_(0.5) * 2)


class NotNoisy(nn.Module):
    stochastic = False


@pytest.mark.parametrize("cls", [nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                                 nn.FeatureAlphaDropout])
def test_torch_dropout_modules_are_stochastic(cls):
    assert is_stochastic(cls(0.5))


def test_custom_flag_marks_stochastic_modules():
    assert is_stochastic(Noisy(3))
    for m in (NotNoisy(), nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Identity(), nn.ReLU()):
        assert not is_stochastic(m)


def _model(shared: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), Noisy(16, shared),
                         nn.Linear(16, 3))


def test_mc_mode_switches_only_stochastic_modules_and_restores_modes():
    model = _model()
    model.train()
    model[1].eval()  # a mixed state on entry must come back exactly
    before = [m.training for m in model.modules()]
    with mc_mode(model):
        assert model[3].training and model[4].training  # nn.Dropout and the custom module
        assert not model[4].layer.training  # not recursed into the wrapped layer
        assert not model[1].training and not model[0].training and not model.training
    assert [m.training for m in model.modules()] == before


def test_mc_evaluation_leaves_batchnorm_stats_and_the_rng_alone():
    model = _model()
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model.train()
    model(x)  # some running stats
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    rng = torch.get_rng_state()
    r = evaluate_split(model, x, y, IDENTITY, NO_AUTOCAST, samples=10)
    assert r.metrics["mutual_info"] > 0  # the passes differed
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training


def test_train_mode_evaluation_differs_but_restores_buffers_and_rng():
    model = _model()
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model.eval()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    rng = torch.get_rng_state()
    wrong = loss_and_correct(model, x, y, IDENTITY, NO_AUTOCAST, mode="train")
    assert not torch.equal(wrong, loss_and_correct(model, x, y, IDENTITY, NO_AUTOCAST))
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k
    assert torch.equal(torch.get_rng_state(), rng) and not model.training


def test_mc_passes_are_batched_over_samples():
    model = _model()
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    evaluate_split(model, x, y, IDENTITY, NO_AUTOCAST, samples=8)
    assert calls == [uncertainty.PROBE_COPIES, 80]  # the probe, then one pass of 8 copies x 10 examples


def test_noise_shared_across_the_batch_gets_one_pass_per_sample(monkeypatch):
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), Noisy(16, shared=True), nn.Linear(16, 3))
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    assert evaluate_split(model, x, y, IDENTITY, NO_AUTOCAST, samples=8).metrics["mutual_info"] > 0
    # the trap the probe avoids: repeated copies in one pass all get the same mask -> no spread at all
    monkeypatch.setattr(uncertainty, "_shares_noise", lambda *a: False)
    assert evaluate_split(model, x, y, IDENTITY, NO_AUTOCAST, samples=8).metrics["mutual_info"] == 0.0


# ---------------------------------------------------------------------------- end to end


@pytest.fixture
def mc_run(make_cfg, tmp_path):
    cfg = make_cfg(*FAST, "dropout=standard", "dropout.p=0.3", "eval.mc_samples=8", "eval.mc_every_epoch=true",
                   f"results_dir={tmp_path}")
    return run(cfg)


def test_run_writes_mc_and_calibration_blocks_and_convergence(mc_run):
    run_dir = Path(mc_run["run_dir"])
    for block in ("mc", "calibration"):
        tree = mc_run[block]
        for split in ("val", "test"):
            assert set(tree[split]) == set(uncertainty.METRICS), (block, split)
        bins = tree["calibration"]
        assert len(bins["bin_confidence"]) == len(bins["bin_accuracy"]) == len(bins["bin_count"]) == 15
        assert sum(bins["bin_count"]) == mc_run["data"]["n_test"]
    assert mc_run["mc"]["samples"] == 8
    assert mc_run["calibration"]["test"]["nll"] == pytest.approx(mc_run["test"]["loss"])
    assert mc_run["calibration"]["test"]["mutual_info"] == 0.0 < mc_run["mc"]["test"]["mutual_info"]
    with open(run_dir / "mc_convergence.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["samples"]) for r in rows] == list(range(1, 9))
    assert float(rows[-1]["mc_nll"]) == pytest.approx(mc_run["mc"]["test"]["nll"])
    assert float(rows[-1]["mc_acc"]) == pytest.approx(mc_run["mc"]["test"]["acc"])
    assert {float(r["det_nll"]) for r in rows} == {mc_run["calibration"]["test"]["nll"]}
    metrics = read_metrics(run_dir)
    assert list(metrics[0]) == results.METRIC_COLUMNS + uncertainty.EPOCH_COLUMNS
    assert all(0 <= float(r["mc_val_acc"]) <= 1 for r in metrics)


def test_forgot_eval_changes_measurements_not_training(make_cfg, tmp_path, mc_run):
    bug = run(make_cfg(*FAST, "dropout=standard", "dropout.p=0.3", "eval.mode=train", f"results_dir={tmp_path}"))
    good, wrong = read_metrics(Path(mc_run["run_dir"])), read_metrics(Path(bug["run_dir"]))
    assert list(wrong[0]) == results.METRIC_COLUMNS  # default header: no MC columns
    assert [r["val_loss"] for r in good] != [r["val_loss"] for r in wrong]
    # evaluation (MC per epoch, or train mode) restores RNG and buffers: the training itself is identical
    assert [r["batch_loss"] for r in good] == [r["batch_loss"] for r in wrong]


def test_no_stochastic_layer_warns_once_and_mc_equals_deterministic(make_cfg, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="regbench"):
        s = run(make_cfg(*FAST, "dropout=none", "eval.mc_samples=4", f"results_dir={tmp_path}"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "mc_samples" in r.getMessage()]
    assert len(warnings) == 1 and "no dropout-like layer" in warnings[0].getMessage()
    for split in ("val", "test"):
        assert s["mc"][split] == s["calibration"][split]
    with open(Path(s["run_dir"]) / "mc_convergence.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(r["mc_nll"] == r["det_nll"] and r["mc_acc"] == r["det_acc"] for r in rows)


def test_negative_mc_samples_is_a_config_error(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="eval.mc_samples"):
        check_config(make_cfg(*FAST, "eval.mc_samples=-1", f"results_dir={tmp_path}"))


def test_an_evaluation_that_fails_after_training_fails_the_run(cli, tmp_path, monkeypatch):
    """Never a `completed` run missing its numbers: the run is `failed`, with the reason, in one line."""
    from conftest import FAST, read_summary, run_dirs

    from regbench.engine import uncertainty

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory in the MC passes\nsecond line")

    monkeypatch.setattr(uncertainty, "final_blocks", broken)
    code, out, err = cli("run", *FAST, "dropout=standard", "eval.mc_samples=4")
    assert code == 1
    [run] = run_dirs(tmp_path / "runs")
    summary = read_summary(run)
    assert summary["status"] == "failed"
    assert summary["error"] == "evaluation after training failed (RuntimeError: out of memory in the MC passes)"
    assert "Traceback" not in out + err


def test_mc_samples_that_cannot_fit_are_refused_before_training(cli, tmp_path):
    code, out, err = cli("run", *FAST, "dropout=standard", "eval.mc_samples=100000000")
    assert code == 2 and "eval.mc_samples=100000000 needs about" in err and "valid: eval.mc_samples <=" in err
    assert not (tmp_path / "runs").exists()
