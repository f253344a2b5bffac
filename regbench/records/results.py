"""The run folder: config.yaml, metrics.csv (a row per epoch), summary.json (docs/architecture.md).

Everything here is written so that a crash or a kill at any moment leaves readable
files: the CSV gets whole rows only (one write + flush + fsync per row), JSON/YAML are
written to a temporary file and renamed over the target (atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import logging
import math
import os
import platform
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # OmegaConf is imported where a config is written: a report reads this module's
    from omegaconf import DictConfig  # metric names and statuses and needs no OmegaConf

from regbench.core.errors import MachineFailure
from regbench.core.files import atomic_write_text, write_json, writing
from regbench.records import index

log = logging.getLogger("regbench")

METRIC_COLUMNS = [
    "epoch",  # 1-based
    "train_loss",  # eval mode, fixed training subset
    "train_acc",
    "val_loss",
    "val_acc",
    "gap_loss",  # val_loss - train_loss
    "gap_acc",  # train_acc - val_acc
    "lr",  # learning rate at the end of the epoch
    "seconds",  # wall time of the epoch (training + evaluation); in a stack, this cell's share (STACK_COLUMNS)
    "batch_loss",  # mean minibatch loss in train mode (dropout on), what the optimiser saw
    "zero_frac",  # fraction of weights with |w| < 1e-3 (sparsity from L1)
]

# Only in a cell of a stack of more than one (a lone run's `seconds` is its own wall time already).
STACK_COLUMNS = [
    "stack_seconds",  # wall time of the stack's epoch; `seconds` = this / the cells still training in it
]


def write_rows(path: Path, columns: list[str], rows: list[dict]) -> None:
    """A whole small CSV at once, atomically (e.g. mc_convergence.csv); same number format as metrics.csv."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(columns)
    out.writerows([_fmt(row.get(c, "")) for c in columns] for row in rows)
    atomic_write_text(path, buf.getvalue())


def check_writable(results_dir: str) -> Path:
    """Fail early, with the one line of a machine failure (exit 1), if run folders cannot be created
    under results_dir: it, or a folder above it, is a file, read-only, or not ours to write.

    Permission bits are not enough (root ignores them, /proc refuses anyway), so the check
    creates and removes a probe folder in the nearest existing parent.
    """
    path = Path(results_dir)  # as every other user of results_dir reads it (rules/config.check_results_dir)
    try:
        probe_folder(path)
    except OSError as exc:
        raise MachineFailure(f"results_dir={results_dir!r} cannot hold run folders: {exc.filename}: "
                             f"{exc.strerror or exc} (errno {exc.errno})") from None
    return path


def probe_folder(path: Path) -> None:
    """Raise OSError (filename = the folder tried) unless files can be created at `path`: the check
    creates and removes a probe folder in its nearest existing parent (root ignores permission bits)."""
    probe = path
    while not probe.exists() and probe != probe.parent:  # the nearest existing parent decides
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder", str(probe))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".regbench-probe-", dir=probe))
    except OSError as exc:
        exc.filename = str(probe)
        raise


# The config keys a sweep varies, comma-separated: set by the sweeper (regbench/sweeps/multirun.py) for its
# jobs, in the environment so that jobs in other processes (joblib, submitit) see it too.
SWEPT_KEYS_ENV = "REGBENCH_SWEPT_KEYS"
MAX_LABEL_CHARS = 120  # folder names stay readable (and far below the file system's 255)


def _short(key: str) -> str:
    """dropout.p_conv -> pconv, optim.weight_decay -> weightdecay, dropout.p_input -> pinput."""
    return key.rsplit(".", 1)[-1].replace("_", "")


def _value_text(value) -> str:
    from omegaconf import OmegaConf

    if isinstance(value, float):
        return f"{value:g}"
    if OmegaConf.is_list(value) or isinstance(value, (list, tuple)):
        return "_".join(_value_text(v) for v in value)
    return str(value)


def run_label(cfg: DictConfig) -> str:
    """Short human-readable part of the folder name, e.g. [name-]digits-mlp-standard-p0.5-s0; in a
    sweep also every other swept key and value, e.g. ...-spatial-p0-pconv0.3-s0 (cnn_spatialdrop)."""
    from omegaconf import DictConfig, OmegaConf

    label = f"{cfg.dataset.name}-{cfg.model.name}-{cfg.dropout.name}"
    if cfg.dropout.name != "none":
        label += f"-p{cfg.dropout.p:g}"
    shown = {"dataset", "model", "dropout", "seed", "dropout.p", "dataset.name", "model.name", "dropout.name"}
    for key in filter(None, os.environ.get(SWEPT_KEYS_ENV, "").split(",")):
        value = None if key in shown or key.startswith("hydra") else OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        # a swept config group (optim=sgd,adam) shows its choice; a swept value its short key and value
        is_group = isinstance(value, DictConfig)
        label += f"-{_value_text(value.name)}" if is_group else f"-{_short(key)}{_value_text(value)}"
    if cfg.get("name"):
        label = f"{cfg.name}-{label}"
    return f"{label[:MAX_LABEL_CHARS]}-s{cfg.seed}".replace("/", "_").replace(" ", "_")


