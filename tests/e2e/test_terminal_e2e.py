"""What a sweep prints into a pipe (a file, a CI log), as a user starts it: the installed `regbench` in a fresh
process with a clean environment, stdout and stderr into one pipe (`regbench run -m ... 2>&1 | tee log`)."""

from __future__ import annotations

import pytest
from e2e_env import require_console_script, run_process

pytestmark = pytest.mark.e2e


def test_a_piped_sweep_prints_regbench_lines_only_and_verbose_brings_hydras_log_back(tmp_path):
    """A 12-cell sweep into a pipe: one line per cell, the closing table and the report path, no Hydra log
    line and no colour code; `-v` shows Hydra's launch lines and each cell's start line again."""
    require_console_script()
    grid = ["dropout=standard", "dropout.p=0,0.1,0.3,0.5", "seed=0,1,2", "model.hidden=[16]", "trainer.epochs=1"]
    quiet = run_process(["regbench", "run", "-m", *grid], tmp_path)
    assert quiet.code == 0, quiet.output
    lines = quiet.output.splitlines()
    assert len(lines) <= 30 and not [ln for ln in lines if "[HYDRA]" in ln or "\x1b" in ln], lines
    assert sum(": completed in " in ln for ln in lines) == 12  # each cell's final line
    assert not [ln for ln in lines if ln.startswith(("run ", "Launching", "\t#"))]  # no start / launch lines
    assert lines[-2].startswith("sweep finished: 12 runs: 12 completed") and lines[-1].startswith("report: ")
    verbose = run_process(["regbench", "run", "-m", "-v", *grid[:1], "dropout.p=0,0.5", "seed=0", *grid[3:],
                           "results_dir=verbose"], tmp_path)
    assert verbose.code == 0, verbose.output
    assert "[HYDRA] Launching 2 jobs" in verbose.output and verbose.output.count("[HYDRA] run verbose/") == 2
