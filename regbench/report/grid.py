"""Group runs into configurations and aggregate seeds: the `Grid` every figure and table reads.

A *group* is the set of runs whose configs agree on every value that varies across the
runs read, except the seed: seeds are trials, so a group's numbers are mean ± std over
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from regbench.report import paired
from regbench.report.collect import REQUIRED_COLUMNS, Run
from regbench.report.table import (
    COMPLETED,
    CURVE_COLUMNS,
    DUPLICATE,
    EXCLUDED_STATUSES,
    EXTRA_METRIC_PREFIXES,
    MAIN_RATE,
    RUN_METRICS,
    aggregated_mask,
    assign_groups,
    fmt_value,
    is_baseline_type,
    make_label,
    runs_table,
    short_names,
    varied_keys,
)

CALIBRATION_KINDS = {"mc": "MC dropout", "calibration": "deterministic"}  # summary key -> legend name


@dataclass
class Grid:
    runs: pd.DataFrame  # one row per run, index 0..n-1 in the order of the loaded runs
    groups: pd.DataFrame  # one row per configuration group, index = group id
    curves: pd.DataFrame  # index (group, epoch); columns (metric, mean|std|count)
    calibration: pd.DataFrame  # long: run, group, kind, bin, confidence, accuracy, count
    config_keys: list[str]
    varied: list[str]
    names: dict[str, str]  # varied key -> short name used in labels and legends
    notes: list[str] = field(default_factory=list)
    # one row per (group, metric) against the group's baseline: paired differences, CI, p, verdict (stats.py)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    sequential: Any = None  # a seed=auto sweep's record (report/sequential.py), else None


def _status_counts(statuses: pd.Series) -> str:
    return ", ".join(f"{status} {count}" for status, count in statuses.value_counts().sort_index().items())


def _seeds(seeds: pd.Series) -> str:
    return ",".join(fmt_value(s) for s in sorted(seeds.dropna().unique()))


def _basis(runs: pd.DataFrame) -> str:
    """What a group's numbers rest on: completed runs, unfinished ones (no completed run yet), or none."""
    if runs["status"].eq(COMPLETED).any():
        return "completed"
    return "unfinished" if runs["aggregated"].any() else "none"


def group_table(table: pd.DataFrame, varied: list[str], names: dict[str, str]) -> pd.DataFrame:
    """One row per group: its varied values, label, seed counts, then `<metric>.mean` / `.std`."""
    by_group = table.groupby("group")
    used = table[table["aggregated"]].groupby("group")
    metrics = [c for c in RUN_METRICS if c in table] + [c for c in table if c.startswith(EXTRA_METRIC_PREFIXES)]
    stats = used[metrics].agg(["mean", "std"])
    stats.columns = [f"{metric}.{stat}" for metric, stat in stats.columns]
    identity = by_group[varied].first() if varied else pd.DataFrame(index=by_group.size().index)
    groups = identity.assign(
        label=[make_label(row, names) for row in identity.to_dict("records")] if varied else "all runs",
        dropout=by_group["dropout.name"].first() if "dropout.name" in table else "none",
        n=used.size().reindex(identity.index, fill_value=0),
        seeds=used["seed"].agg(_seeds).astype(object).reindex(identity.index, fill_value=""),  # none used: float
        n_runs=by_group.size(),
        statuses=by_group["status"].agg(_status_counts),
        basis=by_group[["status", "aggregated"]].apply(_basis),
    )
    groups = groups[["label", *varied, *groups.columns.difference(["label", *varied], sort=False)]].join(stats)
    groups["baseline"] = pick_baselines(groups)
    return groups.rename_axis("group")


# Varied values that mean "this regularizer is off"; a baseline has as few others switched on as possible.
OFF_VALUES = {"augment.ops": ("[]",), "optim.weight_decay": (0, 0.0), "reg.l1": (0, 0.0), "reg.max_norm": (None,),
              "reg.label_smoothing": (0, 0.0), "model.batchnorm": (False,)}


