"""regbench speed, as ratios measured in one process (docs/architecture.md, "Performance").

    .venv/bin/python scripts/bench.py [--quick] [--out results/bench] [--threads 1]

1. single run: regbench's epoch time vs a plain PyTorch reference of the same model
   (torch Dataset + DataLoader, per-sample torchvision v2 RandomHorizontalFlip + RandomCrop
   in __getitem__), MLP and CNN on MNIST-shaped synthetic data with flip+crop augmentation.
   An epoch is what regbench times: one pass of training plus the evaluation of the train
   subset and the validation split (the reference does the same evaluation, plainly batched).
2. sweep: a dropout-rate x seed grid on mnist1d (MLP), whole-sweep wall time through the CLI,
   hydra/launcher=vectorized vs Hydra's basic launcher (sequential), same epochs.
3. scaling: vectorised time per cell-epoch for 1, 4, 16, 64, 256 cells (mnist1d's default MLP
   [256, 256], and a small [32] one whose single run is bound by per-step overhead).

Writes results/bench/{single_run,sweep,cells}.csv and bench.png (device and torch version
in each CSV row and in the plot title).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from regbench.config import register_configs

    register_configs()
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


# ---------------------------------------------------------------------------- 1. single run


def regbench_epoch(model: str, epochs: int, samples: int, ops: str, tmp: Path) -> float:
    """Median epoch seconds (after the first) of `regbench run`'s loop."""
    from regbench.train import run

    cfg = compose("dataset=synthetic", "dataset.shape=[1,28,28]", f"dataset.num_samples={samples}", f"model={model}",
                  f"augment.ops={ops}", f"trainer.epochs={epochs}", "trainer.progress=false", "trainer.device=cpu",
                  "report=false", f"results_dir={tmp / 'single'}")
    summary = run(cfg)
    with open(Path(summary["run_dir"]) / "metrics.csv") as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    return statistics.median(seconds[1:] or seconds)


def reference_epoch(model: str, epochs: int, samples: int, augment: bool) -> float:
    """The same model trained the plain way: Dataset + DataLoader with per-sample torchvision transforms."""
    from torchvision.transforms import v2

    from regbench.data import build_splits
    from regbench.models import build_model

    cfg = compose("dataset=synthetic", "dataset.shape=[1,28,28]", f"dataset.num_samples={samples}", f"model={model}")
    data = build_splits(cfg.dataset, "cpu")  # the same uint8 images and split as regbench's run
    mean, std = data.mean.flatten().tolist(), data.std.flatten().tolist()
    to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    train_tf = v2.Compose(([v2.RandomHorizontalFlip(), v2.RandomCrop(28, padding=2)] if augment else []) + to_float)
    eval_tf = v2.Compose(to_float)

    class Images(torch.utils.data.Dataset):
        def __init__(self, x, y, transform):
            self.x, self.y, self.transform = x, y, transform

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.transform(self.x[i]), self.y[i]

    n_sub = min(1000, len(data.x_train))
    loaders = {
        "train": torch.utils.data.DataLoader(Images(data.x_train, data.y_train, train_tf), batch_size=64, shuffle=True),
        "sub": torch.utils.data.DataLoader(Images(data.x_train[:n_sub], data.y_train[:n_sub], eval_tf), batch_size=256),
        "val": torch.utils.data.DataLoader(Images(data.x_val, data.y_val, eval_tf), batch_size=256),
    }
    torch.manual_seed(0)
    net = build_model(cfg, data.input_shape, data.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        net.train()
        for xb, yb in loaders["train"]:
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            for name in ("sub", "val"):
                for xb, yb in loaders[name]:
                    F.cross_entropy(net(xb), yb, reduction="sum").item()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:] or times)


# ---------------------------------------------------------------------------- 2. sweep


def sweep_seconds(rates: list[float], seeds: int, epochs: int, vectorized: bool, tmp: Path) -> float:
    """Whole-sweep wall time of `regbench run -m` in this process (dataset already cached)."""
    from regbench.cli import main

    args = ["run", "-m", "dataset=mnist1d", "dropout=standard", f"dropout.p={','.join(map(str, rates))}",
            f"seed={','.join(map(str, range(seeds)))}", f"trainer.epochs={epochs}", "trainer.progress=false",
            "trainer.device=cpu", "report=false", f"results_dir={tmp / ('vec' if vectorized else 'seq')}"]
    if vectorized:
        args.append("hydra/launcher=vectorized")
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(args)
    if code != 0:
        raise RuntimeError(f"sweep failed ({code}): {out.getvalue()[-2000:]}")
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------- 3. scaling


def bucket_seconds(cells: int, epochs: int, hidden: str, tmp: Path) -> tuple[float, float]:
    """Wall time of one vectorised bucket of `cells` mnist1d MLPs (dropout rate x seed), all epochs, and the
    part of it spent in the epochs (training + evaluation), without per-cell set-up and run-folder writes."""
    from regbench.vectorized.loop import Cell, train_bucket

    rates = [0.05 * (i % 10) for i in range(cells)]
    cfgs = [compose("dataset=mnist1d", "dropout=standard", f"dropout.p={p}", f"seed={i}", f"trainer.epochs={epochs}",
                    f"model.hidden={hidden}", "trainer.progress=false", "trainer.device=cpu",
                    f"results_dir={tmp / f'cells{cells}'}")
            for i, p in enumerate(rates)]
    cells_ = [Cell(cfg=c, command="", overrides=[]) for c in cfgs]
    t0 = time.perf_counter()
    train_bucket(cells_)
    total = time.perf_counter() - t0
    with open(Path(cells_[0].summary["run_dir"]) / "metrics.csv") as f:  # `seconds`: epoch wall time / cells
        train_only = sum(float(r["seconds"]) for r in csv.DictReader(f)) * cells
    return total, train_only


