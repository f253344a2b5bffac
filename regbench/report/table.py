"""The tidy run table (one row per run), config-key naming, and which keys vary across runs.

Config keys are handled generically (flattened to dotted names such as `dropout.p`), so
keys added to the config later need no change here.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regbench.core.dropout_types import BUILT_IN, RATE_KEYS
from regbench.records.results import EXTRA_METRIC_PREFIXES, RUN_METRICS, SPLIT_METRICS, flatten
from regbench.report.collect import Run
from regbench.rules.config import ADDED_KEYS, NOT_COMPARED_KEYS
from regbench.rules.verdicts import counted_on

# Keys whose differences do not make two runs different configurations (the schema's declaration:
# the not-hashed keys, the seed, and where a run ran).
RUN_ONLY_KEYS = NOT_COMPARED_KEYS | {"logger"}  # runs written before `logger` became a group hold a string
MAIN_RATE = f"dropout.{RATE_KEYS[0]}"  # the config key of a dropout type's main rate (the rate-sweep axis)
# Varied keys are listed in this order first (labels then read "dataset=…, dropout=…, p=…").
KEY_PRIORITY = ("dataset.name", "model.name", "dropout.name", MAIN_RATE)

COMPLETED = "completed"
INCOMPLETE = "incomplete"  # no summary.json and no process marker to say more
RUNNING = "running"  # no summary.json yet and its process still lives (a sweep still writing the folder)
SUPERSEDED = "superseded"  # retrained from scratch in another folder (summary.json `superseded_by`)
EXCLUDED_STATUSES = frozenset({"diverged", "failed", SUPERSEDED})  # their numbers are not results
# used only where a group has nothing better
PARTIAL_STATUSES = frozenset({INCOMPLETE, RUNNING, "interrupted", "killed"})

CURVE_COLUMNS = (*SPLIT_METRICS, "batch_loss")
SPLIT_SIZES = ("n_train", "n_val", "n_test")  # summary.json `data`: examples per split, as data.<key> columns
TRAIN_EVAL_SIZE = "trainer.train_eval_size"  # the config key: train accuracy counts min(this, n_train) examples


# ---------------------------------------------------------------------------- naming


def _cell(value: Any) -> Any:
    """Lists and dicts become compact JSON, which is hashable and also Hydra override syntax."""
    return json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict) else value


def fmt_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "unset"
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):g}"
    return str(value)


def short_names(keys: list[str]) -> dict[str, str]:
    """`dropout.name` -> `dropout`, `dropout.p` -> `p`; full keys where two would clash."""

    def short(key: str) -> str:
        parts = key.split(".")
        return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]

    shorts = {key: short(key) for key in keys}
    taken = pd.Series(list(shorts.values()), dtype=object).value_counts()
    return {key: key if taken[s] > 1 else s for key, s in shorts.items()}


def make_label(values: Mapping[str, Any], names: Mapping[str, str]) -> str:
    return ", ".join(f"{names[key]}={fmt_value(values[key])}" for key in names) or "all runs"


# ---------------------------------------------------------------------------- runs


def _num(value: Any) -> float:
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else np.nan


def _from_metrics(metrics: pd.DataFrame, at: str) -> tuple[dict[str, float], float]:
    """Split metrics and epoch of the last row ("final") or the lowest-val-loss row ("best")."""
    if metrics.empty or (at == "best" and metrics["val_loss"].isna().all()):
        return {}, np.nan
    row = metrics.iloc[-1] if at == "final" else metrics.loc[metrics["val_loss"].idxmin()]
    return {m: _num(row[m]) for m in SPLIT_METRICS}, _num(row["epoch"])


def _scalars(tree: Any, prefix: str) -> dict[str, float]:
    if not isinstance(tree, Mapping):
        return {}
    return {k: _num(v) for k, v in flatten(tree, prefix).items() if isinstance(v, numbers.Real)}


def protocol_label(summary: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """Which weights scored the test split, e.g. `select=final`, `select=val_loss, patience=5 on val_loss`.

    Runs written before trainer.select existed scored the best-val-loss weights unless
    trainer.restore_best was false; their label says so.
    """
    trainer = config.get("trainer") if isinstance(config.get("trainer"), Mapping) else {}
    recorded = summary.get("protocol") if isinstance(summary.get("protocol"), Mapping) else {}
    select = recorded.get("select") or trainer.get("select")
    if select is None:
        select = "val_loss" if trainer.get("restore_best", True) else "final"
    patience = recorded.get("patience", trainer.get("patience"))
    if patience is None:
        return f"select={select}"
    monitor = recorded.get("monitor") or trainer.get("monitor") or (select if select != "final" else "val_loss")
    return f"select={select}, patience={patience} on {monitor}"


def run_row(run: Run, added: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One tidy row: identity and status, final/best/test metrics, then every config value. `added`: keys
    added to the schema later (config.ADDED_KEYS) that other runs of the table hold: a run written before
    one existed computed its default."""
    summary = run.summary or {}
    config = {key: _cell(value) for key, value in {**(added or {}), **flatten(run.config)}.items()}
    final_m, last_epoch = _from_metrics(run.metrics, "final")
    best_m, best_epoch = _from_metrics(run.metrics, "best")
    final = summary.get("final") if isinstance(summary.get("final"), Mapping) else final_m
    best = summary.get("best") if isinstance(summary.get("best"), Mapping) else best_m
    overrides = summary.get("overrides")
    data = summary.get("data") if isinstance(summary.get("data"), Mapping) else {}
    unfinished = INCOMPLETE if run.status is None else run.status  # running | killed | failed
    status = str(summary.get("status", "unknown")) if run.summary is not None else unfinished
    row: dict[str, Any] = {
        "path": run.path,
        "run_id": summary.get("run_id") or Path(run.path).name,
        "status": SUPERSEDED if summary.get("superseded_by") else status,
        "seed": summary.get("seed", config.get("seed")),
        "epochs_completed": summary.get("epochs_completed", len(run.metrics)),
        "epochs_planned": config.get("trainer.epochs"),
        "last_epoch": last_epoch,
        "best_epoch": summary.get("best_epoch", best_epoch),
        "stopped_early": summary.get("stopped_early"),
        "seconds": summary.get("seconds"),
        **{f"final.{m}": _num(final.get(m)) for m in SPLIT_METRICS},
        **{f"best.{m}": _num(best.get(m)) for m in SPLIT_METRICS},
        "test.acc": _num((summary.get("test") or {}).get("acc")),
        "test.loss": _num((summary.get("test") or {}).get("loss")),
        "test_final.acc": _num((summary.get("test_final") or {}).get("acc")),
        "test_final.loss": _num((summary.get("test_final") or {}).get("loss")),
        "protocol": protocol_label(summary, run.config),
        **{f"data.{key}": _num(data.get(key)) for key in SPLIT_SIZES},
        **_scalars(summary.get("mc"), "mc."),
        **_scalars(summary.get("calibration"), "calibration."),
        "device": summary.get("device"),
        "config_hash": summary.get("config_hash"),
        "git_commit": summary.get("git_commit"),
        "command": summary.get("command"),
        "overrides": " ".join(map(str, overrides)) if isinstance(overrides, list) else None,
        "error": summary.get("error"),
        "issues": "; ".join(
            run.issues
            + ([f"{status}, superseded by {summary['superseded_by']}"] if summary.get("superseded_by") else [])
        ),
    }
    row |= {key: value for key, value in config.items() if key not in row}
    return row


