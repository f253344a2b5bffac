"""`regbench report` against synthetic run folders written to the run-folder contract (docs/architecture.md).

The training code is written in parallel, so these tests make their own runs: realistic
curves (train loss falls faster than val loss, the gap grows with epochs and shrinks with
dropout, seeds differ by noise) in exactly the files a run writes.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from regbench.cli.report_commands import report_main as main
from regbench.report import build_report

EPOCHS = 5  # enough for a curve, few enough to keep the files tiny
SEEDS = (0, 1, 2)
RATES = (0.0, 0.3, 0.5)
CALIBRATION_BINS = 15


def make_curves(dropout: str, p: float, seed: int, weight_decay: float, epochs: int) -> pd.DataFrame:
    """Per-epoch metrics of a plausible run: dropout and decay slow fitting and shrink the gap."""
    rng = np.random.default_rng([seed, int(p * 100), int(weight_decay * 1e5), len(dropout)])
    strength = (p if dropout != "none" else 0.0) + 500 * weight_decay  # dropout=none ignores p
    epoch = np.arange(1, epochs + 1)
    noise = lambda scale: rng.normal(0.0, scale, epochs)  # noqa: E731 - seeds differ by noise only
    train_loss = 2.3 * np.exp(-epoch / (1.2 + 1.5 * strength)) + 0.02 + 0.1 * strength + np.abs(noise(0.01))
    gap_loss = (0.03 + 0.08 * epoch) * (1 - strength) + noise(0.01)
    train_acc = np.clip(1 - 0.9 * np.exp(-epoch / (1.0 + strength)) - 0.03 * strength + noise(0.004), 0, 1)
    gap_acc = (0.01 + 0.02 * epoch) * (1 - strength) + noise(0.004)
    return pd.DataFrame(
        {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": train_loss + gap_loss,
            "val_acc": train_acc - gap_acc,
            "gap_loss": gap_loss,
            "gap_acc": gap_acc,
            "lr": 1e-3,
            "seconds": 0.4 + rng.random(epochs) / 10,
            "batch_loss": train_loss * (1 + strength) + 0.05,  # train-mode loss sits above eval-mode loss
        }
    )


def mc_fields(val_acc: float, p: float, rng: np.random.Generator) -> dict:
    """MC-dropout and deterministic calibration fields as the evaluator will write them."""
    conf = np.linspace(0.5, 0.97, CALIBRATION_BINS)
    gain = 1 - p  # MC averaging calibrates better the more dropout there is to average over

    def split(over: float) -> dict:
        return {
            "acc": val_acc,
            "nll": 0.3 + over,
            "brier": 0.1,
            "ece": 0.02 + over,
            "entropy": 0.2,
            "mutual_info": 0.05,
        }

    def bins(over: float) -> dict:
        acc = np.clip(conf - over * conf + rng.normal(0, 0.01, CALIBRATION_BINS), 0, 1)
        return {"bin_confidence": conf.tolist(), "bin_accuracy": acc.tolist(), "bin_count": [20] * CALIBRATION_BINS}

    return {
        "mc": {"val": split(0.03 * gain), "test": split(0.03 * gain), "calibration": bins(0.1 * gain)},
        "calibration": {"val": split(0.05), "test": split(0.05), "calibration": bins(0.15)},
    }


def write_run(
    root: Path,
    *,
    dropout: str = "standard",
    p: float = 0.3,
    seed: int = 0,
    weight_decay: float = 0.0,
    dataset: str = "digits",
    epochs: int = EPOCHS,
    finished: bool = True,
    status: str = "completed",
    mc: bool = False,
) -> pd.DataFrame:
    """Write one run folder as `regbench run` does; returns the metrics it wrote."""
    overrides = [
        f"dataset={dataset}",
        f"dropout={dropout}",
        f"dropout.p={p}",
        f"optim.weight_decay={weight_decay}",
        f"seed={seed}",
        f"trainer.epochs={EPOCHS}",
    ]
    folder = root / f"{dataset}-{dropout}-p{p}-wd{weight_decay}-s{seed}"
    folder.mkdir(parents=True)
    config = {
        "dataset": {
            "name": dataset,
            "root": "data",
            "download": False,
            "val_fraction": 0.2,
            "train_size": None,
            "split_seed": 0,
        },
        "model": {
            "name": "mlp",
            "hidden": [64, 64],
            "channels": [32, 64],
            "kernel_size": 3,
            "activation": "relu",
            "batchnorm": False,
        },
        "dropout": {"name": dropout, "p": p, "p_input": 0.0, "p_conv": None, "per_layer": None},
        "optim": {"name": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": weight_decay, "schedule": "none"},
        "augment": {"name": "none", "ops": []},
        "reg": {"label_smoothing": 0.0},
        "trainer": {"epochs": EPOCHS, "batch_size": 64, "device": "cpu", "progress": False},
        "seed": seed,
        "results_dir": str(root),
        "sweep_name": "grid",
        "name": None,
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    metrics = make_curves(dropout, p, seed, weight_decay, epochs)
    metrics.to_csv(folder / "metrics.csv", index=False)
    if not finished:
        return metrics
    last = metrics.iloc[-1]
    best = metrics.loc[metrics["val_loss"].idxmin()]
    keys = ["train_loss", "train_acc", "val_loss", "val_acc", "gap_loss", "gap_acc"]
    summary = {
        "status": status,
        "run_id": folder.name,
        "config_hash": f"hash-{dataset}-{dropout}-{p}-{weight_decay}",
        "seed": seed,
        "device": "cpu",
        "epochs_completed": epochs,
        "best_epoch": int(best["epoch"]),
        "stopped_early": False,
        "final": {k: float(last[k]) for k in keys},
        "best": {k: float(best[k]) for k in keys},
        "test": {"loss": float(last["val_loss"]) + 0.01, "acc": float(last["val_acc"]) - 0.005},
        "seconds": float(metrics["seconds"].sum()),
        "overrides": overrides,
        "command": "regbench run " + " ".join(overrides),
        "versions": {"torch": "2.5.0", "regbench": "0.1.0"},
        "git_commit": None,
        "error": None,
    }
    if mc:
        summary |= mc_fields(float(last["val_acc"]), p if dropout != "none" else 0.0, np.random.default_rng(seed))
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return metrics


def write_grid(root: Path, dropouts=("none", "standard"), rates=RATES, seeds=SEEDS, **kw) -> dict:
    """A dropout × rate × seed grid; returns {(dropout, p, seed): metrics written}."""
    return {(d, p, s): write_run(root, dropout=d, p=p, seed=s, **kw) for d in dropouts for p in rates for s in seeds}


def final_val_acc(written: dict, dropout: str, p: float) -> list[float]:
    return [float(written[dropout, p, s]["val_acc"].iloc[-1]) for s in SEEDS]


# ---------------------------------------------------------------------------- a full grid through the CLI


@pytest.fixture(scope="module")
def grid_report(tmp_path_factory) -> dict:
    """One CLI report over dropout none/standard × p 0, 0.3, 0.5 × seeds 0, 1, 2 (shared: figures are slow)."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("grid")
    written = write_grid(root / "sweep")
    out = root / "report-out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main([str(root), "--out", str(out), "--format", "png"])
    return {"root": root, "out": out, "written": written, "code": code, "stdout": stdout.getvalue()}


