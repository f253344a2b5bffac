"""`seed=auto`: the sequential rule that says when a sweep has enough seeds.

A pilot of PILOT seeds, then looks at doubling seed counts (3, 6, 12, 20 for max_seeds = 20)
until every comparison against the baseline on the primary metric is decided (better / worse /
equivalent, rules/verdicts.py) or the seed budget is spent. The error rate survives the
repeated looks by Bonferroni over the K planned looks: every look reads its intervals at
α/(m·K) (m: the metric's family), so the chance that *any* look calls a true null better or
worse is at most α whatever the correlation between looks. Simpler than an alpha-spending
boundary (Lan–DeMets), and the report of a seed=auto sweep reads the same level, so its verdicts
are the sweeper's. Doubling keeps K small (the price of each look) and each look's seeds train
as stacks.

Pure functions: the sweeper (hydra_plugins/regbench_plugins/sweeper.py, through the sweep's report) and
the simulation (`simulate`) read the same kernel (report/stats.py) and `schedule`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from regbench.report import stats
from regbench.rules.verdicts import ALPHA, DECIDED, MAX_SEEDS, PILOT, level

RECORD = "seed_auto.json"  # in the sweep folder: the looks, for the sweep's report and a rerun
METHOD = "Bonferroni over the planned looks"


def schedule(max_seeds: int = MAX_SEEDS, pilot: int = PILOT) -> list[int]:
    """Seed counts at which the rule looks: the pilot, then doubling, capped at max_seeds."""
    looks = [pilot]
    while looks[-1] < max_seeds:
        looks.append(min(max_seeds, 2 * looks[-1]))
    return looks


def simulate(diffs: np.ndarray, margin: float, m: int = 1, max_seeds: int | None = None,
             pilot: int = PILOT, step: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Run the rule over sequences diffs (S, max_seeds) of one comparison's paired differences
    (with m comparisons in its family; step: the metric's step, 1/N for an accuracy on N examples):
    (decision at the stop, seeds used) per sequence."""
    looks = schedule(max_seeds or diffs.shape[1], pilot)
    at = level(m, len(looks))
    final = np.full(len(diffs), "", dtype=object)
    used = np.zeros(len(diffs), dtype=int)
    open_ = np.ones(len(diffs), dtype=bool)
    for n in looks:
        got = stats.paired(diffs[:, :n], step).decide(at, margin)
        stop = open_ & (np.isin(got, DECIDED) | (n == looks[-1]))
        final[stop], used[stop] = got[stop], n
        open_ &= ~stop
    return final, used


@dataclass
class Record:
    """What a seed=auto sweep wrote about its looks (RECORD in the sweep folder)."""

    pilot: int
    max_seeds: int
    looks_planned: int  # K: the Bonferroni factor over looks
    seeds: int = 0  # seeds per cell so far
    undecided: int = -1  # comparisons still undecided after the last look (-1: not looked yet)
    reason: str = ""  # "all decided" / "seed budget reached: 2 undecided"
    method: str = METHOD
    alpha: float = ALPHA

    def save(self, sweep_dir: Path) -> None:
        from regbench.core.files import atomic_write_text

        atomic_write_text(Path(sweep_dir) / RECORD, json.dumps(asdict(self), indent=1))


def read_record(paths, runs=()) -> Record | None:
    """The seed=auto record that governs a report: RECORD in a given folder or in the sweep folder
    (the parent) of any of its runs, so a report of a folder above the sweep finds it too. Where the
    runs come from several seed=auto sweeps, the one planning the most looks: the widest intervals, so
    no verdict claims more than its most-looked-at runs allow. None: no run is from a seed=auto sweep."""
    folders = dict.fromkeys([*(Path(p) for p in paths), *(Path(run.path).parent for run in runs)])
    found = []
    for folder in folders:
        file = folder / RECORD
        if file.is_file():
            try:
                found.append(Record(**json.loads(file.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # a damaged record: the others (or none) decide
    return max(found, key=lambda record: record.looks_planned, default=None)


def stop_reason(undecided: int, seeds: int, max_seeds: int) -> str | None:
    """Why the sweep stops after a look, or None to go on."""
    if undecided == 0:
        return "all decided"
    if seeds >= max_seeds:
        return f"seed budget reached: {undecided} undecided"
    return None