DUPLICATE = "same configuration and seed (config hash) as {kept}: counted once"  # the issue on a dropped repeat
KEEP_ORDER = (COMPLETED, "diverged")  # of runs repeating one config hash, the first status here is kept


def drop_repeats(table: pd.DataFrame, varied: list[str]) -> None:
    """Runs of one config hash (configuration + seed: e.g. two sweeps into one folder, or resume=false) count
    once: the completed one (else diverged, else any), the newest among equals; the others become
    `superseded`, with an issue naming the run kept. In place. The seed and the varied config values must
    agree too: the hash covers them, but a hand-written or older one may not."""
    live = table[table["config_hash"].notna() & table["status"].ne(SUPERSEDED)]
    rank = live["status"].map(lambda s: KEEP_ORDER.index(s) if s in KEEP_ORDER else len(KEEP_ORDER))
    order = live.assign(_rank=rank).sort_values(["_rank", "run_id"], ascending=[True, False])
    keeper = order.groupby(["config_hash", "seed", *varied], dropna=False, sort=False)["path"].transform("first")
    for i in keeper.index[keeper.ne(order["path"])]:  # by folder: a copied sweep repeats the run ids too
        table.at[i, "status"] = SUPERSEDED
        table.at[i, "issues"] = "; ".join(filter(None, [table.at[i, "issues"], DUPLICATE.format(kept=keeper[i])]))