def test_grid_report_writes_tables_figures_and_report(grid_report):
    out = grid_report["out"]
    assert grid_report["code"] == 0
    for name in (
        "runs.csv",
        "groups.csv",
        "report.md",
        "report.html",
        "curves.png",
        "gap.png",
        "rate_sweep.png",
        "vs_baseline.png",
    ):
        assert (out / name).is_file(), name
    # One varied numeric key and no MC fields: these two are not drawn.
    assert not (out / "heatmap.png").exists()
    assert not (out / "calibration.png").exists()
    assert str(out / "report.html") in grid_report["stdout"]
    assert "18 runs read" in grid_report["stdout"] and "0 skipped" in grid_report["stdout"]


def test_runs_csv_has_one_row_per_run_with_config_and_metrics(grid_report):
    runs = pd.read_csv(grid_report["out"] / "runs.csv")
    assert len(runs) == len(grid_report["written"]) == 18
    for column in (
        "path",
        "status",
        "seed",
        "dropout.name",
        "dropout.p",
        "optim.weight_decay",
        "final.val_acc",
        "final.gap_acc",
        "best.val_acc",
        "test.acc",
        "command",
        "group",
    ):
        assert column in runs.columns, column
    assert set(runs["status"]) == {"completed"}
    row = runs[(runs["dropout.name"] == "standard") & (runs["dropout.p"] == 0.5) & (runs["seed"] == 2)].iloc[0]
    assert row["final.val_acc"] == pytest.approx(grid_report["written"]["standard", 0.5, 2]["val_acc"].iloc[-1])


