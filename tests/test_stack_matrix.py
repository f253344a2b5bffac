"""Item 1's matrix: each config trained alone and inside a stack gives the same run folder.

Same files, same metrics.csv columns, same summary.json keys (`stack_cells` says how many shared the stack), and the
same curves to 1e-5, with dropout and augmentation too: every draw of a cell comes from its own streams
(regularizers/streams.py), so a stack computes the lone run's numbers up to float rounding. Cells that cannot
share a stack train alone inside the call, so they match too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FAST, read_metrics, read_summary

from regbench.engine.cells import Cell
from regbench.engine.loop import train
from regbench.engine.plan import alone_reason
from regbench.records import results

TINY = [*FAST, "dataset.train_size=200", "model.channels=[4]"]
EXACT = 1e-5  # float rounding of the stacked kernels, accumulated over 2 epochs (measured: ~1e-6)
CNN1D = ["model=cnn", "dataset=mnist1d", "dataset.num_samples=600"]
CASES = {
    # deterministic: exact
    "plain": [],
    # BatchNorm with SGD: Adam's normalised steps amplify rounding in BN's scale-invariant directions (~1e-4)
    "batchnorm": ["model.batchnorm=true", "optim=sgd", "optim.lr=0.05"],
    "l1": ["reg.l1=1e-3"],
    "max_norm": ["reg.max_norm=0.5"],
    "label_smoothing": ["reg.label_smoothing=0.2"],
    "cosine": ["optim.schedule=cosine", "optim.warmup_epochs=1"],
    "step_sgd": ["optim=sgd", "optim.schedule=step", "optim.step_size=1"],
    "early_stop": ["trainer.epochs=6", "trainer.patience=1", "optim.lr=0.05"],
    "tensorboard": ["logger=tensorboard"],
    "mc_final": ["eval.mc_samples=3"],
    "cnn2d_bn": ["model=cnn", "model.batchnorm=true", "optim=sgd", "optim.lr=0.05"],
    "cnn1d": CNN1D,
    # trains alone inside the call (engine/plan.py): exact
    "checkpoint": ["trainer.checkpoint=true"],
    "eval_train": ["dropout=standard", "dropout.p=0.3", "eval.mode=train"],
    "mc_every_epoch": ["dropout=standard", "dropout.p=0.3", "eval.mc_samples=2", "eval.mc_every_epoch=true"],
    # random draws, from each cell's own streams
    "standard": ["dropout=standard", "dropout.p=0.3", "dropout.p_input=0.1"],
    "gaussian": ["dropout=gaussian", "dropout.p=0.3"],
    "alpha": ["dropout=alpha", "dropout.p=0.1"],
    "original": ["dropout=original", "dropout.p=0.3"],
    "spatial": ["model=cnn", "dropout=spatial", "dropout.p=0.3"],
    "spatial_1d": [*CNN1D, "dropout=spatial", "dropout.p=0.3"],
    "dropblock_ramp": ["model=cnn", "dropout=dropblock", "dropout.p=0.3", "dropout.schedule=linear"],
    "dropconnect": ["model=cnn", "dropout=dropconnect", "dropout.p=0.3", "dropout.p_conv=0.2"],
    "dropconnect_sample": ["dropout=dropconnect", "dropout.p=0.3", "dropout.mask=sample"],
    "flip_crop": ["model=cnn", "augment=flip_crop"],
    "shift_noise_1d": [*CNN1D, "augment=shift_noise"],
    "mixup": ["augment=mixup", "augment.mixup_alpha=0.4"],
    "mc_dropout": ["dropout=standard", "dropout.p=0.3", "eval.mc_samples=4"],  # MC passes after training
    "cutmix_bn": ["model=cnn", "model.batchnorm=true", "augment=cutmix"],
}
SLOW = {"cnn1d", "spatial_1d", "shift_noise_1d", "dropconnect", "cutmix_bn"}


def _files(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir).parent / p.name.split(".")[0]) for p in run_dir.rglob("*")
                  if p.is_file() and "tensorboard" not in p.parts) + \
        (["tensorboard/"] if (run_dir / "tensorboard").is_dir() else [])


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in CASES])
def test_alone_and_inside_a_stack_write_the_same_run(make_cfg, tmp_path, case):
    overrides = [*TINY, *CASES[case]]
    lone = Cell(cfg=make_cfg(*overrides, f"results_dir={tmp_path / 'alone'}"))
    train([lone])
    # inside a stack: the same config next to a companion cell with other values (seed, lr)
    cells = [Cell(cfg=make_cfg(*overrides, f"results_dir={tmp_path / 'stack'}")),
             Cell(cfg=make_cfg(*overrides, "seed=7", "optim.lr=0.003", f"results_dir={tmp_path / 'stack'}"))]
    train(list(cells))
    stacked, alone = cells[0].summary, lone.summary
    a, b = Path(stacked["run_dir"]), Path(alone["run_dir"])

    assert stacked["status"] == alone["status"] == "completed"
    assert _files(a) == _files(b)
    stacked_for_real = alone_reason(cells[0].cfg) is None  # else each cell trained as a stack of one
    stack_columns = results.STACK_COLUMNS if stacked_for_real else []  # its stack's size and wall time
    assert (a / "metrics.csv").read_text().splitlines()[0] == ",".join(
        [(b / "metrics.csv").read_text().splitlines()[0], *stack_columns])
    expected_keys = set(alone) | ({"stack_seconds"} if stacked_for_real else set())
    assert set(stacked) == expected_keys
    assert stacked["stack_cells"] == (2 if stacked_for_real else 1) and alone["stack_cells"] == 1
    rows_a, rows_b = read_metrics(a), read_metrics(b)
    assert len(rows_a) == len(rows_b) and read_summary(a)["best_epoch"] == read_summary(b)["best_epoch"]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for k in rows_b[0]:
            if k not in ("epoch", "seconds"):
                assert float(ra[k]) == pytest.approx(float(rb[k]), abs=EXACT), (k, ra["epoch"])
    for block in ("test", "calibration", "mc"):  # evaluations after training (MC passes: the evaluation stream)
        if alone.get(block) is not None:
            assert _numbers(read_summary(a)[block]) == pytest.approx(_numbers(read_summary(b)[block]), abs=EXACT)


def _numbers(tree) -> list[float]:
    """The floats of a summary.json block, depth first."""
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in _numbers(tree[k])]
    if isinstance(tree, list):
        return [x for v in tree for x in _numbers(v)]
    return [float(tree)] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []
