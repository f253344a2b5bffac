"""Find run folders below the given paths and load them without ever raising on a bad file.

A run folder holds `config.yaml` plus `metrics.csv` and/or `summary.json` (docs/architecture.md, "The run folder").
Each is read by records/folder.py, the reading resume uses too: a folder it finds damaged (a file that
cannot be read in full) becomes a `Skipped` reason here (the run is not counted, and resume trains its config
again); a caveat that costs a line, not the run, becomes a run `issue`. One broken run never stops a report.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from regbench.records.folder import (
    CONFIG_FILE,
    METRICS_FILE,
    REQUIRED_COLUMNS,
    RESULT_FILES,
    RUN_MARKERS,
    SUMMARY_FILE,
    one_line,
    read,
)

__all__ = ["CONFIG_FILE", "METRICS_FILE", "REQUIRED_COLUMNS", "SUMMARY_FILE", "Run", "Skipped", "load_run", "scan"]


@dataclass(frozen=True)
class Skipped:
    """A folder that looked like a run but could not be used, and why (one line)."""

    path: str
    reason: str
    superseded_by: str | None = None  # a damaged run that a rerun replaced already: listed, not warned about


@dataclass
class Run:
    path: str
    config: dict[str, Any]  # nested, exactly as written
    summary: dict[str, Any] | None  # None while the run is in progress, or when it was killed
    metrics: pd.DataFrame  # one row per finished epoch, sorted by epoch; may be empty
    issues: list[str] = field(default_factory=list)  # caveats shown next to the run in the report
    status: str | None = None  # without summary.json: running | killed | failed | interrupted (records/folder.py)


# ---------------------------------------------------------------------------- scanning


def scan(root: Path) -> list[Path]:
    """Run folders at any depth below `root` (root included): a config.yaml with a result file or a process
    marker, or result files without a config.yaml (a damaged run: load_run says so).

    A run's own subfolders (.hydra, checkpoints) hold no runs, so we do not descend into
    them; hidden folders are skipped for the same reason. Folders are sorted so that
    reports are reproducible.
    """
    runs: list[Path] = []
    for here, subdirs, files in os.walk(root):
        names = set(files)
        if names & RUN_MARKERS and CONFIG_FILE in names:
            runs.append(Path(here))
            subdirs.clear()
            continue
        if names & RESULT_FILES:
            runs.append(Path(here))
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    return runs


# ---------------------------------------------------------------------------- loading

# Without summary.json: what the run's status means, as a caveat next to it
UNFINISHED_ISSUES = {
    "running": "in progress",
    "killed": "no summary.json and its process is gone: it was killed",
}


def load_run(folder: Path) -> Run | Skipped:
    run = read(folder)
    if run.damage is not None:
        if run.superseded_by:
            return Skipped(str(folder), one_line(f"superseded by {run.superseded_by}; {run.damage}"),
                           run.superseded_by)
        return Skipped(str(folder), run.damage)
    try:
        metrics, issues = _metrics_frame(run.metrics)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        return Skipped(str(folder), f"{METRICS_FILE}: cannot parse ({one_line(exc)})")
    issues = [*run.issues, *issues]
    status = None
    if run.summary is None:
        status = run.status
        cause = f": {run.error}" if run.error else " (disk full or read-only?)"
        issues.append(UNFINISHED_ISSUES.get(status, f"{status} before {SUMMARY_FILE} could be written{cause}"))
        if metrics.empty:
            issues.append("no finished epoch yet")
    return Run(str(folder), run.config, run.summary, metrics, issues, status)


def _metrics_frame(lines: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """metrics.csv's lines (checked whole by records/folder.py) as a frame sorted by epoch."""
    if not lines:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in REQUIRED_COLUMNS}), []
    frame = pd.read_csv(io.StringIO("".join(lines)))
    columns = list(REQUIRED_COLUMNS)
    frame[columns] = frame[columns].apply(pd.to_numeric, errors="coerce")  # numbers or NA (folder.NA_TEXT)
    if frame.empty:  # the header only: the run ended (or is) before its first epoch
        return frame.astype(float), []
    issues = []
    if frame["epoch"].duplicated().any():
        # A resumed run may rewrite epochs; the latest write of an epoch wins.
        frame = frame.drop_duplicates("epoch", keep="last")
        issues.append(f"{METRICS_FILE}: repeated epochs, kept the last of each")
    return frame.sort_values("epoch", ignore_index=True), issues