def _switched_on(pool: pd.DataFrame) -> pd.Series:
    """Per group: how many of the varied OFF_VALUES keys are not off (NaN counts as off, i.e. unset)."""
    count = pd.Series(0, index=pool.index)
    for key, off in OFF_VALUES.items():
        if key in pool:
            count += ~(pool[key].isna() | pool[key].isin(off))
    return count


def _baseline(groups: pd.DataFrame) -> Any:
    """The no-dropout group (p = 0 preferred), else a p = 0 group, else the first; with data if any.
    Among equals, the one with the fewest other regularizers switched on (no augmentation, no decay...)."""
    pool = groups[groups["n"] > 0] if (groups["n"] > 0).any() else groups
    p = pool[MAIN_RATE] if MAIN_RATE in pool else pd.Series(np.nan, index=pool.index)
    baseline_type = pool["dropout"].map(is_baseline_type).astype(bool)  # `none`: a type with no rate keys (registry)
    on = _switched_on(pool)
    for mask in (baseline_type & (p == 0), baseline_type, p == 0, pd.Series(True, index=pool.index)):
        if mask.any():
            return on[mask].idxmin()  # first of the least-regularized, in group order
    return pool.index[0]


def pick_baselines(groups: pd.DataFrame) -> pd.Series:
    """Baseline group id for every group; per dataset, since runs across datasets do not compare."""
    if "dataset.name" not in groups:
        return pd.Series(_baseline(groups), index=groups.index)
    per_dataset = {name: _baseline(part) for name, part in groups.groupby("dataset.name", dropna=False)}
    return groups["dataset.name"].map(per_dataset)


CURVE_ID_COLUMNS = ("run_id", "path", "status", "group", "label", "seed")  # per run, before its varied keys


def curves_long(runs: list[Run], table: pd.DataFrame, varied: list[str]) -> pd.DataFrame:
    """Every run's metrics.csv rows in one long frame: the run's identity and varied config values, then
    epoch and every metrics column (runs without the optional MC columns get NaN there)."""
    ids = [c for c in CURVE_ID_COLUMNS if c in table] + [k for k in varied if k not in CURVE_ID_COLUMNS]
    have = [i for i, run in enumerate(runs) if not run.metrics.empty]
    if not have:
        return pd.DataFrame(columns=[*ids, *REQUIRED_COLUMNS])
    # One concat of all metrics and one row lookup per epoch row (a frame per run cost ~10 ms each)
    metrics = pd.concat([runs[i].metrics for i in have], ignore_index=True)
    front = table[ids].iloc[np.repeat(have, [len(runs[i].metrics) for i in have])].reset_index(drop=True)
    return pd.concat([front.astype(object), metrics], axis=1).infer_objects()


def curve_stats(runs: list[Run], table: pd.DataFrame) -> pd.DataFrame:
    """Mean/std/count over seeds per group and epoch. Unfinished runs count for the epochs they have;
    diverged and failed runs are left out since their curves (nan/inf) would drown the others."""
    long = curves_long(runs, table, [])
    long = long[~long["status"].isin(EXCLUDED_STATUSES)]
    if long.empty:
        return pd.DataFrame()
    columns = [c for c in CURVE_COLUMNS if c in long.columns]
    long[columns] = long[columns].apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan)
    return long.groupby(["group", "epoch"])[columns].agg(["mean", "std", "count"])


def _bins(tree: Any) -> Mapping[str, Any] | None:
    """Reliability bins of an `mc` / `calibration` summary entry: nested or at its top level."""
    if not isinstance(tree, Mapping):
        return None
    if "bin_confidence" in tree:
        return tree
    return _bins(tree.get("calibration")) if "calibration" in tree else None


CALIBRATION_BINS = {"confidence": "bin_confidence", "accuracy": "bin_accuracy", "count": "bin_count"}


