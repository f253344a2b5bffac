"""Loggers that mirror a run somewhere besides its CSV files: `logger=tensorboard`, `logger=mlflow`,
or several at once with a list, `logger=[csv,mlflow]`.

metrics.csv and summary.json are always written: they are the contract `regbench report` reads,
so `csv` is implied in every selection. `logger` is a Hydra config group (conf/logger/*.yaml);
each option sets `logger.<name>.enabled=true`, so a list of options merges into one node that
also holds each logger's settings (`logger.mlflow.tracking_uri=...`).

The interface both training loops call, once per run (per cell of a stacked bucket):

    run_loggers = start(cfg, run_dir, summary)  # after the run folder and config.yaml exist
    run_loggers.log_epoch(row)                   # after each metrics.csv row
    run_loggers.close(summary)                   # after summary.json is written

and `backfill(cfg, summary)` when resume skips a finished run that a selected logger does not hold yet.
A logger that fails mid-run (a tracking server going away) is dropped with one warning; the run
goes on, since its CSV files hold everything. What can be checked up front (a missing extra, an
unreachable tracking URI) is refused by `check_loggers` before anything is written.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from regbench.core.errors import ConfigError

log = logging.getLogger("regbench")


@dataclass(frozen=True)
class LoggerSpec:
    package: str  # what must be importable
    extra: str  # the pip extra that installs it
    impl: str  # "module:Class" started with (cfg, run_dir, summary); imported only when used
    check: str | None = None  # "module:function" validating its settings (cfg) -> raises ConfigError


# The optional loggers; csv is always on and needs nothing.
OPTIONAL = {
    "tensorboard": LoggerSpec("tensorboard", "tensorboard", "regbench.records.loggers:TensorBoardLogger"),
    "mlflow": LoggerSpec("mlflow", "mlflow", "regbench.records.mlflow_logger:MlflowLogger",
                         "regbench.records.mlflow_logger:check"),
}
LOGGERS = ("csv", *OPTIONAL)  # the options of the `logger` config group (conf/logger/<name>.yaml)


def _load(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class RunLogger:
    """One run mirrored to one place. Subclasses take (cfg, run_dir, summary) to start."""

    @classmethod
    def has_run(cls, cfg: DictConfig, run_dir: Path, summary: dict[str, Any]) -> bool:
        """Does this logger already hold this (finished) run? If not, `backfill` logs it from its files."""
        raise NotImplementedError

    def log_epoch(self, row: dict[str, Any]) -> None:  # one metrics.csv row; row["epoch"] is 1-based
        raise NotImplementedError

    def close(self, summary: dict[str, Any]) -> None:  # the final summary (summary.json is on disk)
        raise NotImplementedError


def enabled(cfg: DictConfig) -> list[str]:
    """The optional loggers this config selects, in OPTIONAL's order."""
    return [name for name in OPTIONAL if cfg.logger[name].enabled]


def check_loggers(cfg: DictConfig) -> None:
    """Refuse a logger that cannot take effect: its package is missing, or its store is unreachable."""
    names = enabled(cfg)
    for name in names:
        spec = OPTIONAL[name]
        if importlib.util.find_spec(spec.package) is None:
            raise ConfigError(f'logger={name} needs the optional extra: pip install -e ".[{spec.extra}]" '
                              f"(or pip install regbench[{spec.extra}]); valid without it: logger=csv")
        if spec.check is not None:
            _load(spec.check)(cfg)
    ml = cfg.logger.mlflow
    if "mlflow" not in names and (ml.tracking_uri is not None or ml.experiment is not None):
        key = "tracking_uri" if ml.tracking_uri is not None else "experiment"
        raise ConfigError(f"logger.mlflow.{key} is set but MLflow is not a selected logger; "
                          "valid: add logger=[csv,mlflow] (or logger=mlflow)")


