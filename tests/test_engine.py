"""The one engine: stacks of cells vs lone runs (exact where no random draw differs), the stacked
optimizer vs torch.optim, and hydra/launcher=vectorized: grouping, the run-folder contract,
cells that train alone, resume, stack splitting, per-cell divergence and early stopping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import FAST, read_metrics, read_summary, run_dirs

from regbench.engine.cells import Cell
from regbench.engine.loop import train
from regbench.engine.plan import alone_reason, chunk_sizes, stack_key
from regbench.engine.train import run
from regbench.records import results
from regbench.regularizers.streams import Streams

NOT_TIMING = [c for c in results.METRIC_COLUMNS if c != "seconds"]
VEC = "hydra/launcher=vectorized"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one thread is faster for both paths, and deterministic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pairs(make_cfg, tmp_path, grid, *common):
    """Train `grid` (a list of override lists) as one stack and one by one -> [(stacked summary, lone summary)]."""
    cells = [Cell(cfg=make_cfg(*common, *g, f"results_dir={tmp_path / 'vec'}")) for g in grid]
    train(list(cells))
    seq = [run(make_cfg(*common, *g, f"results_dir={tmp_path / 'seq'}")) for g in grid]
    return [(c.summary, s) for c, s in zip(cells, seq, strict=True)]


def _assert_same_curves(vec: dict, seq: dict, tol: float = 1e-5) -> None:
    a, b = read_metrics(Path(vec["run_dir"])), read_metrics(Path(seq["run_dir"]))
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        for k in NOT_TIMING:
            assert float(ra[k]) == pytest.approx(float(rb[k]), abs=tol), (k, ra["epoch"])
    assert vec["status"] == seq["status"] and vec["best_epoch"] == seq["best_epoch"]
    assert vec["stopped_early"] == seq["stopped_early"]
    assert vec["test"]["acc"] == pytest.approx(seq["test"]["acc"], abs=tol)
    assert vec["test"]["loss"] == pytest.approx(seq["test"]["loss"], abs=tol)


# ---------------------------------------------------------------------------- grouping


def test_stacks_group_by_structure_not_by_values(make_cfg):
    key = stack_key(make_cfg("dropout=standard", "dropout.p=0.1", "seed=0"))
    same = ["dropout.p=0.5", "seed=3", "optim.lr=0.1", "optim.weight_decay=0.01", "dropout=none",
            "reg.l1=1e-4", "reg.max_norm=2", "reg.label_smoothing=0.1", "augment=mixup", "augment.mixup_alpha=0.4",
            "trainer.patience=3", "logger=tensorboard", "name=x", "results_dir=elsewhere"]
    for o in same:
        assert stack_key(make_cfg("dropout=standard", "dropout.p=0.1", "seed=0", o)) == key, o
    for o in ["model.hidden=[64]", "trainer.batch_size=32", "optim=sgd", "dropout=gaussian", "trainer.epochs=3",
              "model.batchnorm=true", "optim.schedule=cosine", "dataset.train_size=100", "model=cnn",
              "dropout.placement=before_norm"]:
        assert stack_key(make_cfg("dropout=standard", "dropout.p=0.1", "seed=0", o)) != key, o
    assert alone_reason(make_cfg()) is None
    assert alone_reason(make_cfg("model=cnn", "dropout=dropblock", "augment=flip_crop")) is None
    assert alone_reason(make_cfg("trainer.checkpoint=true"))[0] == "trainer.checkpoint=true"
    assert alone_reason(make_cfg("eval.mode=train"))[0] == "eval.mode=train"


def test_chunk_sizes_split_evenly():
    assert chunk_sizes(10, 4) == [4, 3, 3]
    assert chunk_sizes(8, 8) == [8]
    assert chunk_sizes(5, 1) == [1] * 5


# ---------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("common", [
    ["optim.weight_decay=1e-3", "optim.schedule=cosine"],  # adam, coupled L2
    ["optim=sgd", "optim.nesterov=true", "optim.weight_decay=1e-3", "optim.schedule=step", "optim.step_size=1"],
    ["optim=adamw", "optim.weight_decay=0.01", "optim.warmup_epochs=1", "reg.label_smoothing=0.1"],
    ["optim=sgd", "optim.decoupled=true", "optim.weight_decay=1e-3", "model.batchnorm=true", "reg.l1=1e-4",
     "reg.max_norm=1.0"],
])
def test_without_dropout_cells_match_sequential_runs_exactly(make_cfg, tmp_path, common):
    grid = [["optim.lr=0.003", "seed=0"], ["optim.lr=0.03", "seed=1"], ["optim.lr=0.01", "seed=2", "dropout=standard",
                                                                        "dropout.p=0"]]
    for vec, seq in _pairs(make_cfg, tmp_path, grid, *FAST, *common):
        _assert_same_curves(vec, seq)


CNN = ["model=cnn", "model.channels=[4]"]
DROPOUT_TYPES = [["dropout=standard"], ["dropout=gaussian", "optim=sgd", "model.batchnorm=true"],
                 ["dropout=alpha"], ["dropout=original"], [*CNN, "dropout=spatial"],
                 [*CNN, "dropout=dropblock", "dropout.schedule=linear"], [*CNN, "dropout=dropconnect"]]


@pytest.mark.parametrize("dropout", DROPOUT_TYPES, ids=[next(o for o in d if o.startswith("dropout="))
                                                        for d in DROPOUT_TYPES])
def test_rate_zero_inside_a_dropout_stack_is_the_lone_baseline_exactly(make_cfg, tmp_path, dropout):
    # Its slots are nn.Identity alone and a dropout module at tensor rate 0 in the stack: the same numbers.
    off = ["dropout.p=0", "dropout.p_input=0"] + (["dropout.p_conv=0"] if "model=cnn" in dropout else [])
    grid = [[*off, "seed=2"], ["dropout.p=0.3", "dropout.p_input=0.1", "seed=0"], ["dropout.p=0.5", "seed=1"]]
    pairs = _pairs(make_cfg, tmp_path, grid, *FAST, "dataset.train_size=200", *dropout)
    _assert_same_curves(*pairs[0])
    # DropConnect wraps only layers with a rate > 0 (other parameter names): its rate-0 cell is a stack of its own
    assert pairs[1][0]["stack_cells"] == (2 if "dropout=dropconnect" in dropout else 3)
    assert pairs[1][1]["stack_cells"] == 1
    # one id per stack: the rate-0 cell shares it unless it trained as a stack of its own
    ids = {v["stack_id"] for v, _ in pairs}
    assert len(ids) == (2 if "dropout=dropconnect" in dropout else 1)
    assert len({lone["stack_id"] for _, lone in pairs}) == 3  # each lone run is its own stack


def test_per_cell_early_stopping_matches_sequential(make_cfg, tmp_path):
    common = ["trainer.epochs=12", "trainer.patience=2", "trainer.progress=false", "dataset.train_size=100",
              "model.hidden=[64]"]
    grid = [["optim.lr=0.02", "seed=0"], ["optim.lr=0.005", "seed=1"], ["optim.lr=0.0003", "seed=0"]]
    pairs = _pairs(make_cfg, tmp_path, grid, *common)
    for vec, seq in pairs:
        _assert_same_curves(vec, seq)
    assert any(v["stopped_early"] for v, _ in pairs) and not all(v["stopped_early"] for v, _ in pairs)


# Every random draw a stack makes from its own stream (dropout masks of each type, augmentation and
# mixing parameters), on an MLP and a CNN: (model + regularizer overrides) per case.
RANDOM_CASES = {
    "standard": ["dropout=standard", "dropout.p=0.5"],
    "original": ["dropout=original", "dropout.p=0.5"],
    "gaussian": ["dropout=gaussian", "dropout.p=0.5"],
    "alpha": ["dropout=alpha", "dropout.p=0.2"],
    "cnn-standard": [*CNN, "dropout=standard", "dropout.p=0.5"],
    "cnn-spatial": [*CNN, "dropout=spatial", "dropout.p_conv=0.3"],
    "cnn-dropblock": [*CNN, "dropout=dropblock", "dropout.p_conv=0.3"],
    "cnn-dropconnect": [*CNN, "dropout=dropconnect", "dropout.p=0.5"],
    "flip_crop": ["augment=flip_crop"],
    "noise": ["augment=noise"],
    "mixup": ["augment=mixup"],
    "cnn-flip_crop": [*CNN, "augment=flip_crop"],
    "cnn-cutmix": [*CNN, "augment=cutmix"],
}


# Three representatives in the fast suite (MLP dropout, CNN dropout, CNN mixing); the rest with `make test-all`.
FAST_RANDOM_CASES = ("standard", "cnn-spatial", "cnn-cutmix")
ROUNDING = 1e-5  # a stack runs batched kernels (bmm, vmap's convolutions) where a lone run runs single ones: their
# float32 results differ by a few ulps per op (~1e-7 relative); after two epochs of steps, losses and accuracies of
# these tiny models agree within ~1e-6 (measured, every case); a different draw moves them by > 1e-2.


@pytest.mark.parametrize("case", [c if c in FAST_RANDOM_CASES else pytest.param(c, marks=pytest.mark.slow)
                                  for c in RANDOM_CASES])
def test_random_cells_match_lone_runs_draw_for_draw(make_cfg, tmp_path, case):
    # Every draw of a cell comes from its own streams (regularizers/streams.py): in a stack of 4, in stacks of 1 and 3
    # (other stack-mates) and alone, a cell draws the same masks, augmentations and mixing, so its curves agree up
    # to float rounding. Two cells share seed 0 (the same streams), with other learning rates.
    common = ["trainer.epochs=2", "trainer.progress=false", "model.hidden=[32]", "dataset.train_size=300",
              "report=false", *RANDOM_CASES[case]]
    grid = [["seed=0"], ["seed=1"], ["seed=2", "optim.lr=0.003"], ["seed=0", "optim.lr=0.003"]]
    pairs = _pairs(make_cfg, tmp_path, grid, *common)
    assert all(v["stack_cells"] == len(grid) for v, _ in pairs)  # really one stack
    for vec, seq in pairs:
        _assert_same_curves(vec, seq, ROUNDING)
    regrouped = [Cell(cfg=make_cfg(*common, *g, f"results_dir={tmp_path / 'regrouped'}")) for g in grid]
    train(regrouped[:1])
    train(regrouped[1:])
    for cell, (_, seq) in zip(regrouped, pairs, strict=True):
        _assert_same_curves(cell.summary, seq, ROUNDING)
    assert pairs[0][1]["final"]["train_loss"] != pairs[1][1]["final"]["train_loss"]  # other seeds, other numbers


# ---------------------------------------------------------------------------- the launcher


def _sweep(cli, results_dir: str, *args: str):
    epochs = [] if any(a.startswith("trainer.epochs=") for a in args) else ["trainer.epochs=1"]
    return cli("run", "-m", *[a for a in FAST if not a.startswith("trainer.epochs=")], *epochs,
               f"results_dir={results_dir}", *args)


def _placed_elsewhere(yaml: str) -> list[str]:
    return [line for line in yaml.splitlines() if not line.startswith(("results_dir:", "sweep_name:"))]


def test_run_folders_are_what_sequential_runs_write(cli, tmp_path):
    grid = ["dropout=standard", "dropout.p=0,0.5", "seed=0,1"]
    code, out, _ = _sweep(cli, "vec", *grid, VEC)
    assert code == 0 and "sweep finished: 4 runs: 4 completed" in out
    assert _sweep(cli, "seq", *grid, "hydra/launcher=basic")[0] == 0
    vec, seq = run_dirs(tmp_path / "vec"), run_dirs(tmp_path / "seq")
    assert len(vec) == len(seq) == 4
    for v, s in zip(vec, seq, strict=True):
        assert sorted(p.name for p in v.iterdir()) == sorted(p.name for p in s.iterdir())
        # a cell of a stack says how it was trained: its stack's size and wall time (results.STACK_COLUMNS)
        header = (s / "metrics.csv").read_text().splitlines()[0]
        assert (v / "metrics.csv").read_text().splitlines()[0] == ",".join([header, *results.STACK_COLUMNS])
        sv, ss = read_summary(v), read_summary(s)
        assert set(sv) - set(ss) == {"stack_seconds"} and set(ss) <= set(sv)
        assert sv["stack_cells"] == 4 and ss["stack_cells"] == 1
        for k in ("status", "config_hash", "seed", "parameters", "data", "epochs_completed", "versions"):
            assert sv[k] == ss[k], k
        assert sv["command"].replace("results_dir=vec", "results_dir=seq") == ss["command"]
        assert _placed_elsewhere((v / "config.yaml").read_text()) == _placed_elsewhere((s / "config.yaml").read_text())
    assert not list(tmp_path.rglob(".running"))


def test_cells_the_sweep_checked_are_not_checked_again_but_other_cells_are(cli, tmp_path, make_cfg, monkeypatch):
    from regbench.engine import loop

    calls = []
    real = loop.check_config
    monkeypatch.setattr(loop, "check_config", lambda cfg, data=None: calls.append(cfg.seed) or real(cfg, data))
    assert _sweep(cli, "runs", "dropout=standard", "dropout.p=0,0.5", "seed=0,1", VEC)[0] == 0
    assert len(calls) == 1  # the stack's first cell gives device and data; the preflight checked all four
    calls.clear()
    cells = [Cell(cfg=make_cfg(*FAST, f"seed={s}", f"results_dir={tmp_path / 'direct'}")) for s in (0, 1, 2)]
    train(cells)  # cells from elsewhere (a stack job in a worker process): each one is checked here
    assert sorted(calls) == [0, 1, 2] and all(c.summary["status"] == "completed" for c in cells)


def test_the_trial_step_leaves_no_trace_and_names_what_cannot_stack(make_cfg):
    from regbench.data import build_splits
    from regbench.engine.stack import Stacked
    from regbench.models import build_model

    cfgs = [make_cfg(*FAST, "model.batchnorm=true", "dropout=standard", f"dropout.p={p}") for p in (0.2, 0.5)]
    data = build_splits(cfgs[0].dataset, "cpu")
    noise = [Streams.of(c.seed).noise for c in cfgs]
    stack = Stacked([build_model(c, data.input_shape, data.num_classes) for c in cfgs], cfgs, 1, torch.device("cpu"),
                    noise)
    x = data.normalize(data.x_train[:4]).expand(2, -1, -1, -1, -1).contiguous()
    y = data.y_train[:4].expand(2, -1)
    buffers, states = {k: v.clone() for k, v in stack.buffers.items()}, [g.get_state() for g in noise]
    assert stack.probe(x, y) is None
    assert all(torch.equal(buffers[k], v) for k, v in stack.buffers.items())  # BatchNorm statistics untouched
    assert all(torch.equal(a, g.get_state()) for a, g in zip(states, noise, strict=True))  # the cells' streams too
    assert all(p.grad is None for p in stack.params.values())
    # a module that branches in Python on its (per-cell tensor) rate cannot run under vmap
    slot = next(m for m in stack.template.modules() if hasattr(m, "p") and isinstance(m.p, torch.Tensor))
    slot.forward = lambda t: t if slot.p == 0 else t * 2
    assert "RuntimeError" in stack.probe(x, y)
    assert all(torch.equal(buffers[k], v) for k, v in stack.buffers.items())


def test_cells_that_cannot_share_a_stack_train_alone_with_one_reason_line(cli, tmp_path):
    code, out, err = _sweep(cli, "runs", "eval.mode=eval,train", "seed=0,1", VEC)
    assert code == 0 and "4 runs: 4 completed" in out
    assert (out + err).count("train alone") == 1
    assert ("vectorized: 2 cells of eval.mode=train train alone (train-mode evaluation restores each model's "
            "buffers and RNG)") in out + err
    cells = [read_summary(d) for d in run_dirs(tmp_path / "runs")]
    assert sorted(s["stack_cells"] for s in cells) == [1, 1, 2, 2]


def test_cnn_augmentation_and_mixing_cells_share_a_stack(cli, tmp_path):
    code, out, err = _sweep(cli, "runs", "model=cnn", "model.channels=[4]", "dropout=dropblock", "augment=mixup",
                            "augment.mixup_alpha=0,0.4", "dropout.p=0,0.3", VEC)
    assert code == 0 and "4 runs: 4 completed" in out and "train alone" not in out + err
    assert {read_summary(d)["stack_cells"] for d in run_dirs(tmp_path / "runs")} == {4}


def test_rerun_skips_completed_cells(cli, tmp_path):
    assert _sweep(cli, "runs", "seed=0,1", VEC, "sweep_name=s")[0] == 0
    first = run_dirs(tmp_path / "runs")
    code, out, err = _sweep(cli, "runs", "seed=0,1,2", VEC, "sweep_name=s")  # the grid grows in place
    assert code == 0 and "3 runs: 3 completed" in out and "skipped" in out + err
    after = run_dirs(tmp_path / "runs")
    assert len(after) == 3 and set(first) < set(after)


def test_resume_finds_cells_across_launchers_and_lone_runs(cli, tmp_path):
    # The default (stacked) sweep, then the same cell asked for alone: found, nothing trained.
    assert _sweep(cli, "runs", "seed=0,1", "sweep_name=s")[0] == 0
    stacked = run_dirs(tmp_path / "runs")
    assert {read_summary(d)["stack_cells"] for d in stacked} == {2}
    code, out, err = cli("run", *FAST, "trainer.epochs=1", "results_dir=runs", "seed=1")
    assert code == 0 and run_dirs(tmp_path / "runs") == stacked
    # The grid grows (in place) under the one-at-a-time launcher: only the new cell trains ...
    assert _sweep(cli, "runs", "seed=0,1,2", "hydra/launcher=basic", "sweep_name=s")[0] == 0
    grown = run_dirs(tmp_path / "runs")
    assert len(grown) == 3 and set(stacked) < set(grown)
    # ... and again under the default: the cells trained one at a time are found too.
    assert _sweep(cli, "runs", "seed=0,1,2,3", "sweep_name=s")[0] == 0
    final = run_dirs(tmp_path / "runs")
    assert len(final) == 4 and set(grown) < set(final)
    assert read_summary(next(iter(set(final) - set(grown))))["stack_cells"] == 1


def test_max_cells_splits_a_stack(cli, tmp_path):
    code, out, err = _sweep(cli, "runs", "seed=0,1,2,3,4", VEC, "hydra.launcher.max_cells=2")
    assert code == 0 and "5 runs: 5 completed" in out
    assert "split into stacks of [2, 2, 1]" in out + err
    sizes = sorted(read_summary(d).get("stack_cells", 1) for d in run_dirs(tmp_path / "runs"))
    assert sizes == [1, 2, 2, 2, 2]


# The sweeps of issue #33's check: every cell's per-epoch numbers are the same under the default launcher, with
# smaller stacks and one cell at a time (up to float rounding: ROUNDING above).
SAME_UNDER_ANY_LAUNCHER = {
    "mlp-dropout": ["dropout=standard", "dropout.p=0.2,0.5", "seed=0,1"],
    "cnn-spatial-augment": [*CNN, "dropout=spatial", "dropout.p=0.2,0.4", "augment=flip_crop", "seed=0,1"],
    "dropconnect-mixup": ["dropout=dropconnect", "dropout.p=0.3,0.5", "augment=mixup", "seed=0,1"],
}


@pytest.mark.parametrize("grid", SAME_UNDER_ANY_LAUNCHER.values(), ids=SAME_UNDER_ANY_LAUNCHER.keys())
def test_a_cell_has_the_same_numbers_under_every_launcher_and_stack_size(cli, tmp_path, grid):
    launchers = {"default": [], "max3": ["hydra.launcher.max_cells=3"], "basic": ["hydra/launcher=basic"]}
    curves = {}
    for name, extra in launchers.items():
        assert _sweep(cli, name, "trainer.epochs=2", "dataset.train_size=200", "report=false", *grid, *extra)[0] == 0
        curves[name] = {read_summary(d)["config_hash"]: read_metrics(d) for d in run_dirs(tmp_path / name)}
    sizes = {name: sorted(read_summary(d)["stack_cells"] for d in run_dirs(tmp_path / name)) for name in launchers}
    assert sizes == {"default": [4] * 4, "max3": [2] * 4, "basic": [1] * 4}  # max_cells=3 splits 4 cells as 2 + 2
    assert curves["default"].keys() == curves["max3"].keys() == curves["basic"].keys() and len(curves["basic"]) == 4
    for cell, rows in curves["basic"].items():
        for name in ("default", "max3"):
            for a, b in zip(curves[name][cell], rows, strict=True):
                for k in ("train_loss", "val_loss", "val_acc", "train_acc", "batch_loss"):
                    assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-6, abs=ROUNDING), (name, cell, k)


def test_a_resumed_sweep_with_other_stack_sizes_reproduces_the_cells_it_retrains(cli, tmp_path):
    grid = ["dropout=standard", "dropout.p=0.2,0.5", "augment=noise", "seed=0,1", "trainer.epochs=2",
            "dataset.train_size=200", "report=false", "sweep_name=s"]
    assert _sweep(cli, "runs", *grid)[0] == 0
    before = {d: read_metrics(d) for d in run_dirs(tmp_path / "runs")}
    assert {read_summary(d)["stack_cells"] for d in before} == {4}
    lost = sorted(before)[1:3]
    for d in lost:  # as if the machine had gone down: these two cells never finished
        summary = read_summary(d)
        summary.update(status="interrupted", error="interrupted (test)")
        (d / "summary.json").write_text(json.dumps(summary))
    code, out, err = _sweep(cli, "runs", *grid, "hydra.launcher.max_cells=1")
    assert code == 0 and "4 runs: 4 completed" in out
    new = [d for d in run_dirs(tmp_path / "runs") if d not in before]
    assert len(new) == 2 and {read_summary(d)["stack_cells"] for d in new} == {1}
    old_by_hash = {read_summary(d)["config_hash"]: before[d] for d in lost}
    for d in new:
        for a, b in zip(read_metrics(d), old_by_hash[read_summary(d)["config_hash"]], strict=True):
            for k in ("train_loss", "val_loss", "val_acc"):
                assert float(a[k]) == pytest.approx(float(b[k]), abs=ROUNDING), k


def test_memory_estimate_splits_a_stack(cli, tmp_path):
    code, out, err = _sweep(cli, "runs", "seed=0,1", VEC, "hydra.launcher.max_memory_gb=0.0000001")
    assert code == 0 and "split into stacks of [1, 1]" in out + err


def test_a_diverging_cell_is_marked_and_the_others_complete(cli, tmp_path):
    code, out, _ = _sweep(cli, "runs", "trainer.epochs=3", "optim=sgd", "optim.lr=0.05,1e6,0.1", VEC)
    assert code == 1 and "3 runs: 2 completed, 1 diverged" in out
    for d in run_dirs(tmp_path / "runs"):
        s, rows = read_summary(d), read_metrics(d)
        assert s["epochs_completed"] == len(rows) >= 1
        if s["status"] == "diverged":
            assert "non-finite" in s["error"] and len(rows) < 3
        else:
            assert s["status"] == "completed" and len(rows) == 3 and s["test"] is not None


@pytest.mark.slow
def test_sigterm_mid_stack_leaves_whole_rows_and_interrupted_cells(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "regbench.cli", "run", "-m", "seed=0,1", "trainer.epochs=500", "dataset=synthetic",
           "dataset.num_samples=2000", "trainer.progress=false", "report=false", VEC, f"results_dir={tmp_path}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        csvs = [d / "metrics.csv" for d in run_dirs(tmp_path) if (d / "metrics.csv").exists()]  # walk-safe
        if len(csvs) == 2 and all(len(c.read_text().splitlines()) > 3 for c in csvs):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    for run_dir in run_dirs(tmp_path):
        s, rows = read_summary(run_dir), read_metrics(run_dir)
        assert s["status"] == "interrupted" and s["epochs_completed"] == len(rows) >= 3
        assert s["stack_cells"] == 2  # a stack's cell: its rows carry the stack's epoch time too
        columns = [*results.METRIC_COLUMNS, *results.STACK_COLUMNS]
        assert all(list(r) == columns and None not in r.values() for r in rows)
        assert not (run_dir / ".running").exists()


def test_out_of_memory_names_max_cells_and_leaves_no_running_cell(cli, tmp_path, monkeypatch):
    from regbench.engine.stack import Stacked

    forward, calls = Stacked.forward, []

    def oom_after(n):
        def fake(self, xb):
            calls.append(1)
            if len(calls) > n:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return forward(self, xb)
        return fake

    # in the trial step before training: nothing has started, so nothing is left
    monkeypatch.setattr(Stacked, "forward", oom_after(0))
    code, out, err = _sweep(cli, "early", "seed=0,1", VEC)
    assert code == 2 and "hydra.launcher.max_cells" in err and len(err.strip().splitlines()) == 1
    assert run_dirs(tmp_path / "early") == []
    # in training (the trial step passed): the started cells say `failed`
    calls.clear()
    monkeypatch.setattr(Stacked, "forward", oom_after(3))
    code, out, err = _sweep(cli, "runs", "seed=0,1", VEC)
    assert code == 2 and "hydra.launcher.max_cells" in err and len(err.strip().splitlines()) == 1
    assert {read_summary(d)["status"] for d in run_dirs(tmp_path / "runs")} == {"failed"}
    assert not list(tmp_path.rglob(".running"))