def calibration_table(runs: list[Run], table: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, kind, bin) of the runs' reliability bins; built as columns of lists and made a
    frame once (a frame per run and kind cost ~10 ms each, seconds for a few hundred runs)."""
    rows: dict[str, list] = {name: [] for name in ("bin", *CALIBRATION_BINS, "run", "group", "kind", "split")}
    for i, run in enumerate(runs):
        if not table.at[i, "aggregated"]:
            continue
        for key, kind in CALIBRATION_KINDS.items():
            bins = _bins((run.summary or {}).get(key))
            values = [bins.get(field) for field in CALIBRATION_BINS.values()] if bins is not None else None
            # ragged, missing or non-list bins: leave this run out of the figure
            if values is None or not all(isinstance(v, list) for v in values) or len({len(v) for v in values}) > 1:
                continue
            n = len(values[0])
            rows["bin"] += range(n)
            for name, value in zip(CALIBRATION_BINS, values, strict=True):
                rows[name] += value
            per_row = {"run": i, "group": table.at[i, "group"], "kind": kind, "split": bins.get("split")}
            for name, value in per_row.items():
                rows[name] += [value] * n
    return pd.DataFrame(rows) if rows["bin"] else pd.DataFrame()


def grid_notes(table: pd.DataFrame, groups: pd.DataFrame) -> list[str]:
    """Things a reader must know before comparing numbers."""
    notes = []
    if "dataset.name" in table and table["dataset.name"].nunique(dropna=False) > 1:
        counts = ", ".join(f"{name}: {n} runs" for name, n in table["dataset.name"].value_counts().sort_index().items())
        notes.append(
            f"Runs come from {table['dataset.name'].nunique(dropna=False)} datasets ({counts}); they are grouped "
            "by dataset.name and each dataset has its own baseline: compare results only within a dataset."
        )
    repeats = table[table["issues"].fillna("").str.contains(DUPLICATE.split("{")[0], regex=False)]
    if len(repeats):
        notes.append(
            f"{len(repeats)} run(s) repeat the configuration and seed of another run (same config hash, e.g. two "
            "sweeps into one folder): each configuration and seed counts once, the completed (newest) run; left "
            "out: " + ", ".join(f"`{p}`" for p in repeats["path"].head(4))
        )
    seeds = groups.loc[groups["n"] > 0, "n"]
    if seeds.nunique() > 1:
        notes.append(f"Groups have different numbers of seeds ({seeds.min()}–{seeds.max()}); see the n column.")
    partial = groups.index[groups["basis"].eq("unfinished")]
    if len(partial):
        notes.append(
            f"{len(partial)} group(s) have no completed run; their numbers come from unfinished runs "
            "(last epoch written): " + "; ".join(groups.loc[partial, "label"])
        )
    return notes


def build_grid(runs: list[Run], margin: str | None = None, sequential: Any = None) -> Grid:
    """The grid of `runs`; margin: the --margin text (else the runs' `margin` key, else the
    defaults); sequential: a seed=auto sweep's record, whose planned looks the verdicts account for."""
    table, config_keys = runs_table(runs)
    varied = varied_keys(table, config_keys)
    names = short_names(varied)
    table["group"] = assign_groups(table, varied)
    table["aggregated"] = aggregated_mask(table)
    groups = group_table(table, varied, names)
    table["label"] = table["group"].map(groups["label"])
    looks = sequential.looks_planned if sequential is not None else 1
    comparisons = paired.compare_groups(table, groups, paired.margins(table, margin), looks)
    groups = paired.with_comparisons(groups, comparisons, table)
    return Grid(
        runs=table,
        groups=groups,
        curves=curve_stats(runs, table),
        calibration=calibration_table(runs, table),
        config_keys=config_keys,
        varied=varied,
        names=names,
        notes=grid_notes(table, groups),
        comparisons=comparisons,
        sequential=sequential,
    )
