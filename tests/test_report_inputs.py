"""Report inputs a new user trips over (issue 13): a rate sweep over any rate slot or numeric key,
runs of several datasets / models, long legends, a damaged last metrics.csv line, skipped folders."""

from __future__ import annotations

import io
import json

import matplotlib
import yaml
from test_report import write_grid, write_run

from regbench.cli.report_commands import report_main as main
from regbench.report import build_report
from regbench.report.collect import load_run
from regbench.report.figures import gap
from regbench.report.grid import build_grid
from regbench.report.style import RC_PARAMS


def _set(folder, **changes):
    """Edit a written run's config.yaml: changes like {'dropout.p_conv': 0.1}."""
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        node[leaf] = value
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_rate_sweep_over_p_conv_when_p_is_constant(tmp_path):
    root = tmp_path / "runs"
    for i, p_conv in enumerate((0.3, 0.0, 0.2, 0.1)):  # given unsorted, as a grid may list them
        for seed in (0, 1):
            write_run(root / f"c{i}", dropout="spatial", p=0.0, seed=seed)
            folder = next(p for p in (root / f"c{i}").iterdir() if f"s{seed}" in p.name)
            _set(folder, **{"dropout.p_conv": p_conv})
    result = build_report([root], tmp_path / "out", formats=("png",))
    assert "rate_sweep" in result.figures, result.figures_skipped
    md = result.markdown.read_text()
    assert "`dropout.p_conv` ∈ {0, 0.1, 0.2, 0.3}" in md  # sorted
    assert "against dropout.p_conv" in md


def test_rate_sweep_falls_back_to_another_numeric_key(tmp_path):
    write_grid(tmp_path / "runs", dropouts=("standard",), rates=(0.3,), seeds=(0, 1), weight_decay=0.0)
    write_grid(tmp_path / "runs", dropouts=("standard",), rates=(0.3,), seeds=(0, 1), weight_decay=0.01)
    result = build_report([tmp_path / "runs"], tmp_path / "out", formats=("png",), figures=["rate_sweep"])
    assert "rate_sweep" in result.figures, result.figures_skipped
    assert "against optim.weight_decay" in result.markdown.read_text()


def test_each_dataset_gets_its_own_figures(tmp_path):
    for dataset in ("digits", "mnist1d"):
        write_grid(tmp_path / "runs", dropouts=("standard",), rates=(0.0, 0.5), seeds=(0, 1), dataset=dataset)
    result = build_report([tmp_path / "runs"], tmp_path / "out", formats=("png",), figures=["gap", "rate_sweep"])
    assert set(result.figures) == {f"{f}:{d}-mlp" for f in ("gap", "rate_sweep") for d in ("digits", "mnist1d")}
    assert not (tmp_path / "out" / "gap.png").exists() and (tmp_path / "out" / "gap-mnist1d-mlp.png").exists()
    assert "### Generalization gap — digits-mlp" in result.markdown.read_text()


def test_a_long_legend_does_not_collapse_the_axes(tmp_path):
    root = tmp_path / "runs"
    rates = tuple(round(0.01 * i, 2) for i in range(40))
    write_grid(root, dropouts=("standard",), rates=rates, seeds=(0,), epochs=3)
    for i, folder in enumerate(sorted(root.iterdir())):
        _set(folder, **{"optim.name": f"a-rather-long-optimizer-label-{'x' * 40}-{i:02d}"})
    grid = build_grid([load_run(f) for f in sorted(root.iterdir())])
    with matplotlib.rc_context(RC_PARAMS):
        fig, _ = gap(grid)
        fig.savefig(io.BytesIO(), format="png", dpi=50)  # runs the constrained layout
    for ax in fig.axes:
        width, height = ax.get_position().width, ax.get_position().height
        assert width * fig.get_size_inches()[0] > 3.0 and height > 0.5, (width, height)  # 3 in, as drawn alone


def test_a_malformed_last_metrics_line_costs_that_line(tmp_path, capsys):
    root = tmp_path / "runs"
    metrics = write_run(root / "r", seed=0)
    folder = next((root / "r").iterdir())
    with (folder / "metrics.csv").open("a") as f:
        f.write("garbage,not,a,row\n")  # a whole but malformed last line
    (root / "orphan").mkdir()
    (root / "orphan" / "summary.json").write_text(json.dumps({"status": "completed"}))
    assert main([str(root), "--out", str(tmp_path / "out"), "--figures", "curves"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {folder}: metrics.csv: dropped a malformed last line" in err
    assert f"warning: {root / 'orphan'}: damaged, not counted: has summary.json but no config.yaml" in err
    table = build_report([root], tmp_path / "out2", formats=("png",), figures=[]).table
    assert len(table) == 1 and table["epochs_completed"].iloc[0] == len(metrics)
