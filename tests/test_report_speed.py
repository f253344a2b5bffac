"""What keeps `regbench report` fast, checked as behaviour (speed itself is measured by scripts/bench.py):
one figure format by default, the others on request (`--format`, `report_format=[…]` for a
sweep's own report), and no torch import (dropout types are read from their source files)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from regbench.report import dropout_types, read_runs
from regbench.report import main as report_main
from regbench.report.dropout_types import declared_types
from regbench.report.grid import build_grid
from regbench.report.table import dropout_spec, is_baseline_type
from tests.conftest import FAST, run_dirs
from tests.test_report import write_grid


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
        from regbench.report import main
        assert main([{str(runs)!r}, "--out", {str(tmp_path / "out")!r}]) == 0
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "curves.png").is_file()


def test_declared_types_are_what_the_registry_holds():
    from regbench.regularizers import DROPOUTS

    builtin = {n for n in DROPOUTS.names() if type(DROPOUTS.get(n)).__module__.startswith("regbench.regularizers.")}
    declared = declared_types()
    assert set(declared) == builtin  # every built-in type is read without torch, and nothing else
    for name in builtin:
        spec = DROPOUTS.get(name)
        assert (declared[name].colour, tuple(declared[name].rate_keys)) == (spec.colour, tuple(spec.rate_keys)), name
    assert is_baseline_type("none") and not is_baseline_type("standard")


def test_a_type_not_declared_as_literals_is_looked_up_in_the_registry(tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text(textwrap.dedent("""
        @register
        class Computed(DropoutSpec):
            name = "standard"
            colour = pick_colour()  # not a literal: the source alone cannot tell
    """))
    monkeypatch.setattr(dropout_types, "PACKAGE", tmp_path)
    declared_types.cache_clear()
    try:
        assert declared_types() == {}
        assert dropout_spec("standard").colour == "#1f77b4"  # the registry's StandardDropout
        assert dropout_spec("not-a-type") is None
    finally:
        declared_types.cache_clear()


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


def test_figures_drawn_in_parallel_processes_are_the_files_drawn_in_one(runs, tmp_path, monkeypatch):
    from regbench.report import drawing

    outcomes = {}
    for processes in (1, 2):
        monkeypatch.setattr(drawing, "workers", lambda tasks, n=processes: n)
        out = tmp_path / f"p{processes}"
        out.mkdir()
        grid = build_grid(read_runs([runs])[0])
        written, skipped = drawing.draw_all(grid, out, ("png", "svg"))
        # PNG bytes; SVG by name only: matplotlib's SVG clip-path ids depend on what the process drew before
        outcomes[processes] = ({k: (p.name, c) for k, (p, c) in written.items()}, skipped,
                               {p.name: p.read_bytes() if p.suffix == ".png" else "" for p in sorted(out.iterdir())})
    assert outcomes[1] == outcomes[2]
    assert {"curves", "gap", "rate_sweep", "vs_baseline"} <= set(outcomes[2][0]) and "heatmap" in outcomes[2][1]


def test_no_fork_while_another_thread_runs():
    import threading

    from regbench.report import drawing

    if not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2 or drawing._other_threads():
        pytest.skip("needs Linux, 2 usable cores and no other thread in this test process")
    assert drawing.workers(5) == min(5, len(os.sched_getaffinity(0)))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert drawing.workers(5) == 1  # its locks could be held at the fork: the figures are drawn here
    finally:
        stop.set()
        other.join()


def test_every_figure_drawing_names_has_its_function():
    from regbench.report import drawing, figures

    assert set(figures.FUNCTIONS) == set(drawing.FIGURES)


def test_figure_workers_import_no_statistics(runs, tmp_path):
    """The workers are forked before the statistics: they unpickle the grid and draw without scipy (which
    the parent imports while they import matplotlib), and the parent never imports matplotlib."""
    log = tmp_path / "modules.txt"
    code = textwrap.dedent(f"""
        import os, sys
        from regbench.report import build_report, drawing

        real, parent = drawing._draw, os.getpid()
        def spy(job):
            outcome = real(job)
            with open({str(log)!r}, "a") as f:
                print(os.getpid() != parent, *sorted(m for m in sys.modules if m.split(".")[0] in
                      ("scipy", "torch")), file=f)
            return outcome
        drawing._draw, drawing.workers = spy, lambda tasks: 2
        result = build_report([{str(runs)!r}], {str(tmp_path / "out")!r})
        print(len(result.figures), "matplotlib" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    drawn, parent_has_matplotlib = proc.stdout.split()
    assert int(drawn) >= 4 and parent_has_matplotlib == "False"
    assert log.read_text().split("\n")[:-1] == ["True"] * 6  # every figure, each in a worker, none with scipy


def test_prewarmed_report_process_builds_the_report_raises_its_errors_and_falls_back(runs, tmp_path):
    """A sweep's own report is built in a process forked at the sweep's start (it imports the report's libraries
    while the sweep trains): its result and its exceptions come back as if built here; if it died, the report
    is built here; one never asked exits with the sweep."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from regbench.core.errors import ConfigError
        from regbench.sweeps.callbacks import PrewarmedReport

        warm, failing, dead, idle = (PrewarmedReport() for _ in range(4))  # before this process has pandas
        assert all(p.process is not None and p.process.is_alive() for p in (warm, failing, dead, idle))
        notes, markdown = warm.build([Path({str(runs)!r})], Path({str(tmp_path / "a")!r}))
        print("built", markdown.is_file(), notes, *(lib in sys.modules for lib in ("pandas", "matplotlib")))
        try:
            failing.build([Path({str(tmp_path / "missing")!r})], Path({str(tmp_path / "b")!r}))
        except ConfigError as exc:
            print("raised", str(exc).split(";")[0])
        dead.process.kill()
        dead.process.join()
        print("fallback", dead.build([Path({str(runs)!r})], Path({str(tmp_path / "c")!r}))[1].is_file())
        # idle: never asked, closed at exit
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["built True [] False False",
                                        f"raised path does not exist: {tmp_path / 'missing'}", "fallback True"]
    assert (tmp_path / "a" / "runs.csv").read_bytes() == (tmp_path / "c" / "runs.csv").read_bytes()


def test_prewarmed_report_process_exits_when_the_sweep_dies_without_closing_it():
    """A sweep killed between two runs (SIGTERM's default action) or by kill -9 runs no atexit: its report process
    must still exit, or it would wait for ever and hold the sweep's stdout and stderr open (a caller reading
    them, like a test or a pipeline, would hang)."""
    code = textwrap.dedent("""
        import os
        from regbench.sweeps.callbacks import PrewarmedReport

        first, second = PrewarmedReport(), PrewarmedReport()
        assert first.process.is_alive() and second.process.is_alive()
        print(first.process.pid, second.process.pid, flush=True)
        os._exit(0)  # as a signal death: no atexit, no close()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)  # pipes closed
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == 2


def test_prewarm_only_where_it_saves_the_imports():
    from regbench.sweeps.callbacks import PrewarmedReport

    # this test process has pandas and matplotlib already: the report is built in it, no process is forked
    assert PrewarmedReport().process is None and PrewarmedReport(start=False).process is None


def test_default_sweep_builds_its_report_in_the_prewarmed_process(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from regbench.cli import main
        code = main(["run", "-m", "seed=0,1", "dataset=digits", "model=mlp", "model.hidden=[16]", "trainer.epochs=1",
                     "trainer.progress=false", "trainer.device=cpu", "results_dir={tmp_path / 'runs'}"])
        print(code, *(m in sys.modules for m in ("regbench.report", "regbench.report.grid", "regbench.report.figures")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # the sweep's own process read, computed and drew nothing, and unpickled no report result
    assert proc.stdout.split()[-4:] == ["0", "False", "False", "False"]
    assert len(list((tmp_path / "runs").glob("*/report/curves.png"))) == 1
