"""A report rebuilt from unchanged runs is the same bytes: `make figures` on an unchanged checkout leaves
`git status` clean (results/<sweep>/report is committed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib
from test_report import write_grid

from regbench.report.figures import FUNCTIONS


def regbench_report(cwd: Path, hash_seed: str) -> dict[str, bytes]:
    """`regbench report runs --out report` as scripts/make_figures.sh runs it, every figure format, in a
    fresh process whose str hashes (set and dict-of-set order) are seeded by hash_seed; the files it wrote."""
    exe = Path(sys.executable).with_name("regbench")
    proc = subprocess.run([str(exe), "report", "runs", "--out", "report", "--format", "png,svg,pdf"], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONHASHSEED": hash_seed})
    assert proc.returncode == 0, proc.stderr
    return {p.name: p.read_bytes() for p in sorted((cwd / "report").iterdir())}


def test_a_report_rebuilt_on_the_same_runs_is_byte_identical(tmp_path):
    # two dropout types x two rates x two decays, with MC-dropout fields: every figure is drawn
    write_grid(tmp_path / "runs", rates=(0.0, 0.5), seeds=(0, 1, 2), mc=True)
    write_grid(tmp_path / "runs", dropouts=("standard",), rates=(0.0, 0.5), seeds=(0, 1, 2), mc=True,
               weight_decay=1e-3)
    first = regbench_report(tmp_path, "1")
    second = regbench_report(tmp_path, "2")  # over the first, as make figures does
    assert {f"{name}.{fmt}" for name in FUNCTIONS for fmt in ("png", "svg", "pdf")} <= set(first)
    assert {"report.md", "report.html", "runs.csv", "groups.csv", "comparisons.csv"} <= set(first)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    # nor does a matplotlib upgrade that draws the same figure change its file (style.UNDATED)
    version = matplotlib.__version__.encode()
    assert [name for name, data in first.items() if name.endswith((".png", ".svg", ".pdf")) and version in data] == []