def runs_table(runs: list[Run]) -> tuple[pd.DataFrame, list[str]]:
    config_keys = list(dict.fromkeys(key for run in runs for key in flatten(run.config)))
    added = {key: value for key, value in ADDED_KEYS.items() if key in config_keys}
    table = pd.DataFrame.from_records([run_row(run, added) for run in runs])
    drop_repeats(table, varied_keys(table, config_keys))
    metric_cols = [c for c in table.columns if c in RUN_METRICS or c.startswith(EXTRA_METRIC_PREFIXES)]
    table[metric_cols] = table[metric_cols].apply(pd.to_numeric, errors="coerce")
    return table, config_keys


def metric_step(runs: pd.DataFrame, metric: str) -> float:
    """The step in which `metric` moves over these runs: 1/N for an accuracy counted on N examples (the
    coarsest over its splits and the runs), 0.0 for a continuous metric or runs that did not record N. The
    t-tests floor the spread of per-seed differences at it (rules/verdicts.py: zero spread is not certainty)."""
    sizes = []
    for split in counted_on(metric):
        column = f"data.n_{split}"
        if column not in runs:
            continue
        n = pd.to_numeric(runs[column], errors="coerce")
        if split == "train" and TRAIN_EVAL_SIZE in runs:  # the gap's train accuracy: a fixed subset (engine/loop.py)
            n = np.fmin(n, pd.to_numeric(runs[TRAIN_EVAL_SIZE], errors="coerce"))
        sizes += [v for v in n if np.isfinite(v) and v > 0]
    return 1.0 / min(sizes) if sizes else 0.0


def dropout_spec(name: Any):
    """The registered dropout type of this name (regularizers/), or None: a type this process does
    not know (e.g. a plugin that is not loaded here) is still reported, with neutral defaults.
    Built-in types are read from core/dropout_types.py, so a report of them imports no torch."""
    if isinstance(name, str) and name in BUILT_IN:
        return BUILT_IN[name]
    from regbench.regularizers import DROPOUTS

    return DROPOUTS.get(name) if isinstance(name, str) and name in DROPOUTS else None


def is_baseline_type(name: Any) -> bool:
    """A dropout type with no rate to set (`none`): the no-regularization baseline."""
    spec = dropout_spec(name)
    return spec is not None and not spec.rate_keys


def varied_keys(table: pd.DataFrame, config_keys: list[str]) -> list[str]:
    candidates = [k for k in config_keys if k not in RUN_ONLY_KEYS and k in table.columns]
    varied = [k for k in candidates if table[k].nunique(dropna=False) > 1]
    return sorted(varied, key=lambda k: KEY_PRIORITY.index(k) if k in KEY_PRIORITY else len(KEY_PRIORITY))


def sort_key(column: pd.Series) -> pd.Series:
    """Sort key for a config column: numbers numerically, dropout types baseline-first, rest as text."""
    if column.name == "dropout.name":
        return column.map(lambda v: f"{0 if is_baseline_type(v) else 1}{v}")
    if pd.api.types.is_numeric_dtype(column):
        return column
    return column.astype(str)


def assign_groups(table: pd.DataFrame, varied: list[str]) -> pd.Series:
    if not varied:
        return pd.Series(0, index=table.index, name="group")
    keys = [sort_key(table[k]) for k in varied]
    return table.groupby(keys, dropna=False, sort=True).ngroup().rename("group")


def aggregated_mask(table: pd.DataFrame) -> pd.Series:
    """Which runs enter the group means: completed ones, else (per group) the unfinished ones."""
    completed = table["status"].eq(COMPLETED)
    group_has_completed = completed.groupby(table["group"]).transform("any")
    return completed | (table["status"].isin(PARTIAL_STATUSES) & ~group_has_completed)
