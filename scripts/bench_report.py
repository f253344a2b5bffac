"""Speed of `regbench report` as ratios measured in one run of this script (issue #20, part 2).

    .venv/bin/python scripts/bench_report.py [--repeat N] [--keep DIR]

Every time is the wall time of a fresh process, the kinds alternating within each round, median of
N rounds (a shared machine drifts; interleaving spreads that over all of them):
- import: `python -c "import pandas, scipy.stats, matplotlib.pyplot"`, the libraries a report needs;
- report 32 / 256: `regbench report <sweep> --out <tmp>` of a 32-run and a 256-run sweep;
- sweep rerun with / without its report: `regbench run -m <the 32-run grid>` again, every cell
  already completed (resume skips it), report=true against report=false: what the sweep's own
  report (regbench.callbacks.SweepReport) adds to a sweep.
The sweeps (mnist1d MLP, dropout=standard at 8 rates x 4 seeds, x 8 weight decays for 256, 10 epochs,
stacked) are trained once, untimed, into a temporary folder (or --keep DIR, reused when it holds them).
scripts/bench.py calls `measure()` with folders it trained itself.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

IMPORTS = "import pandas, scipy.stats, matplotlib.pyplot"  # the baseline: what any report must import
GRID = ["dataset=mnist1d", "model=mlp", "model.hidden=[100,100]", "dropout=standard",
        "dropout.p=0,0.1,0.2,0.3,0.4,0.5,0.6,0.7", "seed=0,1,2,3", "trainer.epochs=10", "trainer.batch_size=100",
        "trainer.progress=false", "hydra/launcher=vectorized"]
DECAYS = "optim.weight_decay=0,1e-5,1e-4,3e-4,1e-3,3e-3,1e-2,3e-2"  # x 8: the 256-run grid
REGBENCH = str(Path(sys.executable).with_name("regbench"))


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"bench_report: {' '.join(cmd[:5])} ... failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def sweep(results_dir: Path, *extra: str) -> list[str]:
    """The `regbench run -m` line of the 32-run grid (plus extra overrides) into results_dir."""
    return [REGBENCH, "run", "-m", *GRID, *extra, f"results_dir={results_dir}"]


def train(root: Path) -> tuple[Path, Path]:
    """The 32- and 256-run results folders under root, trained (untimed) unless already there."""
    folders = root / "runs32", root / "runs256"
    for folder, extra in zip(folders, ([], [DECAYS]), strict=True):
        if not any(folder.rglob("summary.json")):
            print(f"training {folder} (untimed) ...", flush=True)
            wall(sweep(folder, *extra, "report=false"))
    return folders


def measure(runs32: Path, runs256: Path, out: Path, repeat: int = 3,
            rerun32: list[str] | None = None) -> list[tuple[str, float]]:
    """(name, median seconds) per kind. rerun32: the `regbench run -m` line that trained runs32
    (without report=…), to time the sweep's own report; None leaves those two rows out."""
    plan: dict[str, Callable[[], float]] = {
        "import pandas+scipy.stats+matplotlib": lambda: wall([sys.executable, "-c", IMPORTS]),
        "regbench report, 32 runs": lambda: wall([REGBENCH, "report", str(runs32), "--out", str(out / "r32")]),
        "regbench report, 256 runs": lambda: wall([REGBENCH, "report", str(runs256), "--out", str(out / "r256")]),
    }
    if rerun32 is not None:
        plan["sweep rerun, 32 runs, report=false"] = lambda: wall([*rerun32, "report=false"])
        plan["sweep rerun, 32 runs, report=true"] = lambda: wall([*rerun32, "report=true"])
    times: dict[str, list[float]] = {name: [] for name in plan}
    for r in range(repeat):
        for name, run in plan.items():
            times[name].append(run())
            print(f"round {r + 1}/{repeat} {name:>38}: {times[name][-1]:6.2f} s", flush=True)
    return [(name, statistics.median(values)) for name, values in times.items()]


def ratios(rows: list[tuple[str, float]]) -> list[tuple[str, float]]:
    t = dict(rows)
    base, r32, r256 = (t[name] for name, _ in rows[:3])
    found = [("report 32 runs / import baseline (target <= 2)", r32 / base),
             ("report 256 runs / report 32 runs (target <= 3)", r256 / r32)]
    if len(rows) == 5:
        added = t["sweep rerun, 32 runs, report=true"] - t["sweep rerun, 32 runs, report=false"]
        found.append(("sweep report's added time / import baseline (target <= 2)", added / base))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="rounds of every measurement; each time is the median")
    ap.add_argument("--keep", type=Path, help="train the sweeps into this folder (reused when it holds them)")
    args = ap.parse_args()
    if args.repeat < 1:  # bad input: one line, exit code 2 (as argparse's own errors)
        print(f"bench_report: --repeat={args.repeat} is not valid; valid: a whole number >= 1", file=sys.stderr)
        sys.exit(2)
    with tempfile.TemporaryDirectory() as d:
        root = args.keep or Path(d)
        runs32, runs256 = train(root)
        rows = measure(runs32, runs256, Path(d), args.repeat, rerun32=sweep(runs32))
    print()
    for name, seconds in rows:
        print(f"{name:>58}: {seconds:6.2f} s")
    for name, value in ratios(rows):
        print(f"{name:>58}: {value:6.2f}")


if __name__ == "__main__":
    main()
