"""scripts/bench.py --quick, the README's smoke run of the benchmark, runs every measurement and writes
nothing in the checkout (its CSV only to --out PATH)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def checkout_files() -> dict[str, tuple[int, int]]:
    """Every file of the checkout (hidden folders and bytecode caches aside): its size and modification time."""
    found = {}
    for here, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        for name in files:
            stat = (Path(here) / name).stat()
            found[str(Path(here, name).relative_to(ROOT))] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.mark.slow
def test_bench_quick_as_the_readme_runs_it_measures_everything_and_writes_nothing():
    before = checkout_files()
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--quick"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert checkout_files() == before  # results/bench/bench.csv is written only by --out
    lines = proc.stdout.splitlines()
    # 20 timings (plain x2, default, basic, stacked x3, report x2, imports, bare x2, torch, epochs, CNN x2, ResNet x2,
    # ViT x2; with CUDA the ResNet, ViT and MLP pairs again on the GPU), then every ratio, each computed from them
    cuda = torch.cuda.is_available()
    timings = [line for line in lines if line.startswith("round 1/1 ")]
    ratios = [line.rsplit(":", 1) for line in lines[lines.index("") + 2:]]
    assert len(timings) == 20 + 6 * cuda and all(float(line.split(":")[-1].removesuffix(" s")) > 0 for line in timings)
    assert len(ratios) == 15 + 5 * cuda and all(math.isfinite(float(value)) for _, value in ratios)
    assert any("basic / stacked, 8 resnet cells on cpu" in name for name, _ in ratios)
    assert not any(line.startswith("wrote") for line in lines)
