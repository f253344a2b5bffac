"""What keeps `regbench report` fast, checked as behaviour (speed itself is measured by scripts/bench.py):
one figure format by default, the others on request (`--format`, `report_format=[…]` for a
sweep's own report), and no torch import (dropout types are read from their source files)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import FAST, run_dirs
from test_report import write_grid

from regbench.cli.report_commands import report_main
from regbench.core.dropout_types import BUILT_IN, RATE_KEYS
from regbench.report.table import dropout_spec, is_baseline_type


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("speed")
    write_grid(root / "sweep", rates=(0.0, 0.5), seeds=(0, 1))
    return root


def figure_files(folder, suffix):
    return sorted(p.stem for p in folder.glob(f"*.{suffix}"))


def test_default_report_writes_png_only_and_format_adds_the_others(runs, tmp_path, capsys):
    assert report_main([str(runs), "--out", str(tmp_path / "a"), "--figures", "gap,rate_sweep"]) == 0
    assert figure_files(tmp_path / "a", "png") == ["gap", "rate_sweep"]
    assert figure_files(tmp_path / "a", "svg") == [] and figure_files(tmp_path / "a", "pdf") == []
    assert report_main([str(runs), "--out", str(tmp_path / "b"), "--figures", "gap", "--format", "svg,pdf"]) == 0
    assert [figure_files(tmp_path / "b", s) for s in ("png", "svg", "pdf")] == [["gap"]] * 3  # PNG: always


def test_report_imports_no_torch(runs, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from regbench.cli.report_commands import report_main as main
        assert main([{str(runs)!r}, "--out", {str(tmp_path / "out")!r}]) == 0
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "curves.png").is_file()


def test_the_report_knows_every_built_in_type_as_the_registry_does():
    from regbench.regularizers import DROPOUTS

    builtin = {n for n in DROPOUTS.names() if type(DROPOUTS.get(n)).__module__.startswith("regbench.regularizers.")}
    assert set(BUILT_IN) == builtin  # every built-in type is known without torch, and nothing else
    for name in builtin:
        spec = DROPOUTS.get(name)
        assert dropout_spec(name) == BUILT_IN[name]
        assert (spec.colour, tuple(spec.rate_keys)) == (BUILT_IN[name].colour, BUILT_IN[name].rate_keys), name
    assert is_baseline_type("none") and not is_baseline_type("standard")
    assert dropout_spec("not-a-type") is None


def test_a_plugin_type_is_looked_up_in_the_registry():
    from regbench.regularizers import DROPOUTS
    from regbench.regularizers.base import DropoutSpec

    class Mine(DropoutSpec):
        name = "mine_for_the_report"
        colour = "#123456"
        rate_keys = ("p",)

    DROPOUTS.register(Mine.name)(Mine())
    try:
        assert dropout_spec(Mine.name).colour == "#123456" and not is_baseline_type(Mine.name)
        assert DropoutSpec().colour is None and DropoutSpec().rate_keys == RATE_KEYS  # no facts declared
    finally:
        DROPOUTS.unregister(Mine.name)


def test_sweep_report_writes_the_formats_of_report_format(cli, tmp_path):
    with_report = [o for o in FAST if o != "report=false"]
    code, out, err = cli("run", "-m", "seed=0,1", "report_format=[svg]", *with_report)
    assert code == 0, err
    report = run_dirs(tmp_path / "runs")[0].parent / "report"
    assert figure_files(report, "svg") == figure_files(report, "png") != []
    code, out, err = cli("run", "-m", "seed=0,1", *with_report, "results_dir=other")  # the default: PNG alone
    assert code == 0, err
    report = run_dirs(tmp_path / "other")[0].parent / "report"
    assert figure_files(report, "png") != [] and figure_files(report, "svg") == []


@pytest.mark.parametrize(("override", "message"), [
    ("report_format=[gif] report=true", "report_format='gif' is not valid; valid choices: png, svg, pdf"),
    ("report_format=[svg] report=false", "has no effect with report=false"),
])
def test_bad_report_format_is_refused_before_training(cli, tmp_path, override, message):
    code, out, err = cli("run", "-m", "seed=0,1", *FAST, *override.split())
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or run_dirs(tmp_path / "runs") == []


def test_every_figure_drawing_names_has_its_function():
    from regbench.report import drawing, figures

    assert set(figures.FUNCTIONS) == set(drawing.FIGURES)


def test_a_report_draws_in_its_own_process_and_a_second_build_writes_the_same_pngs(runs, tmp_path):
    """No worker processes: the figures are drawn here, one after another (no child is left behind by an
    interrupted report), and drawing the same runs again gives the same PNG bytes."""
    import multiprocessing

    from regbench.report import build_report

    first = build_report([runs], tmp_path / "a")
    assert multiprocessing.active_children() == []
    second = build_report([runs], tmp_path / "b")
    assert {"curves", "gap", "rate_sweep", "vs_baseline"} <= set(first.figures)
    assert {k: p.read_bytes() for k, p in first.figures.items()} == {k: p.read_bytes() for k, p in
                                                                      second.figures.items()}


def test_interrupted_report_leaves_no_staging_folder(runs, tmp_path, monkeypatch):
    """Ctrl-C while the figures are drawn: the report's staging folder is removed and nothing is half-written."""
    from regbench.report import build_report, figures

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "draw_one", interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_report([runs], tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_sweep_callbacks_pickle_for_out_of_process_launchers():
    """Hydra pickles the callbacks into every job of joblib, submitit and Ray: they must hold nothing live."""
    import pickle

    from regbench.sweeps.callbacks import SweepProgress, SweepReport

    report = SweepReport()
    assert type(pickle.loads(pickle.dumps(report))) is SweepReport
    assert type(pickle.loads(pickle.dumps(SweepProgress()))) is SweepProgress