def test_groups_csv_aggregates_seeds(grid_report):
    groups = pd.read_csv(grid_report["out"] / "groups.csv")
    assert len(groups) == 6
    assert (groups["n"] == 3).all()
    assert set(groups["seeds"]) == {"0,1,2"}
    for dropout, p in (("standard", 0.3), ("none", 0.0)):
        row = groups[(groups["dropout.name"] == dropout) & (groups["dropout.p"] == p)].iloc[0]
        expected = final_val_acc(grid_report["written"], dropout, p)
        assert row["final.val_acc.mean"] == pytest.approx(statistics.mean(expected))
        assert row["final.val_acc.std"] == pytest.approx(statistics.stdev(expected))
        assert row["label"] == f"dropout={dropout}, p={p:g}"


def test_report_names_varied_keys_skipped_figures_and_rerun_command(grid_report):
    md = (grid_report["out"] / "report.md").read_text()
    assert "`dropout.name` ∈ {none, standard}" in md
    assert "`dropout.p` ∈ {0, 0.3, 0.5}" in md
    assert "`heatmap`: needs exactly two numeric config values that vary; found 1 (dropout.p)" in md
    assert "`calibration`: no run has MC-dropout" in md
    assert "could not be drawn" not in md  # every drawable figure drew without an exception
    assert "dropout=none,standard dropout.p=0,0.3,0.5 seed=0,1,2" in md
    assert "regbench run dataset=digits dropout=standard dropout.p=0.3" in md  # a run's own command
    html = (grid_report["out"] / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert '<table class="dataframe sortable">' in html and "<script>" in html
    best = statistics.mean(final_val_acc(grid_report["written"], "standard", 0.3))  # dropout helps in this data
    assert all(
        best >= statistics.mean(final_val_acc(grid_report["written"], d, p))
        for d in ("none", "standard")
        for p in RATES
        if (d, p) != ("standard", 0.5)
    )


# ---------------------------------------------------------------------------- which figures the data supports


def test_heatmap_when_weight_decay_and_rate_vary(tmp_path):
    for wd in (0.0, 5e-4):
        write_grid(tmp_path / "runs", dropouts=("standard",), rates=(0.0, 0.5), seeds=(0,), weight_decay=wd)
    result = build_report([tmp_path / "runs"], tmp_path / "out", formats=("png",), figures=["heatmap"])
    assert result.varied == ["dropout.p", "optim.weight_decay"]
    assert result.figures == {"heatmap": tmp_path / "out" / "heatmap.png"}
    assert result.figures["heatmap"].stat().st_size > 0
    assert len(result.groups) == 4 and (result.groups["n"] == 1).all()


def test_calibration_figure_when_runs_have_mc_fields(tmp_path):
    write_grid(tmp_path, dropouts=("standard",), rates=(0.1, 0.5), seeds=(0, 1), mc=True)
    result = build_report([tmp_path], tmp_path / "out", formats=("png",), figures=["calibration"])
    assert "calibration" in result.figures, result.figures_skipped
    assert result.groups["mc.test.ece.mean"].notna().all()


# ---------------------------------------------------------------------------- bad, unfinished and mixed input


def test_corrupt_runs_are_skipped_and_unfinished_runs_kept(tmp_path):
    root = tmp_path / "runs"
    write_grid(root, dropouts=("standard",), rates=(0.3,), seeds=(0, 1))
    write_run(root / "bad-csv", seed=2)
    bad_csv = next((root / "bad-csv").iterdir()) / "metrics.csv"
    bad_csv.write_text(bad_csv.read_text().replace("\n2,", "\n2,9,9,", 1))  # a row with extra fields
    write_run(root / "bad-json", seed=3)
    bad_json = next((root / "bad-json").iterdir()) / "summary.json"
    bad_json.write_text(bad_json.read_text()[:40])  # cut mid-object
    live_metrics = write_run(root / "live", seed=4, finished=False, epochs=3)
    live = next((root / "live").iterdir())
    with (live / "metrics.csv").open("a") as f:
        f.write("4,0.5,0.8")  # the writer died mid-line
    write_run(root / "boom", seed=5, status="diverged")
    write_run(root / "old", seed=6, status="interrupted")  # then retrained from scratch elsewhere
    old = next((root / "old").iterdir()) / "summary.json"
    old.write_text(json.dumps(json.loads(old.read_text()) | {"superseded_by": "new-folder"}))
    (root / "orphan").mkdir()
    (root / "orphan" / "metrics.csv").write_text("epoch\n")

    result = build_report([root], tmp_path / "out", formats=("png",), figures=["curves"])
    reasons = {
        Path(s.path).parent.name if s.path != str(root / "orphan") else "orphan": s.reason for s in result.skipped
    }
    assert reasons["bad-csv"].startswith("metrics.csv: line 3 has 12 fields, the header has 10")
    assert reasons["bad-json"].startswith("summary.json: invalid JSON")
    assert reasons["orphan"] == "has metrics.csv but no config.yaml"
    table = result.table.set_index("seed")
    assert len(table) == 5  # two good runs, the unfinished, the diverged and the superseded one
    assert table.at[4, "status"] == "killed" and table.at[4, "epochs_completed"] == 3  # no marker: its process is gone
    assert "dropped an incomplete last line" in table.at[4, "issues"] and "killed" in table.at[4, "issues"]
    assert table.at[6, "status"] == "superseded" and "superseded by new-folder" in table.at[6, "issues"]
    assert table.at[4, "final.val_acc"] == pytest.approx(live_metrics["val_acc"].iloc[-1])
    # The completed seeds make the mean; unfinished and diverged runs are listed, not averaged.
    assert not table.loc[[4, 5, 6], "aggregated"].any()
    assert result.groups["n"].tolist() == [2]
    assert "curves" in result.figures
    md = result.markdown.read_text()
    for text in (str(live), "killed", "diverged", "3/5", "invalid JSON", "Skipped folders"):
        assert text in md, text


def test_mixed_datasets_are_grouped_apart_and_noted(tmp_path):
    write_grid(tmp_path, dropouts=("standard",), rates=(0.3,), seeds=(0, 1), dataset="digits")
    write_grid(tmp_path, dropouts=("standard",), rates=(0.3,), seeds=(0, 1), dataset="mnist1d")
    result = build_report([tmp_path], tmp_path / "out", formats=("png",), figures=[])
    assert result.varied == ["dataset.name"]
    assert sorted(result.groups["label"]) == ["dataset=digits", "dataset=mnist1d"]
    assert any("2 datasets" in note for note in result.notes)
    assert "Runs come from 2 datasets" in result.markdown.read_text()


def test_no_runs_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no runs found under {tmp_path / 'empty'}" in err
    assert not (tmp_path / "empty" / "report").exists()


def test_missing_path_is_a_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_only_unreadable_runs_is_a_one_line_error(tmp_path, capsys):
    write_run(tmp_path, seed=0)
    (next(tmp_path.iterdir()) / "summary.json").write_text("{")
    assert main([str(tmp_path), "--format", "png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no readable runs" in err and "invalid JSON" in err


@pytest.mark.parametrize("rates", [(0.0,), (0.0, 0.25, 0.5, 0.75, 0.125)])  # one cell; two rows, blanks in the last
def test_curves_grid_laid_out_by_hand_has_no_overlapping_text(tmp_path, rates):
    """The curves grid has a fixed layout (figures.CELL_MARGINS): every piece of text inside the figure, and
    no two that belong to different places (cells, axes, titles, legend) overlapping."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from regbench.report import read_runs
    from regbench.report.figures import curves
    from regbench.report.grid import build_grid
    from regbench.report.style import RC_PARAMS

    write_grid(tmp_path, dropouts=("standard",), rates=rates)
    with matplotlib.rc_context(RC_PARAMS):
        fig, _ = curves(build_grid(read_runs([tmp_path])[0]))
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        boxes = []  # (owner, bbox): texts of one axis may touch each other, never another owner's
        for i, ax in enumerate(fig.axes):
            for axis, name, at in ((ax.xaxis, "x", 0), (ax.yaxis, "y", 1)):
                lo, hi = sorted(axis.get_view_interval())  # ticks beyond the limits exist but are not drawn
                labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()
                          and lo <= t.get_position()[at] <= hi]
                boxes += [((i, name), t.get_window_extent(renderer)) for t in labels]
                if axis.label.get_text():
                    boxes.append(((i, name + "label"), axis.label.get_window_extent(renderer)))
        boxes += [(("text", j), t.get_window_extent(renderer)) for j, t in enumerate(fig.texts)]  # titles
        boxes.append((("legend",), fig.legends[0].get_window_extent(renderer)))
    page = fig.bbox
    outside = [owner for owner, box in boxes if not (page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0
                                                     and box.y1 <= page.y1)]
    assert outside == []
    clashes = [(a, b) for k, (a, box_a) in enumerate(boxes) for b, box_b in boxes[k + 1:]
               if a != b and box_a.overlaps(box_b)]
    assert clashes == []
    assert len(fig.texts) == len(rates) + 1  # a title per cell and the figure's own
