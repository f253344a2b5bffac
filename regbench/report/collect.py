"""Find run folders below the given paths and load them without ever raising on a bad file.

A run folder holds `config.yaml` plus `metrics.csv` and/or `summary.json` (docs/architecture.md, "The run folder").
Every problem with a folder becomes either a `Skipped` reason (the run cannot be used) or
a run `issue` (the run is used, with a caveat), so one broken run never stops a report.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from regbench.records.results import FAILED, RUNNING, unfinished_status

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
RESULT_FILES = frozenset({METRICS_FILE, SUMMARY_FILE})  # a folder with one of these but no config.yaml: an orphan
# With config.yaml, any of these makes a folder a run: a run killed before metrics.csv was opened
# still has its process marker (results.py), and is a run of status killed, not a stray folder.
RUN_MARKERS = RESULT_FILES | {RUNNING, FAILED}
REQUIRED_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "gap_loss", "gap_acc", "lr", "seconds")
MAX_REASON_CHARS = 160  # keep reasons to one readable line in the report
# libyaml's safe loader where PyYAML was built with it: the same documents, ~10x faster than the pure-Python one
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Skipped:
    """A folder that looked like a run but could not be used, and why (one line)."""

    path: str
    reason: str


@dataclass
class Run:
    path: str
    config: dict[str, Any]  # nested, exactly as written
    summary: dict[str, Any] | None  # None while the run is in progress, or when it was killed
    metrics: pd.DataFrame  # one row per finished epoch, sorted by epoch; may be empty
    issues: list[str] = field(default_factory=list)  # caveats shown next to the run in the report
    status: str | None = None  # without summary.json: running | killed | failed (from the run's markers)


class BadFile(Exception):
    """A file of a run cannot be read; the message is the one-line reason."""


def one_line(text: object) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"


# ---------------------------------------------------------------------------- scanning


def scan(root: Path) -> tuple[list[Path], list[Skipped]]:
    """Run folders at any depth below `root` (root included), plus orphaned result files.

    A run's own subfolders (.hydra, checkpoints) hold no runs, so we do not descend into
    them; hidden folders are skipped for the same reason. Folders are sorted so that
    reports are reproducible.
    """
    runs: list[Path] = []
    orphans: list[Skipped] = []
    for here, subdirs, files in os.walk(root):
        names = set(files)
        if names & RUN_MARKERS and CONFIG_FILE in names:
            runs.append(Path(here))
            subdirs.clear()
            continue
        if names & RESULT_FILES:
            found = " and ".join(sorted(names & RESULT_FILES))
            orphans.append(Skipped(here, f"has {found} but no {CONFIG_FILE}"))
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    return runs, orphans


# ---------------------------------------------------------------------------- loading


def load_run(folder: Path) -> Run | Skipped:
    try:
        config = _read_config(folder / CONFIG_FILE)
        summary_path, metrics_path = folder / SUMMARY_FILE, folder / METRICS_FILE
        summary = _read_summary(summary_path) if summary_path.exists() else None
        metrics, issues = _read_metrics(metrics_path) if metrics_path.exists() else (_empty_metrics(), [])
    except BadFile as exc:
        return Skipped(str(folder), one_line(exc))
    status = None
    if summary is None:
        # results.py's markers say whether the training process still lives (pid + start time) or
        # failed without being able to write summary.json; a hint, not the contract.
        status = unfinished_status(folder)
        issues.append({"running": "in progress",
                       "failed": "failed before summary.json could be written (disk full or read-only?)",
                       "killed": "no summary.json and its process is gone: it was killed"}[status])
        if metrics.empty:
            issues.append("no finished epoch yet")
    return Run(str(folder), config, summary, metrics, issues, status)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadFile(f"{path.name}: cannot read ({exc.__class__.__name__}: {exc})") from exc


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.load(_read_text(path), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadFile(f"{path.name}: invalid YAML{where} ({getattr(exc, 'problem', None) or exc})") from exc
    if not isinstance(config, dict):
        raise BadFile(f"{path.name}: expected a mapping of config keys, found {type(config).__name__}")
    return config


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise BadFile(f"{path.name}: invalid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from exc
    if not isinstance(summary, dict):
        raise BadFile(f"{path.name}: expected a JSON object, found {type(summary).__name__}")
    return summary


def _empty_metrics() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=float) for c in REQUIRED_COLUMNS})


def _read_metrics(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Parse metrics.csv; a partial last line (the writer died mid-line) is dropped, not fatal."""
    text = _read_text(path)
    issues: list[str] = []
    lines = text.splitlines(keepends=True)
    if not lines:
        raise BadFile(f"{path.name}: empty file (no header)")
    # Every complete line ends with a newline; a last line without one was cut short.
    if not lines[-1].endswith("\n"):
        lines.pop()
        issues.append(f"{path.name}: dropped an incomplete last line")
        if not lines:
            raise BadFile(f"{path.name}: the header line is incomplete")
    # pandas pads a short row with NaN silently; a row of the wrong width is corruption. A malformed
    # *last* line (a writer that died, a stray append) costs that line only, with a caveat.
    widths = [(number, len(row)) for number, row in enumerate(csv.reader(lines), start=1) if row]
    bad = [(number, width) for number, width in widths if width != widths[0][1]]
    if bad and bad[0][0] == len(lines) > 1 and len(bad) == 1:
        lines.pop()
        issues.append(f"{path.name}: dropped a malformed last line (line {bad[0][0]}: {bad[0][1]} fields, "
                      f"the header has {widths[0][1]})")
        bad = []
    if bad:
        raise BadFile(f"{path.name}: line {bad[0][0]} has {bad[0][1]} fields, the header has {widths[0][1]}")
    try:
        frame = pd.read_csv(io.StringIO("".join(lines)))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise BadFile(f"{path.name}: cannot parse ({one_line(exc)})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BadFile(f"{path.name}: missing column(s) {', '.join(missing)}")
    if frame.empty:  # the header only: the run ended (or is) before its first epoch; pandas types it as text
        return frame.astype(float), issues
    # nan/inf are legitimate (a diverged run); text in a numeric column is corruption.
    not_numeric = [c for c in REQUIRED_COLUMNS if not pd.api.types.is_numeric_dtype(frame[c])]
    if not_numeric and len(frame) > 1:  # only the last row holds the text? then it costs that row
        head = pd.read_csv(io.StringIO("".join(lines[:-1])))
        if all(pd.api.types.is_numeric_dtype(head[c]) for c in REQUIRED_COLUMNS):
            frame, not_numeric = head, []
            issues.append(f"{path.name}: dropped a malformed last line (text in a numeric column)")
    if not_numeric:
        raise BadFile(f"{path.name}: non-numeric values in column {not_numeric[0]}")
    if frame["epoch"].isna().any():
        raise BadFile(f"{path.name}: a row has no epoch number")
    if frame["epoch"].duplicated().any():
        # A resumed run may rewrite epochs; the latest write of an epoch wins.
        frame = frame.drop_duplicates("epoch", keep="last")
        issues.append(f"{path.name}: repeated epochs, kept the last of each")
    return frame.sort_values("epoch", ignore_index=True), issues