def create_run_dir(cfg: DictConfig) -> Path:
    """Make a fresh, never-existing folder: timestamp + label + random suffix, created exclusively.

    os.mkdir fails if the folder exists, so two jobs started in the same second (or
    the same config twice) can never share or overwrite a folder.
    """
    parent = check_writable(cfg.results_dir)
    if cfg.get("sweep_name"):
        parent = parent / str(cfg.sweep_name)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        path = parent / f"{stamp}_{run_label(cfg)}_{secrets.token_hex(2)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a unique run folder under {parent}")


def save_config(run_dir: Path, cfg: DictConfig) -> None:
    """config.yaml: OmegaConf's own YAML of the resolved config. (It was once emitted through libyaml with
    OmegaConf's private string representer: 2.5 ms a run saved, not worth a private API.)"""
    from omegaconf import OmegaConf

    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


class MetricsWriter:
    """Appends one CSV row per epoch; each row is flushed and fsynced whole."""

    def __init__(self, path: Path, columns: Iterable[str]):
        self.path = path
        self.columns = list(columns)
        with writing(path):
            self._f = open(path, "a", newline="")
        self._good = self._f.tell()  # bytes known to hold whole rows
        if self._good == 0:
            self._write(self.columns)

    def _write(self, values: list) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        try:
            with writing(self.path):
                self._f.write(buf.getvalue())  # one write call per row: a kill never leaves half a row mid-file
                self._f.flush()
                os.fsync(self._f.fileno())
        except OSError:
            self._roll_back()
            raise
        self._good = self._f.tell()

    def _roll_back(self) -> None:
        """A failed write (disk full) may have put part of a row on disk: cut back to the last whole
        row (truncating needs no space), and remove a file that never got its header."""
        with contextlib.suppress(OSError):
            self._f.close()
        with contextlib.suppress(OSError):
            if self._good == 0:
                self.path.unlink(missing_ok=True)
            else:
                os.truncate(self.path, self._good)

    def append(self, row: dict) -> None:
        self._write([_fmt(row.get(c, "")) for c in self.columns])

    def close(self) -> None:
        if self._f.closed:
            return
        try:
            with writing(self.path):
                self._f.close()
        except OSError:
            self._roll_back()
            raise


def _fmt(v):
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan"
    return v


@lru_cache(maxsize=1)
def versions() -> dict:
    from importlib.metadata import version

    import hydra
    import numpy
    import omegaconf
    import torch

    from regbench.core.version import __version__

    return {
        "regbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        # the installed distribution's version: importing torchvision costs ~1 s of start-up, and
        # torch's version above already names the CUDA build (+cu...) the two share
        "torchvision": version("torchvision"),
        "hydra": hydra.__version__,
        "omegaconf": omegaconf.__version__,
        "numpy": numpy.__version__,
    }


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Commit of the regbench checkout that ran (None for an installed wheel); '+dirty' if modified."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def close_run(results_dir: str, run_dir: Path, summary: dict, steps: list) -> OSError | None:
    """The end of a run: each closing step (None = skip; one of them writes summary.json), then the
    index entry, each tried even when an earlier one failed. A failed write (disk full, read-only,
    permission) makes the run `failed`, and summary.json is written again to say so; the first
    such error is returned for the caller to raise."""
    first: OSError | None = None

    def attempt(step) -> bool:
        nonlocal first
        try:
            step()
            return True
        except OSError as exc:
            first = first or exc
            summary.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            return False

    for step in steps:
        if step is not None:
            attempt(step)
    written = first is None or attempt(lambda: write_json(run_dir / "summary.json", summary))
    attempt(lambda: index.mark_finished(results_dir, run_dir, summary, summary_written=written))
    return first


def truncate_metrics(path: Path, n_rows: int) -> None:
    """Keep the header and the first n_rows rows (rows past a checkpoint are recomputed on resume)."""
    lines = path.read_text().splitlines(keepends=True)
    atomic_write_text(path, "".join(lines[: 1 + n_rows]))


# ---------------------------------------------------------------- a run's numbers as one flat row
# The metric columns of the report's runs.csv (report/table.run_row) and the names MLflow logs.
SPLIT_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "gap_loss", "gap_acc")
RUN_METRICS = (
    *(f"final.{m}" for m in SPLIT_METRICS),
    *(f"best.{m}" for m in SPLIT_METRICS),
    "test.acc",
    "test.loss",
    "test_final.acc",
    "test_final.loss",
    "best_epoch",
    "epochs_completed",
    "seconds",
)
EXTRA_METRIC_PREFIXES = ("mc.", "calibration.")  # scalar MC-dropout / calibration fields, when present


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> {dotted.key: value}, the names of runs.csv's columns (a config's `dropout.p`, a
    summary's `test.acc`); an empty mapping stays a value."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def summary_metrics(summary: dict) -> dict[str, float]:
    """summary.json's finite numbers under those column names (final.val_acc, test.acc, mc.nll, ...);
    absent or non-finite ones are left out. report/table.run_row builds the same columns, falling back
    to metrics.csv where a summary lacks them."""
    return {key: float(value) for key, value in flatten(summary).items()
            if (key in RUN_METRICS or key.startswith(EXTRA_METRIC_PREFIXES)) and isinstance(value, (int, float))
            and not isinstance(value, bool) and math.isfinite(value)}
