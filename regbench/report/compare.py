"""`regbench compare A B` / `regbench compare A --where key=value`: matched configurations, paired differences.

Two folders (two sweeps, two sets of runs): configurations are matched on the config values
that vary inside either folder (the grid); whatever is fixed in each but differs between them
is the change being measured, B − A. One folder with `--where key=value`: the runs with
key=value are the reference A, and every other value of that key is compared with them,
matched on the remaining varied values. Within a matched configuration, runs pair by seed
(report/stats.py; Welch where the seeds do not pair); all rows are one family (one metric):
Bonferroni over them, and the verdicts read that interval (regbench/rules/verdicts.py; --margin sets δ).

Writes <out>/compare.csv (one row per comparison) and compare.png (and compare.svg / .pdf where --format
asks; the default is the report's, rules/config.DEFAULT_REPORT_FORMATS), and prints the table.
Every check happens before anything is written (bad input: one line, exit 2).
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from regbench.core.errors import ConfigError
from regbench.core.files import atomic_write_text
from regbench.report import read_runs, stats
from regbench.report.content_compare import bounds_text, confidence, display, interval_text, p_text
from regbench.report.sequential import read_record
from regbench.report.staging import staging
from regbench.report.style import CAPSIZE, NEUTRAL, REFERENCE, save
from regbench.report.table import (
    COMPLETED,
    EXTRA_METRIC_PREFIXES,
    RUN_METRICS,
    RUN_ONLY_KEYS,
    fmt_value,
    metric_step,
    runs_table,
    varied_keys,
)
from regbench.rules import verdicts

USAGE = "regbench compare A B | A --where KEY=VALUE [--metric M] [--margin D] [--out DIR] [--format png,svg]"
DEFAULT_METRICS = ("test.acc", "final.val_acc")  # the first the runs have is compared unless --metric says
BAR_HEIGHT = 0.4  # inches per compared configuration in the figure
LABEL_WIDTH = 48  # characters of a configuration's label per line in the figure (wider ones wrap)
MIN_HEIGHT = 2.2


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per (configuration, variant): stats.compare_values fields + labels
    metric: str
    reference: str  # what side A is, in words
    changed: str  # what differs between the sides, in words


def _completed(paths: list[Path]) -> tuple[pd.DataFrame, list[str]]:
    """The completed runs below `paths` (one row each) and the config keys they hold."""
    runs, _ = read_runs(paths)
    table, config_keys = runs_table(runs)
    done = table[table["status"] == COMPLETED]
    if done.empty:
        raise ConfigError(f"no completed runs under {', '.join(map(str, paths))}; valid: folders holding finished runs")
    return done.reset_index(drop=True), [k for k in config_keys if k not in RUN_ONLY_KEYS]


def _grid_keys(keys: list[str], *sides: pd.DataFrame) -> list[str]:
    """Config keys that vary inside any side: they name a configuration, so they are matched."""
    grid: list[str] = []
    for side in sides:
        grid += [k for k in varied_keys(side, [k for k in keys if k in side]) if k not in grid]
    return grid


def _is_metric(column: str) -> bool:
    return column in RUN_METRICS or column.startswith(EXTRA_METRIC_PREFIXES)


def _identity(table: pd.DataFrame, keys: list[str]) -> pd.Series:
    if not keys:
        return pd.Series("all runs", index=table.index)
    return table[keys].apply(lambda r: ", ".join(f"{k}={fmt_value(v)}" for k, v in r.items()), axis=1)


def _pick_metric(metric: str | None, table: pd.DataFrame) -> str:
    valid = [c for c in table.columns if _is_metric(c) and table[c].notna().any()]
    if metric is None:
        return next((m for m in DEFAULT_METRICS if m in valid), valid[0] if valid else DEFAULT_METRICS[0])
    if metric not in valid:
        raise ConfigError(f"--metric {metric!r} is not in the data; valid choices: {', '.join(valid)}")
    return metric


def _changed(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], grid: list[str]) -> str:
    """Config values fixed within each side that differ between them (what B changes), in words."""
    keys = [k for k in keys if k not in grid]
    changes = []
    for k in keys:
        va = a[k].drop_duplicates() if k in a else pd.Series([None])
        vb = b[k].drop_duplicates() if k in b else pd.Series([None])
        if len(va) == len(vb) == 1 and fmt_value(va.iloc[0]) != fmt_value(vb.iloc[0]):
            changes.append(f"{k}: {fmt_value(va.iloc[0])} → {fmt_value(vb.iloc[0])}")
    return "; ".join(changes) or "no fixed config value differs (e.g. another code version or device)"


def _split(table: pd.DataFrame, config: list[str], where: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    key, sep, value = where.partition("=")
    key, value = key.strip(), value.strip()
    varied = varied_keys(table, config)
    if key not in config:
        raise ConfigError(f"--where {where!r}: {key!r} is not a config key of these runs; valid keys: "
                          f"{', '.join(varied) or ', '.join(config)}")
    shown = table[key].map(fmt_value)
    values = sorted(set(shown))
    if len(values) == 1:
        raise ConfigError(f"--where {where!r}: every run has {key}={values[0]}, so nothing is left to compare; "
                          f"valid: a key whose values differ ({', '.join(varied) or 'none'})")
    if not sep or not value:  # `--where dropout.p`: the key is right, its value is missing
        raise ConfigError(f"--where {where} needs a value; valid: --where {key}=VALUE with VALUE one of "
                          f"{', '.join(values)}")
    if value not in values:
        raise ConfigError(f"--where {where!r}: no run has {key}={value}; valid values: {', '.join(values)}")
    mask = shown == value
    return table[mask], table[~mask], key


def compare(paths: list[Path], where: str | None = None, metric: str | None = None,
            margin: str | None = None) -> Comparison:
    """The comparison table; raises ConfigError for bad input (before anything is written)."""
    if len(paths) not in (1, 2):
        raise ConfigError(f"compare takes one folder with --where, or two folders; got {len(paths)}; usage: {USAGE}")
    if len(paths) == 1 and where is None:
        raise ConfigError(f"one folder needs --where KEY=VALUE to split it; usage: {USAGE}")
    if len(paths) == 2 and where is not None:
        raise ConfigError(f"--where splits one folder; with two folders leave it out; usage: {USAGE}")
    if len(paths) == 2:
        (a, keys_a), (b, keys_b) = _completed([paths[0]]), _completed([paths[1]])
        shared = sorted({str(Path(p).resolve()) for p in a["path"]} & {str(Path(p).resolve()) for p in b["path"]})
        if shared:
            raise ConfigError(f"{paths[0]} and {paths[1]} hold the same runs ({len(shared)}, e.g. {shared[0]}); "
                              f"valid: two folders of different runs, or one folder with --where KEY=VALUE")
        keys, split_key = list(dict.fromkeys(keys_a + keys_b)), None
        reference = f"A = {paths[0]}, B = {paths[1]}"
    else:
        table, keys = _completed(paths)
        a, b, split_key = _split(table, keys, where)
        reference = f"A = runs with {where} in {paths[0]}; B = each other value of {split_key}"
    metric = _pick_metric(metric, pd.concat([a, b]))
    for side, name in ((a, "A"), (b, "B")):
        if side[metric].isna().all():
            raise ConfigError(f"--metric {metric!r} has no values in {name}; valid: a metric both sides recorded")
    grid = [k for k in _grid_keys(keys, a, b) if k != split_key]
    a = a.assign(_config=_identity(a, grid), _variant="")
    variants = b[split_key].map(lambda v: f"{split_key}={fmt_value(v)}") if split_key else "B"
    b = b.assign(_config=_identity(b, grid), _variant=variants)
    common = sorted(set(a["_config"]) & set(b["_config"]))
    if not common:
        raise ConfigError(f"no configuration in common: A has {sorted(set(a['_config']))[:3]}, B has "
                          f"{sorted(set(b['_config']))[:3]} (matched on {', '.join(grid) or 'nothing'}); "
                          "valid: runs of the same grid")
    pairs = []
    for config in common:
        reference_runs = a[a["_config"] == config]
        for variant, part in b[b["_config"] == config].groupby("_variant", sort=True):
            step = metric_step(pd.concat([reference_runs, part]), metric)  # an accuracy's spread counts as >= 1/N
            pairs.append(stats.Pair({"configuration": config, "variant": variant}, part.set_index("seed")[metric],
                                    reference_runs.set_index("seed")[metric], stats.direction(metric), step))
    margins = verdicts.parse_margins(margin, [metric], metric)
    # runs of a seed=auto sweep: the verdicts keep its planned looks' level, as its own report does
    record = read_record([*paths, *(Path(p).parent for p in pd.concat([a, b])["path"])])
    looks = record.looks_planned if record is not None else 1
    frame = stats.compare_many(pairs, verdicts.margin_for(metric, margins), looks=looks, metric=metric)
    changed = _changed(a, b, keys, grid) if split_key is None else split_key
    return Comparison(frame, metric, reference, changed)


def tested(c: Comparison) -> int:
    """m: the comparisons with a test (Bonferroni's count); 0 where every one has too few seeds."""
    return int(c.table["family_m"].max()) if len(c.table) else 0


def family_text(c: Comparison) -> str:
    """How the verdicts' intervals are adjusted, in words: 'Bonferroni over 3 comparison(s)' (and the planned
    looks of a seed=auto sweep), or that no comparison could be tested, so there is nothing to adjust."""
    m = tested(c)
    if m == 0:
        return "no comparison is testable (too few seeds on a side to measure a spread: no interval, no p-value)"
    looks = int(c.table["looks"].max())
    over = f" and the {looks} planned looks of its seed=auto sweep" if looks > 1 else ""
    return f"{stats.ADJUST} over {m} comparison(s){over}"


def bars_text(c: Comparison) -> str:
    """The figure's line on its error bars: the verdict's interval, or why there are none."""
    m = tested(c)
    return f"error bars: the verdict's interval ({stats.ADJUST} over {m})" if m else \
        "no error bars: no comparison is testable (too few seeds)"


def margin_words(c: Comparison) -> str:
    """'δ = 1 pp'; for a metric with no default margin (seconds, best_epoch, ...) and no --margin, that there is
    none and what it means (no equivalence verdict) instead of a bare 'δ'."""
    margin = float(c.table["margin"].iloc[0]) if len(c.table) else math.nan
    if math.isfinite(margin):
        return f"δ = {verdicts.margin_text(c.metric, margin)}"
    return (f"no δ for {c.metric} (no default margin: no equivalence verdict unless identical in every seed; "
            "--margin VALUE sets one, in its own units)")


def labels(t: pd.DataFrame) -> pd.Series:
    """'model.hidden=[64], dropout.p=0.5' (matched values), plus the compared value with --where."""
    def one(config: str, variant: str) -> str:
        parts = [c for c in (config if config != "all runs" else "", variant if variant != "B" else "") if c]
        return " | ".join(parts) or "all runs"

    return pd.Series([one(c, v) for c, v in zip(t["configuration"], t["variant"], strict=True)], index=t.index)


def display_frame(c: Comparison) -> pd.DataFrame:
    name, scale, unit, digits = display(c.metric)
    t = c.table
    return pd.DataFrame({
        "configuration": labels(t),
        "A": (t["mean_baseline"] * scale).map(lambda v: f"{v:.{digits}f}"),
        "B": (t["mean"] * scale).map(lambda v: f"{v:.{digits}f}"),
        f"B − A ({unit}) [95% CI]".replace(" ()", ""): [interval_text(d, lo, hi, scale, digits)
                                     for d, lo, hi in zip(t["diff"], t["ci95_low"], t["ci95_high"], strict=True)],
        "verdict's interval": [bounds_text(r["ci_low"], r["ci_high"], scale, digits)
                               + ("" if pd.isna(r["ci_low"]) else f" ({confidence(r)})") for r in t.to_dict("records")],
        "test": [f"{r['test']}, n = {stats.n_text(r)}" for r in t.to_dict("records")],
        "p": t["p"].map(p_text),
        "p adjusted": t["p_adj"].map(p_text),
        "verdict": t["verdict"],
    })


def figure(c: Comparison) -> Figure:
    """One bar per compared configuration: B − A with the verdict's interval (error bar)."""
    name, scale, unit, _ = display(c.metric)
    t = c.table
    diff = t["diff"].to_numpy(float) * scale
    err = np.vstack([np.nan_to_num(diff - t["ci_low"].to_numpy(float) * scale),
                     np.nan_to_num(t["ci_high"].to_numpy(float) * scale - diff)])
    # long configurations (several matched keys) wrap at ", " onto lines of their own, the figure growing with them
    wrapped = [textwrap.fill(label, LABEL_WIDTH, break_long_words=False, break_on_hyphens=False)
               for label in labels(t)]
    lines = sum(label.count("\n") + 1 for label in wrapped)
    fig = Figure(figsize=(9.0, max(MIN_HEIGHT, BAR_HEIGHT * max(len(t), lines / 2) + 1.3)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(t))
    ax.barh(y, diff, xerr=err, color="#1f77b4", height=0.6, error_kw={"capsize": CAPSIZE, "ecolor": NEUTRAL})
    ax.axvline(0.0, **REFERENCE)
    ax.set_yticks(y, wrapped)
    ax.invert_yaxis()
    ax.set(xlabel=f"B − A in {name} ({unit})".replace(" ()", ""),
           title=f"{name}: B − A per matched configuration\n{bars_text(c)}\nB changes: {c.changed[:90]}")
    return fig


def write(result: Comparison, out: Path, formats: list[str]) -> list[Path]:
    """compare.csv and the figure (PNG and each other format asked for) into `out`, whole or not at all (a full
    disk, a read-only folder: a machine failure naming the path, exit 1). Returns every file written, in `out`:
    what the staging folder held, so the list cannot miss a format."""
    with staging(out, "the comparison") as stage:
        atomic_write_text(stage / "compare.csv", result.table.assign(metric=result.metric).to_csv(index=False))
        png = save(figure(result), stage, "compare", formats)
        figures = sorted(p.name for p in stage.iterdir() if p.suffix != ".csv" and p != png)
        written = [out / "compare.csv", out / png.name, *(out / name for name in figures)]
    return written
