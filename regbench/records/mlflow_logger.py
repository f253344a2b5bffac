"""`logger=mlflow`: each run (each cell of a sweep) becomes one MLflow run.

What goes in: params = the flattened resolved config (dotted keys, lists as text); per-epoch
metrics with step=epoch (the metrics.csv columns); summary metrics under the runs.csv names
(`final.val_acc`, `best.val_loss`, `test.acc`, `mc.*`, ...); the run folder's files as artifacts;
tags linking back to the run folder (`regbench.run_dir`, `regbench.config_hash`, the rerun command).

Where: `logger.mlflow.tracking_uri`, by default a SQLite store `sqlite:///<results_dir>/mlflow.db`
with artifacts in `<results_dir>/.mlartifacts/` (MLflow 3 refuses new file stores; SQLite needs
sqlalchemy + alembic, which the `mlflow` extra installs beside mlflow-skinny). The experiment is
`logger.mlflow.experiment`, by default the sweep name, so a sweep is one experiment.

mlflow is imported only when a run logs to it: `import regbench` and csv-only runs never pay for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import re
import time
import urllib.error
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from regbench.core.errors import ConfigError
from regbench.records import results
from regbench.records.loggers import RunLogger, flat_hparams

ARTIFACTS_DIR = ".mlartifacts"  # beside a local store's database file
DEFAULT_EXPERIMENT = "regbench"  # single runs (no sweep_name) without logger.mlflow.experiment
PROBE_TIMEOUT_S = 5.0  # how long validation waits for a tracking server to answer
MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for params in one log_batch call
SKIPPED_ARTIFACTS = ("checkpoint.pt",)  # resume state, not a result; hidden files (.running) are skipped too
# regbench status -> MLflow run status
RUN_STATUS = {"completed": "FINISHED", "interrupted": "KILLED", "running": "RUNNING"}  # anything else: FAILED


def tracking_uri(cfg: DictConfig) -> str:
    if cfg.logger.mlflow.tracking_uri is not None:
        return str(cfg.logger.mlflow.tracking_uri)
    return f"sqlite:///{Path(cfg.results_dir).resolve() / 'mlflow.db'}"


def experiment_name(cfg: DictConfig) -> str:
    return str(cfg.logger.mlflow.experiment or cfg.sweep_name or DEFAULT_EXPERIMENT)


def _local_path(uri: str) -> Path | None:
    """The file a sqlite:/// or file: URI (or a plain path) points to; None for servers and databases."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
    if parsed.scheme == "file":
        return Path(parsed.path)
    return Path(uri) if parsed.scheme == "" else None


def check(cfg: DictConfig) -> None:
    """Refuse a tracking URI that cannot be written to or reached (ConfigError, one line)."""
    ml = cfg.logger.mlflow
    if ml.experiment is not None and not str(ml.experiment).strip():
        raise ConfigError(f"logger.mlflow.experiment={ml.experiment!r} is not valid; valid: a non-empty name")
    _probe(tracking_uri(cfg))


@cache  # a sweep validates every cell; probe each store once per process
def _probe(uri: str) -> None:
    scheme = urlparse(uri).scheme
    valid = "valid: sqlite:///PATH.db, http(s)://HOST:PORT of a running MLflow server, or unset (sqlite in results_dir)"
    if scheme in ("", "file") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        raise ConfigError(f"logger.mlflow.tracking_uri={uri!r} is an MLflow file store, which MLflow 3 refuses; "
                          f"{valid}")
    path = _local_path(uri)
    if scheme == "sqlite" and path is None:
        raise ConfigError(f"logger.mlflow.tracking_uri={uri!r} is not a SQLite file URI; {valid}")
    if scheme == "sqlite":
        for module in ("sqlalchemy", "alembic"):
            if importlib.util.find_spec(module) is not None:
                continue
            raise ConfigError(f'logger.mlflow.tracking_uri={uri!r} needs {module}: pip install -e ".[mlflow]"; '
                              "valid without it: an http(s) tracking server")
    if path is not None:
        _check_writable(uri, path)
    elif scheme in ("http", "https"):
        _check_reachable(uri)
    else:  # databricks, postgresql, ...: ask MLflow itself
        from mlflow import MlflowClient

        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - any failure here means the store is unusable
            raise ConfigError(f"logger.mlflow.tracking_uri={uri!r} is unreachable "
                              f"({type(exc).__name__}: {_first_line(exc)}); {valid}") from None


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)[:200]