class RunLoggers:
    """The selected loggers of one run, called as one; a logger that raises is dropped with a warning."""

    def __init__(self, loggers: dict[str, RunLogger]):
        self.loggers = loggers

    def _each(self, method: str, arg: dict) -> None:
        for name, logger in list(self.loggers.items()):
            try:
                getattr(logger, method)(arg)
            except Exception as exc:  # noqa: BLE001 - metrics.csv holds everything; the run goes on
                log.warning("logger=%s failed and is switched off for this run (%s: %s)",
                            name, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                del self.loggers[name]

    def log_epoch(self, row: dict[str, Any]) -> None:
        self._each("log_epoch", row)

    def close(self, summary: dict[str, Any]) -> None:
        self._each("close", summary)
        self.loggers = {}


def start(cfg: DictConfig, run_dir: Path, summary: dict[str, Any]) -> RunLoggers:
    """Start every selected logger for a run whose folder exists; a logger may note itself in `summary`."""
    started: dict[str, RunLogger] = {}
    for name in enabled(cfg):
        try:
            started[name] = _load(OPTIONAL[name].impl)(cfg, run_dir, summary)
        except Exception as exc:  # noqa: BLE001 - as in RunLoggers: the run itself is not at stake
            log.warning("logger=%s could not start, the run goes on without it (%s: %s)", name,
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    return RunLoggers(started)


def backfill(cfg: DictConfig, summary: dict[str, Any]) -> None:
    """Resume skipped this finished (completed or diverged) run: log it from its files to every selected
    logger that lacks it, so adding logger=mlflow to a finished sweep mirrors the runs it already has
    instead of nothing."""
    import csv
    import math

    from regbench.core.files import write_json

    run_dir = Path(summary["run_dir"])
    missing = [name for name in enabled(cfg) if not _load(OPTIONAL[name].impl).has_run(cfg, run_dir, summary)]
    if not missing:
        return
    record = {k: v for k, v in summary.items() if k not in ("run_dir", "skipped")}  # summary.json as written
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [{k: int(v) if k == "epoch" else float(v) if v else math.nan for k, v in row.items()}
                for row in csv.DictReader(f)]
    before = dict(record)
    run_loggers = start(_only(cfg, missing), run_dir, record)
    for row in rows:
        run_loggers.log_epoch(row)
    run_loggers.close(record)
    if record != before:  # now with the MLflow run id, so a rerun does not log it twice
        write_json(run_dir / "summary.json", record)
        summary.update(record)
    log.info("logged the earlier run %s to logger=%s", run_dir, ",".join(missing))


def _only(cfg: DictConfig, names: list[str]) -> DictConfig:
    """A copy of cfg with only `names` among the optional loggers enabled."""
    cfg = copy.deepcopy(cfg)
    for name in OPTIONAL:
        cfg.logger[name].enabled = name in names
    return cfg


class TensorBoardLogger(RunLogger):
    """Scalars per epoch under <run>/tensorboard/, and the run's hyperparameters with its final
    metrics at the end (the HParams tab compares runs of a sweep: `tensorboard --logdir runs/`)."""

    def __init__(self, cfg: DictConfig, run_dir: Path, summary: dict):
        from torch.utils.tensorboard import SummaryWriter

        from regbench.rules.config import hashable_dict

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        self.hparams = flat_hparams(hashable_dict(cfg))

    @classmethod
    def has_run(cls, cfg: DictConfig, run_dir: Path, summary: dict) -> bool:
        return (Path(run_dir) / "tensorboard").is_dir()

    def log_epoch(self, row: dict) -> None:
        epoch = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                split, _, metric = key.partition("_")
                tag = f"{metric}/{split}" if split in ("train", "val") else key  # train/val on one chart
                self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def close(self, summary: dict) -> None:
        final = {f"hparam/final_{k}": v for k, v in (summary.get("final") or {}).items()}
        if summary.get("test"):
            final["hparam/test_acc"] = summary["test"]["acc"]
        if final:
            self.writer.add_hparams(self.hparams, final, run_name=".")
        self.writer.close()


def flat_hparams(cfg_dict: dict, prefix: str = "") -> dict:
    """Nested config -> {dotted.key: scalar}; lists become strings (TensorBoard takes scalars only)."""
    out = {}
    for key, value in cfg_dict.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_hparams(value, f"{name}."))
        elif value is None or isinstance(value, (list, tuple)):
            out[name] = str(value)
        else:
            out[name] = value
    return out
