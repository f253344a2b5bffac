"""regbench speed as ratios measured in one run of this script (the targets of issues #12 and #20).

    .venv/bin/python scripts/bench.py [--quick] [--repeat N] [--out PATH.csv]

Every time is the wall time of a whole process (start-up, data, training, evaluation, files),
run one after another, each with its own default CPU threads (the plain script torch's, regbench its
threads rule, engine/setup.py), as a user would run them:
- plain: a PyTorch script this file writes itself (TensorDataset + DataLoader, one model after
  another, evaluation of the train subset and validation each epoch, no files), same grid;
- default: `regbench run -m <grid>` as the README says it, nothing else named: the default
  launcher (stacks) and the sweep's own report;
- basic: `regbench run -m hydra/launcher=basic ... report=false` (one cell after another);
- stacked: `regbench run -m hydra/launcher=vectorized ... report=false` (the cells as stacks);
- report: `regbench report <a stacked sweep's folder>` alone (32 and 256 runs), next to the bare
  import of what a report needs (`python -c "import pandas, scipy.stats, matplotlib.pyplot"`);
- resnet / vit: a stack of 8 cells of a residual network (ResNet-8 with drop path at 4 rates x 2 seeds) and of
  a small vision transformer (attention dropout at 4 rates x 2 seeds), stacked against basic; with CUDA
  present, the same rows (and the MLP grid's) again on the GPU (trainer.device=cuda);
- bare: the stacked forward + backward + optimizer step of the same cells for the same steps,
  in this process (engine.stack.Stacked on one fixed batch: the loop's arithmetic, nothing else),
  next to the time the stacked sweep spent in its epochs (the runs' `seconds` columns summed);
  with `python -c "import torch"` it gives the ceiling of any stacked speed-up on this machine.

Grids (mnist1d, batch 100, `epochs` each): an MLP [100, 100] with dropout=standard at 8 rates x
4 seeds (32 cells), x 4 weight decays (128), x 8 decays (256); a CNN with dropout=spatial at 4
rates x 4 seeds (16 cells). --quick: every measurement and ratio on small grids (QUICK below), a
smoke run of this script whose times mean nothing.
Prints every time and ratio; writes them as CSV (one row per measurement, device named) only to
--out PATH, so a run changes no file of the checkout unless asked to.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPORT_IMPORTS = "import pandas, scipy.stats, matplotlib.pyplot"  # what any report of runs needs
MLP = ["model=mlp", "model.hidden=[100,100]", "dropout=standard"]
CNN = ["model=cnn", "dropout=spatial"]
ARCHITECTURES = {  # 8 cells each: a stack of a residual network and of a transformer, each with its own regularizer
    "resnet": ["model=resnet", "model.depth=8", "reg.drop_path=0,0.1,0.2,0.3", "seed=0,1"],
    "vit": ["model=vit", "model.depth=2", "model.dim=32", "model.patch=4", "dropout=standard", "dropout.p=0",
            "dropout.p_attn=0,0.1,0.2,0.3", "seed=0,1"],
}
ARCHITECTURE_CELLS = 8


@dataclass(frozen=True)
class Scale:
    """The grids: the small MLP grid is rates x seeds; x mid_decays and x large_decays (weight decays) it
    gives the mid and large grids; the CNN grid is cnn_rates x cnn_seeds."""

    rates: str
    seeds: str
    mid_decays: str
    large_decays: str
    cnn_rates: str
    cnn_seeds: str
    epochs: int
    cnn_epochs: int
    data: tuple[str, ...] = ("dataset=mnist1d",)

    def cells(self, *values: str) -> int:
        return math.prod(len(v.split(",")) for v in values)


FULL = Scale(rates="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7", seeds="0,1,2,3", mid_decays="0,1e-4,1e-3,1e-2",
             large_decays="0,1e-5,1e-4,3e-4,1e-3,3e-3,1e-2,3e-2", cnn_rates="0,0.1,0.2,0.3", cnn_seeds="0,1,2,3",
             epochs=10, cnn_epochs=5)
# every measurement and ratio of FULL, each process doing as little as can still exercise it
QUICK = Scale(rates="0,0.5", seeds="0,1", mid_decays="0,1e-3", large_decays="0,1e-4,1e-3,1e-2", cnn_rates="0,0.3",
              cnn_seeds="0", epochs=1, cnn_epochs=1, data=("dataset=mnist1d", "dataset.train_size=500"))


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def wall(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:6])} ... failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def regbench_exe() -> str:
    return str(Path(sys.executable).with_name("regbench"))


def common(scale: Scale, device: str = "cpu") -> list[str]:
    """What every sweep names; all but the default command's add report=false (training alone)."""
    return [*scale.data, "trainer.batch_size=100", "trainer.progress=false", f"trainer.device={device}"]