def _check_writable(uri: str, path: Path) -> None:
    """The store's folder must be writable (tried, not read off permission bits), the file openable."""
    from regbench.records.results import probe_folder

    if path.is_dir() and urlparse(uri).scheme == "sqlite":
        raise ConfigError(f"logger.mlflow.tracking_uri={uri!r} names a folder; valid: a path to a .db file")
    try:
        probe_folder(path.absolute().parent if urlparse(uri).scheme == "sqlite" else path.absolute())
        if path.is_file():
            with open(path, "ab"):  # appends nothing: only asks whether it may be written
                pass
    except OSError as exc:
        raise ConfigError(f"logger.mlflow.tracking_uri={uri!r} is not writable ({exc.strerror or exc}: "
                          f"{exc.filename}); valid: a store in a folder you can write") from None


def _check_reachable(uri: str) -> None:
    """Any HTTP answer (even 401/404) means a server is there; no answer means the URI is unreachable."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        pass
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"logger.mlflow.tracking_uri={uri!r} is unreachable ({reason}); valid: a running MLflow "
                          "server (mlflow server --port 5000), sqlite:///PATH.db, or unset") from None


@contextlib.contextmanager
def _store_lock(uri: str):
    """Parallel jobs (joblib) creating the SQLite tables or the experiment at once would race: serialise."""
    path = _local_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as f:  # hidden, like the artifacts
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _artifact_location(uri: str, name: str) -> str | None:
    """Local stores keep artifacts beside the database (MLflow's default is ./mlartifacts under the cwd),
    in a hidden folder: the copies of config.yaml/metrics.csv/summary.json there must not look like run
    folders to `regbench report` (which skips hidden folders)."""
    path = _local_path(uri)
    if path is None:
        return None  # a server decides where its artifacts go
    return (path.absolute().parent / ARTIFACTS_DIR / re.sub(r"[^\w.-]", "_", name)).as_uri()


class MlflowLogger(RunLogger):
    """One MLflow run for one regbench run folder."""

    def __init__(self, cfg: DictConfig, run_dir: Path, summary: dict[str, Any]):
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.run_dir = Path(run_dir)
        uri, name = tracking_uri(cfg), experiment_name(cfg)
        with _store_lock(uri):  # also covers MLflow creating the SQLite tables on first use
            self.client = MlflowClient(uri)
            experiment = self.client.get_experiment_by_name(name)
            if experiment is not None and experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(name, artifact_location=_artifact_location(uri, name)))
        earlier = summary.get("mlflow") or {}
        if earlier.get("tracking_uri") == uri and earlier.get("run_id"):  # resumed from a checkpoint: same run
            self.run_id = earlier["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {"regbench.run_dir": str(self.run_dir.resolve()), "regbench.config_hash": summary["config_hash"],
                    "regbench.command": summary.get("command") or "", "regbench.sweep_name": cfg.sweep_name or ""}
            if summary.get("git_commit"):
                tags["mlflow.source.git.commit"] = summary["git_commit"]
            self.run_id = self.client.create_run(experiment_id, run_name=self.run_dir.name, tags=tags).info.run_id
            config = OmegaConf.to_container(cfg, resolve=True)
            config.pop("hydra", None)
            params = [Param(k, str(v)) for k, v in flat_hparams(config).items()]
            for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
                self.client.log_batch(self.run_id, params=params[i : i + MAX_PARAMS_PER_BATCH])
        summary["mlflow"] = {"tracking_uri": uri, "experiment": name, "experiment_id": experiment_id,
                             "run_id": self.run_id}

    @classmethod
    def has_run(cls, cfg: DictConfig, run_dir: Path, summary: dict[str, Any]) -> bool:
        return (summary.get("mlflow") or {}).get("tracking_uri") == tracking_uri(cfg)

    def _metrics(self, values: dict[str, float], step: int):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        return [Metric(key, float(v), now, step) for key, v in values.items()]

    def log_epoch(self, row: dict[str, Any]) -> None:
        values = {k: v for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))}
        self.client.log_batch(self.run_id, metrics=self._metrics(values, int(row["epoch"])))

    def close(self, summary: dict[str, Any]) -> None:
        self.client.log_batch(self.run_id, metrics=self._metrics(results.summary_metrics(summary), 0))
        self.client.set_tag(self.run_id, "regbench.status", summary["status"])
        for here, dirs, files in os.walk(self.run_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            folder = Path(here).relative_to(self.run_dir)
            for file in sorted(files):
                if not file.startswith(".") and file not in SKIPPED_ARTIFACTS:
                    self.client.log_artifact(self.run_id, str(Path(here) / file),
                                             None if folder == Path(".") else str(folder))
        self.client.set_terminated(self.run_id, RUN_STATUS.get(summary["status"], "FAILED"))
