"""Commands that rerun what a report shows: each run's own command, and one multirun for the grid."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from regbench.report.grid import Grid
from regbench.report.table import fmt_value, sort_key

# Config groups whose `name` is chosen as `group=value` on the command line: that also loads the
# group's YAML defaults, which `dropout.name=value` alone would not.
CONFIG_GROUPS = frozenset({"dataset", "model", "dropout", "optim", "augment"})
PLAIN_VALUE = re.compile(r"^[\w.\-+/\[\],:]*$")  # Hydra reads these unquoted


def override_key(key: str) -> str:
    parent, _, leaf = key.rpartition(".")
    return parent if leaf == "name" and parent in CONFIG_GROUPS else key


def hydra_value(value: Any) -> str:
    text = "null" if fmt_value(value) == "unset" else fmt_value(value)
    if isinstance(value, float) and math.isfinite(value) and float(text) != value:
        text = repr(float(value))  # %g rounds to 6 digits; a command must reproduce the exact value
    return text if PLAIN_VALUE.match(text) else "'" + text.replace("'", "\\'") + "'"


def _values(column: pd.Series) -> list[Any]:
    order = sort_key(column).sort_values(kind="stable").index
    return list(column.loc[order].drop_duplicates())


def _shared_overrides(runs: pd.DataFrame, swept: set[str]) -> list[str]:
    """Overrides every run was started with, minus those the multirun sweeps over."""
    lists = [o.split() for o in runs["overrides"].dropna()]
    if not lists:
        return []
    shared = set(lists[0]).intersection(*lists[1:])
    return [o for o in lists[0] if o in shared and o.split("=", 1)[0].lstrip("+~") not in swept]


def multirun_command(grid: Grid) -> tuple[str, str]:
    """`regbench run -m …` over the varied values and seeds, and a note on what it reruns."""
    runs = grid.runs
    sweep = {override_key(k): _values(runs[k]) for k in grid.varied}
    if runs["seed"].notna().any():
        sweep["seed"] = _values(runs["seed"].dropna())
    parts = _shared_overrides(runs, set(sweep)) + [
        f"{key}={','.join(hydra_value(v) for v in values)}" for key, values in sweep.items()
    ]
    if grid.sequential is not None and "seed" in sweep:  # a seed=auto sweep reruns as one (its folder, its looks)
        parts[-1] = f"seed=auto hydra.sweeper.max_seeds={grid.sequential.max_seeds}"
    command = " ".join(["regbench run -m", *parts])
    cells = math.prod(len(values) for key, values in sweep.items() if key != "seed")
    if cells > len(grid.groups):
        note = (
            f"The runs cover {len(grid.groups)} of the {cells} combinations of these values, "
            f"so this command also runs the {cells - len(grid.groups)} missing ones."
        )
    else:
        note = f"Reruns all {len(grid.groups)} configuration(s) × {len(sweep.get('seed', [None]))} seed(s)."
    if "overrides" in runs and runs["overrides"].isna().all():
        note += " The runs recorded no overrides (no summary.json yet), so fixed settings are not included."
    return command, note


def run_commands(grid: Grid) -> list[str]:
    """Each run's exact command line, in group order, once per distinct command."""
    ordered = grid.runs.sort_values(["group", "seed"], kind="stable")
    return list(ordered["command"].dropna().drop_duplicates())