def devices() -> list[str]:
    """Where the architecture rows run: the CPU, and the GPU too when CUDA is present."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def regbench_sweep(grid: list[str], epochs: int, launcher: str | None, tmp: Path, name: str) -> float:
    """`regbench run -m` of the grid into tmp/name; launcher None: the default (nothing named)."""
    args = [regbench_exe(), "run", "-m", *grid, f"trainer.epochs={epochs}", f"results_dir={tmp / name}"]
    return wall(args + ([f"hydra/launcher={launcher}"] if launcher else []), tmp)


def regbench_report(runs: Path, out: Path) -> float:
    """`regbench report` of every run below `runs`, in a fresh process (a user's second command)."""
    return wall([regbench_exe(), "report", str(runs), "--out", str(out)], runs.parent)


def epoch_seconds(results_dir: Path) -> float:
    """Sum of every run's `seconds` column: a stack's cells share each epoch's wall time, so this is
    the time the sweep spent in its epochs (training steps plus the per-epoch evaluation)."""
    total = 0.0
    for path in results_dir.rglob("metrics.csv"):
        with open(path, newline="") as f:
            total += sum(float(r["seconds"]) for r in csv.DictReader(f))
    return total


PLAIN = '''
import sys, time, torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
d = torch.load(sys.argv[1])
epochs, rates, seeds, decays = int(sys.argv[2]), eval(sys.argv[3]), eval(sys.argv[4]), eval(sys.argv[5])
xtr, ytr, xva, yva = d["x_train"], d["y_train"], d["x_val"], d["y_val"]
def build(p):
    return nn.Sequential(nn.Flatten(), nn.Linear(xtr[0].numel(), 100), nn.ReLU(), nn.Dropout(p),
                         nn.Linear(100, 100), nn.ReLU(), nn.Dropout(p), nn.Linear(100, 10))
train = DataLoader(TensorDataset(xtr, ytr), batch_size=100, shuffle=True)
evals = [DataLoader(TensorDataset(xtr[:1000], ytr[:1000]), batch_size=1000),
         DataLoader(TensorDataset(xva, yva), batch_size=1000)]
for wd in decays:
    for p in rates:
        for s in seeds:
            torch.manual_seed(s)
            net = build(p)
            opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=wd)
            for epoch in range(epochs):
                net.train()
                for xb, yb in train:
                    loss = F.cross_entropy(net(xb), yb)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                net.eval()
                with torch.no_grad():
                    for loader in evals:
                        for xb, yb in loader:
                            F.cross_entropy(net(xb), yb).item(), (net(xb).argmax(1) == yb).float().mean().item()
'''


def plain(scale: Scale, decays: str, tmp: Path) -> float:
    """The MLP grid (x decays) as a plain PyTorch script; its data: the same normalised mnist1d splits regbench
    trains on (saved before the script starts, so the script pays no dataset generation)."""
    from regbench.data import build_splits

    data_file = tmp / "mnist1d.pt"
    if not data_file.exists():
        cfg = compose(*scale.data)
        data = build_splits(cfg.dataset, "cpu")
        torch.save({k: (data.normalize(v) if k.startswith("x") else v) for k, v in
                    {"x_train": data.x_train, "y_train": data.y_train, "x_val": data.x_val,
                     "y_val": data.y_val}.items()}, data_file)
    script = tmp / "plain.py"
    script.write_text(textwrap.dedent(PLAIN))
    return wall([sys.executable, str(script), str(data_file), str(scale.epochs), f"[{scale.rates}]",
                 f"[{scale.seeds}]", f"[{decays}]"], tmp)


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from regbench.rules.config import register_configs

    register_configs()
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def bare(scale: Scale, cells: int) -> float:
    """Stacked forward + backward + step of `cells` MLP cells for the steps of the grid's epochs, in process."""
    from regbench.data import build_splits
    from regbench.engine.setup import set_threads, steps_per_epoch
    from regbench.engine.stack import Stacked
    from regbench.models import build_model
    from regbench.regularizers.streams import Streams

    rates = [float(r) for r in scale.rates.split(",")]
    cfgs = [compose(*scale.data, "trainer.batch_size=100", *MLP, f"dropout.p={rates[i % len(rates)]}", f"seed={i}")
            for i in range(cells)]
    data = build_splits(cfgs[0].dataset, "cpu")
    steps = steps_per_epoch(len(data.x_train), 100)
    models = [build_model(c, data.input_shape, data.num_classes) for c in cfgs]
    set_threads(cfgs[0], torch.device("cpu"), models[0], data.input_shape, cells)  # as the sweep's stack does
    stack = Stacked(models, cfgs, steps, torch.device("cpu"), [Streams.of(c.seed).noise for c in cfgs])
    x = data.normalize(data.x_train[:100]).expand(cells, -1, -1, -1).contiguous()  # (M, B, C, L)
    y = data.y_train[:100].expand(cells, -1)
    t0 = time.perf_counter()
    for _ in range(scale.epochs * steps):
        losses = stack.losses(stack.forward(x), y)
        stack.zero_grad()
        stack.objective(losses).backward()
        stack.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="every measurement and ratio on small grids (a smoke run of this script)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of every measurement; each time is the median")
    ap.add_argument("--out", type=Path, metavar="PATH",
                    help="write every time and ratio to this CSV file (nothing is written without it)")
    args = ap.parse_args()
    if args.repeat < 1:  # bad input: one line, exit code 2 (as argparse's own errors)
        print(f"bench: --repeat={args.repeat} is not valid; valid: a whole number >= 1", file=sys.stderr)
        sys.exit(2)
    scale = QUICK if args.quick else FULL
    epochs, cnn_epochs = scale.epochs, scale.cnn_epochs
    small = scale.cells(scale.rates, scale.seeds)
    mid, large = small * scale.cells(scale.mid_decays), small * scale.cells(scale.large_decays)
    cnn_cells = scale.cells(scale.cnn_rates, scale.cnn_seeds)
    rows: list[dict] = []

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # regbench keeps generated MNIST-1D in its cache (a user's second sweep finds it there); this run's
        # cache is its own, filled below where the plain script's data file is written, before any timing
        os.environ["REGBENCH_CACHE_DIR"] = str(tmp / "cache")
        default = [*common(scale), *MLP, f"dropout.p={scale.rates}", f"seed={scale.seeds}"]
        mlp = [*default, "report=false"]  # every sweep but the default command's: training alone
        cnn = [*common(scale), "report=false", *CNN, f"dropout.p={scale.cnn_rates}", f"seed={scale.cnn_seeds}"]
        grids = {small: mlp, mid: [*mlp, f"optim.weight_decay={scale.mid_decays}"],
                 large: [*mlp, f"optim.weight_decay={scale.large_decays}"]}
        # key -> (what, cells, epochs, one timing of it in round r); rounds interleave, so slow drift of the
        # machine (this is a shared VM) touches every measurement alike; the epochs of the small stacked
        # sweep are read from that round's run folders
        plan = {"plain": ("plain mlp", small, epochs, lambda r: plain(scale, "0", tmp)),
                "default": ("default command mlp", small, epochs,
                            lambda r: regbench_sweep(default, epochs, None, tmp, f"default_{r}")),
                "basic": ("basic mlp", small, epochs,
                          lambda r: regbench_sweep(mlp, epochs, "basic", tmp, f"basic_{r}"))}
        for n, grid in grids.items():
            plan[f"stacked{n}"] = ("stacked mlp", n, epochs, lambda r, g=grid, n=n:
                                   regbench_sweep(g, epochs, "vectorized", tmp, f"stacked{n}_{r}"))
        plan["report"] = ("regbench report", small, epochs,
                          lambda r: regbench_report(tmp / f"stacked{small}_{r}", tmp / f"report{small}_{r}"))
        plan["report_large"] = ("regbench report", large, epochs,
                                lambda r: regbench_report(tmp / f"stacked{large}_{r}", tmp / f"report{large}_{r}"))
        plan["imports"] = (f"python -c '{REPORT_IMPORTS}'", 0, 0,
                           lambda r: wall([sys.executable, "-c", REPORT_IMPORTS], tmp))
        plan["plain_mid"] = ("plain mlp", mid, epochs, lambda r: plain(scale, scale.mid_decays, tmp))
        plan["bare"] = ("bare stacked mlp", small, epochs, lambda r: bare(scale, small))
        plan["bare_mid"] = ("bare stacked mlp", mid, epochs, lambda r: bare(scale, mid))
        plan["torch"] = ("python -c 'import torch'", 0, 0, lambda r: wall([sys.executable, "-c", "import torch"], tmp))
        plan["epochs"] = ("epochs in stacked mlp", small, epochs,
                          lambda r: epoch_seconds(tmp / f"stacked{small}_{r}"))
        plan["cnn_basic"] = ("basic cnn", cnn_cells, cnn_epochs,
                             lambda r: regbench_sweep(cnn, cnn_epochs, "basic", tmp, f"cb_{r}"))
        plan["cnn_stacked"] = ("stacked cnn", cnn_cells, cnn_epochs,
                               lambda r: regbench_sweep(cnn, cnn_epochs, "vectorized", tmp, f"cs_{r}"))
        for device in devices():
            arch_grids = {arch: [*common(scale, device), "report=false", *grid] for arch, grid in ARCHITECTURES.items()}
            if device == "cuda":  # the MLP grid on the GPU too
                arch_grids["mlp"] = [*common(scale, device), "report=false", *MLP, f"dropout.p={scale.rates}",
                                     f"seed={scale.seeds}"]
            for arch, grid in arch_grids.items():
                n = small if arch == "mlp" else ARCHITECTURE_CELLS
                for launcher in ("basic", "vectorized"):
                    plan[f"{arch}_{launcher}_{device}"] = (
                        f"{'stacked' if launcher == 'vectorized' else launcher} {arch} {device}", n, cnn_epochs,
                        lambda r, g=grid, la=launcher, k=f"{arch}_{launcher}_{device}":
                        regbench_sweep(g, cnn_epochs, la, tmp, f"{k}_{r}"))
        times: dict[str, list[float]] = {key: [] for key in plan}
        for r in range(args.repeat):
            for key, (what, cells, ep, measure) in plan.items():
                times[key].append(measure(r))
                print(f"round {r + 1}/{args.repeat} {what:>22} {cells:>4} cells {ep:>2} epochs: "
                      f"{times[key][-1]:7.2f} s", flush=True)
        t = {key: statistics.median(values) for key, values in times.items()}
        for key, (what, cells, ep, _) in plan.items():
            rows.append({"what": what, "cells": cells, "epochs": ep, "seconds": round(t[key], 3),
                         "rounds": " ".join(f"{v:.2f}" for v in times[key])})

    ratios = [
        (f"plain / default command (report included), {small} mlp cells (target >= 3)", t["plain"] / t["default"]),
        (f"regbench report of {small} runs / import baseline (target <= 2)", t["report"] / t["imports"]),
        # the sweep's own report: what the default command takes beyond the same sweep without it
        ("sweep's own report (default - stacked) / import baseline (target <= 2)",
         (t["default"] - t[f"stacked{small}"]) / t["imports"]),
        (f"plain / stacked, {small} mlp cells (target >= 4)", t["plain"] / t[f"stacked{small}"]),
        (f"plain / stacked, {mid} mlp cells (target >= 6)", t["plain_mid"] / t[f"stacked{mid}"]),
        (f"plain / basic, {small} mlp cells (target >= 1)", t["plain"] / t["basic"]),
        (f"basic / stacked, {cnn_cells} cnn cells (target >= 2)", t["cnn_basic"] / t["cnn_stacked"]),
        (f"epochs in the stacked sweep / bare stacked, {small} cells (target <= 2)", t["epochs"] / t["bare"]),
        (f"whole stacked sweep / bare stacked, {small} cells", t[f"stacked{small}"] / t["bare"]),
        # what no implementation on this machine can beat: a process that only imports torch and runs the
        # bare stacked steps
        (f"ceiling: plain / (import torch + bare stacked), {small} mlp cells", t["plain"] / (t["torch"] + t["bare"])),
        (f"ceiling: plain / (import torch + bare stacked), {mid} mlp cells",
         t["plain_mid"] / (t["torch"] + t["bare_mid"])),
        # same model, large / small times the cells: that many times the arithmetic
        (f"time({large}) / time({small}) / {large // small}, mlp (target <= 1.2)",
         t[f"stacked{large}"] / t[f"stacked{small}"] / (large // small)),
        (f"regbench report of {large} runs / of {small} runs (target <= 3)", t["report_large"] / t["report"]),
    ]
    for key in [k for k in t if k.endswith(("_basic_cpu", "_basic_cuda"))]:
        arch, _, device = key.split("_")
        cells = small if arch == "mlp" else ARCHITECTURE_CELLS
        stacked = t[f"{arch}_vectorized_{device}"]
        ratios.append((f"basic / stacked, {cells} {arch} cells on {device}", t[key] / stacked))
        if device == "cuda" and arch != "mlp":  # the same sweep on both (the MLP rows on the CPU run other epochs)
            ratios.append((f"stacked on cpu / stacked on cuda, {cells} {arch} cells",
                           t[f"{arch}_vectorized_cpu"] / stacked))
    print(f"\n{device_name()}, torch {torch.__version__}" + (" (--quick: a smoke run, not a measurement)"
                                                             if args.quick else ""))
    for name, value in ratios:
        print(f"{name:>75}: {value:5.2f}")
        rows.append({"what": name, "cells": "", "epochs": "", "seconds": round(value, 3), "rounds": ""})
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, ["what", "cells", "epochs", "seconds", "rounds", "device", "torch"])
            w.writeheader()
            for r in rows:
                w.writerow({**r, "device": device_name(), "torch": torch.__version__})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