# ---------------------------------------------------------------------------- main


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer samples, epochs and cells (< 1 minute)")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench"))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for every measurement (both sides)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: single,sweep,cells")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)  # run logs would drown the numbers
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    q = args.quick
    env = {"device": device_name(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    print(f"device: {env['device']}, torch {env['torch']}", flush=True)

    from regbench.data import build_splits

    tables: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        # 1. single run vs plain PyTorch
        if "single" not in skip:
            samples, epochs = (1200, 2) if q else (6000, 4)
            rows = []
            for model in ("mlp", "cnn"):
                ours = regbench_epoch(model, epochs, samples, "[flip,crop]", tmp)
                ref = reference_epoch(model, epochs, samples, augment=True)
                rows.append({"model": model, "augment": "flip+crop", "samples": samples, "regbench_s": ours,
                             "reference_s": ref, "speedup": ref / ours, **env})
                print(f"single run {model}: regbench {ours:.3f} s/epoch, plain PyTorch {ref:.3f} s/epoch "
                      f"-> {ref / ours:.2f}x", flush=True)
            write_csv(out / "single_run.csv", rows)
            tables["single"] = rows
        # 2. sweep: vectorised vs sequential
        if "sweep" not in skip:
            rates = [0.0, 0.3] if q else [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
            seeds, epochs = (2, 1) if q else (4, 5)
            build_splits(compose("dataset=mnist1d").dataset, "cpu")  # generate mnist1d once, outside the timings
            for vectorized in (True, False):  # warm-up: Hydra's first sweep in a process pays its start-up
                sweep_seconds([0.0], 1, 1, vectorized, tmp / "warmup")
            vec = sweep_seconds(rates, seeds, epochs, True, tmp)
            seq = sweep_seconds(rates, seeds, epochs, False, tmp)
            cells = len(rates) * seeds
            rows = [{"cells": cells, "epochs": epochs, "sequential_s": seq, "vectorized_s": vec, "speedup": seq / vec,
                     **env}]
            print(f"sweep of {cells} cells x {epochs} epochs (mnist1d MLP): sequential {seq:.1f} s, "
                  f"vectorized {vec:.1f} s -> {seq / vec:.1f}x", flush=True)
            write_csv(out / "sweep.csv", rows)
            tables["sweep"] = rows
        # 3. time per cell-epoch vs cells
        if "cells" not in skip:
            counts = [1, 4, 16] if q else [1, 4, 16, 64, 256]
            epochs = 1 if q else 2
            rows = []
            for hidden in ("[256,256]", "[32]"):  # the dataset's default MLP, and a small one (overhead-bound)
                series = []
                for m in counts:
                    s, train = bucket_seconds(m, epochs, hidden, tmp)
                    series.append({"hidden": hidden, "cells": m, "epochs": epochs, "seconds": s,
                                   "per_cell_epoch_s": s / (m * epochs), "epochs_only_s": train,
                                   "per_cell_epoch_epochs_only_s": train / (m * epochs), **env})
                    print(f"MLP {hidden}: bucket of {m:>3} cells: {s:.2f} s, {s / (m * epochs) * 1000:.1f} ms "
                          f"per cell-epoch ({train / (m * epochs) * 1000:.1f} ms in the epochs themselves)", flush=True)
                for r in series:
                    r["speedup_vs_1"] = series[0]["per_cell_epoch_s"] / r["per_cell_epoch_s"]
                rows += series
            write_csv(out / "cells.csv", rows)
            tables["cells"] = rows
    plot(tables, env, out / "bench.png")
    print(f"wrote {out}", flush=True)
    return 0


def plot(tables: dict, env: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    if "single" in tables:
        rows = tables["single"]
        x = range(len(rows))
        axes[0].bar([i - 0.2 for i in x], [r["reference_s"] for r in rows], 0.4, label="plain PyTorch (DataLoader)")
        axes[0].bar([i + 0.2 for i in x], [r["regbench_s"] for r in rows], 0.4, label="regbench")
        axes[0].set_xticks(list(x), [f"{r['model']}\n{r['speedup']:.1f}x" for r in rows])
        axes[0].set_ylabel("seconds per epoch")
        axes[0].set_title("single run, flip+crop augmentation")
        axes[0].legend()
    if "sweep" in tables:
        r = tables["sweep"][0]
        axes[1].bar(["sequential", "vectorized"], [r["sequential_s"], r["vectorized_s"]], color=["C0", "C1"])
        axes[1].set_ylabel("sweep wall time (s)")
        axes[1].set_title(f"{r['cells']}-cell mnist1d sweep, {r['epochs']} epochs: {r['speedup']:.1f}x")
    if "cells" in tables:
        for hidden in dict.fromkeys(r["hidden"] for r in tables["cells"]):
            rows = [r for r in tables["cells"] if r["hidden"] == hidden]
            line, = axes[2].loglog([r["cells"] for r in rows], [r["per_cell_epoch_s"] * 1000 for r in rows], "o-",
                                   label=f"hidden={hidden}: whole bucket")
            axes[2].loglog([r["cells"] for r in rows], [r["per_cell_epoch_epochs_only_s"] * 1000 for r in rows], "o--",
                           color=line.get_color(), label=f"hidden={hidden}: epochs only")
        axes[2].legend(fontsize=7)
        axes[2].set_xlabel("cells in the bucket")
        axes[2].set_ylabel("ms per cell-epoch")
        axes[2].set_title("vectorized scaling (mnist1d MLP)")
    fig.suptitle(f"regbench bench: {env['device']}, torch {env['torch']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
