"""The evaluation protocol (regbench/rules/protocol.py): which epoch is best, early stopping on
trainer.monitor, which weights score the test split, and what summary.json records."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import read_metrics
from omegaconf import OmegaConf

from regbench.core.errors import ConfigError
from regbench.engine.evaluate import loss_and_correct
from regbench.engine.train import run
from regbench.rules.config import TrainerConfig
from regbench.rules.protocol import DEFAULT_SELECT, Protocol, Tracker, check, improved

# Tiny training set + big model + high lr: validation loss turns up after a few epochs while
# validation accuracy keeps moving, so val_loss / val_acc / final pick different epochs.
OVERFIT = ["trainer.epochs=12", "trainer.progress=false", "dataset.train_size=100", "model.hidden=[256]",
           "optim.lr=0.01", "report=false"]


def _trainer(**kw):
    return OmegaConf.structured(TrainerConfig(**kw))


def test_improved_directions_and_min_delta():
    assert improved("val_loss", 0.5, 0.6) and not improved("val_loss", 0.6, 0.5)
    assert improved("val_acc", 0.6, 0.5) and not improved("val_acc", 0.5, 0.6)
    assert not improved("val_loss", 0.55, 0.6, min_delta=0.1) and improved("val_loss", 0.45, 0.6, min_delta=0.1)
    assert improved("val_acc", 0.1, math.nan)  # the first epoch always counts
    assert not improved("val_loss", math.nan, 1.0) and not improved("val_acc", math.inf, 0.5)


def test_tracker_follows_select_and_stops_on_monitor():
    losses = [1.0, 0.8, 0.9, 0.95, 1.1, 1.2]
    accs = [0.3, 0.4, 0.45, 0.5, 0.48, 0.47]
    rows = [{"val_loss": lo, "val_acc": a} for lo, a in zip(losses, accs, strict=True)]

    def replay(protocol):
        t, snaps, stopped = Tracker(), [], None
        for epoch, row in enumerate(rows, start=1):
            if t.update(protocol, epoch, row, lambda e=epoch: snaps.append(e) or e):
                stopped = epoch
                break
        return t, snaps, stopped

    t, snaps, stopped = replay(Protocol(select="val_acc", monitor="val_acc", patience=2))
    assert (t.best_epoch, t.selected_state, stopped) == (4, 4, 6) and snaps == [1, 2, 3, 4]
    t, snaps, stopped = replay(Protocol(select="val_acc", monitor="val_loss", patience=2))
    assert (t.best_epoch, stopped) == (4, 4)  # stops on val_loss (best at 2, two bad epochs), selects on val_acc
    t, snaps, stopped = replay(Protocol(select="final", monitor="val_loss", patience=None))
    assert t.best_epoch == 2 and snaps == [] and t.selected_state is None and stopped is None
    assert Protocol(select="final").weights_to_score(t) == "final"


def test_monitor_defaults_follow_select():
    assert Protocol.from_trainer(_trainer()).select == DEFAULT_SELECT == "final"
    assert Protocol.from_trainer(_trainer(select="val_acc", patience=3)).monitor == "val_acc"
    assert Protocol.from_trainer(_trainer(select="final", patience=3)).monitor == "val_loss"
    assert Protocol.from_trainer(_trainer(select="val_loss", patience=3, monitor="val_acc")).monitor == "val_acc"
    assert Protocol.from_trainer(_trainer()).describe()["monitor"] is None  # no early stopping: nothing monitored


@pytest.mark.parametrize(("kw", "words"), [
    ({"select": "nosuch"}, ["trainer.select='nosuch'", "final, val_loss, val_acc"]),
    ({"monitor": "val_f1", "patience": 2}, ["trainer.monitor='val_f1'", "val_loss, val_acc"]),
])
def test_bad_protocol_values_are_refused(kw, words):
    with pytest.raises(ConfigError) as err:
        check(_trainer(**kw))
    assert all(w in str(err.value) for w in words)


@pytest.mark.parametrize("select", ["final", "val_loss", "val_acc"])
def test_the_selected_weights_score_the_test_split(make_cfg, tmp_path, select):
    s = run(make_cfg(*OVERFIT, f"trainer.select={select}", f"results_dir={tmp_path}"))
    rows = read_metrics(Path(s["run_dir"]))
    val_loss = [float(r["val_loss"]) for r in rows]
    val_acc = [float(r["val_acc"]) for r in rows]
    expected_epoch = {"final": 1 + val_loss.index(min(val_loss)),  # best_epoch still reported (by val_loss)
                      "val_loss": 1 + val_loss.index(min(val_loss)),
                      "val_acc": 1 + val_acc.index(max(val_acc))}[select]
    assert s["best_epoch"] == expected_epoch
    assert s["protocol"] == {"select": select, "monitor": None, "patience": None, "min_delta": 0.0}
    assert s["test_final"]["epoch"] == len(rows) == 12
    assert s["test"]["weights"] == select
    if select == "final":
        assert {k: s["test"][k] for k in ("loss", "acc")} == {k: s["test_final"][k] for k in ("loss", "acc")}
    else:
        assert s["test"]["epoch"] == expected_epoch
        assert s["test"]["loss"] != s["test_final"]["loss"]
    # calibration is measured on the weights that score the test split
    assert s["calibration"]["test"]["nll"] == pytest.approx(s["test"]["loss"], rel=1e-5)


def test_final_test_metrics_are_those_of_the_last_weights(make_cfg, tmp_path):
    """Train 5 epochs with select=val_loss; test_final must equal a select=final run's test numbers."""
    a = run(make_cfg(*OVERFIT, "trainer.epochs=5", "trainer.select=val_loss", f"results_dir={tmp_path}"))
    b = run(make_cfg(*OVERFIT, "trainer.epochs=5", "trainer.select=final", f"results_dir={tmp_path}"))
    assert a["test_final"]["acc"] == b["test"]["acc"] and a["test_final"]["loss"] == pytest.approx(b["test"]["loss"])
    assert loss_and_correct is not None and torch.isfinite(torch.tensor(b["test"]["loss"]))


def test_early_stopping_on_val_acc(make_cfg, tmp_path):
    s = run(make_cfg(*OVERFIT, "trainer.epochs=40", "trainer.select=val_acc", "trainer.patience=2",
                     f"results_dir={tmp_path}"))
    rows = read_metrics(Path(s["run_dir"]))
    acc = [float(r["val_acc"]) for r in rows]
    best = 1 + acc.index(max(acc))
    assert s["stopped_early"] and s["best_epoch"] == best and len(rows) == best + 2
    assert s["protocol"]["monitor"] == "val_acc" and s["test"]["epoch"] == best


def test_restore_best_names_the_new_key(cli):
    code, out, err = cli("run", "trainer.restore_best=false", "trainer.progress=false")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "trainer.restore_best" in err and "trainer.select" in err and "val_loss" in err


def test_min_delta_acts_on_selection_without_early_stopping(cli):
    """trainer.min_delta decides the best epoch when select keeps weights: accepted without patience."""
    code, out, err = cli("run", "trainer.epochs=2", "trainer.progress=false", "model.hidden=[16]", "report=false",
                         "trainer.select=val_loss", "trainer.min_delta=0.01")
    assert code == 0, err
    code, _, err = cli("run", "trainer.epochs=2", "trainer.progress=false", "trainer.min_delta=0.01")
    assert code == 2 and "trainer.patience" in err and "trainer.select" in err  # select=final: no effect
