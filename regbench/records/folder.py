"""Reading a run folder back: what its files say, read the same way by resume and by the report.

`read(path)` is the one reading of a run folder (docs/architecture.md, "The run folder"), and
`RunFolder.finished` the one definition of a finished run: its summary.json says `completed` or
`diverged`, no later run superseded it, and every file the report reads can be read in full
(`damage` is None):

- config.yaml is there and is a YAML mapping;
- summary.json is a JSON object with a status;
- metrics.csv has its header and whole rows of numbers, and as many epochs as the summary says it trained.

A damaged finished run is therefore not finished: resume trains its config again and marks the folder
superseded (`earlier_outcome`, `mark_superseded`), and the report names it instead of counting it
(report/collect.py). Damage to the end of metrics.csv that a killed writer leaves (a cut or malformed
last line) costs that line only, as a caveat in `issues`, unless the run says it finished.

Without summary.json the status comes from the folder's markers and the run index (`unfinished`):
`running` while its process lives; `failed` (or `interrupted`) when the run ended so but could not
write summary.json, as its `.failed` marker or, where the folder itself became read-only, its
entry in the run index of results_dir says; `killed` when nothing says how it ended. A run whose
folder and results_dir both became unwritable leaves no trace of its end: it reads as `killed`
(the terminal had the one-line cause).

May import: results (file names, markers, the index), core. No torch, no pandas: the report and the
engine both read through here.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from regbench.core.errors import MachineFailure
from regbench.core.files import write_json
from regbench.records.index import FAILED, INDEX, RUNNING, alive
from regbench.records.results import METRIC_COLUMNS, probe_folder

log = logging.getLogger("regbench")

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
RESULT_FILES = frozenset({METRICS_FILE, SUMMARY_FILE})
# With config.yaml, any of these makes a folder a run: a run killed before metrics.csv was opened
# still has its process marker, and is a run of status killed, not a stray folder.
RUN_MARKERS = RESULT_FILES | {RUNNING, FAILED}
REQUIRED_COLUMNS = tuple(METRIC_COLUMNS[: METRIC_COLUMNS.index("seconds") + 1])  # epoch ... seconds
FINISHED = frozenset({"completed", "diverged"})  # what resume reuses, when the folder is read in full
# Texts a CSV reader (pandas) takes for a missing number; a number column may hold them (a diverged run's nan)
NA_TEXT = frozenset({"", "nan", "NaN", "-nan", "-NaN", "NA", "N/A", "n/a", "NULL", "null", "None", "<NA>"})
MAX_REASON_CHARS = 160  # keep reasons to one readable line
# libyaml's safe loader where PyYAML was built with it: the same documents, ~10x faster than the pure-Python one
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Damaged(Exception):
    """A file of a run cannot be read in full; the message is the one-line reason, naming the file."""


def one_line(text: object) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"


@dataclass
class RunFolder:
    path: Path
    config: dict[str, Any] | None  # None: missing or damaged
    summary: dict[str, Any] | None  # None: the run wrote none (yet), or it is damaged
    metrics: list[str]  # metrics.csv's whole lines, header first, damaged last lines dropped ([]: no file)
    status: str  # the summary's; without one: running | failed | interrupted | killed (unfinished())
    error: str | None = None  # why it failed, where the summary could not say it (the run index)
    issues: list[str] = field(default_factory=list)  # caveats that cost a line, not the run
    damage: str | None = None  # why it cannot be read in full (the first damaged file, one line)

    @property
    def superseded_by(self) -> str | None:
        return (self.summary or {}).get("superseded_by") or None

    @property
    def finished(self) -> bool:
        """The one definition (resume reuses it, the report counts it): see the module docstring."""
        return self.damage is None and self.status in FINISHED and not self.superseded_by


def read(path: Path) -> RunFolder:
    """Everything a run folder says, never raising on a bad file (its reason goes to `damage`)."""
    path = Path(path)
    damage: list[str] = []
    config = summary = None
    lines: list[str] = []
    issues: list[str] = []
    present = {name for name in (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE) if (path / name).is_file()}
    if CONFIG_FILE in present:
        config = _attempt(damage, read_config, path / CONFIG_FILE)
    else:
        found = " and ".join(sorted(present & RESULT_FILES))
        damage.append(f"has {found} but no {CONFIG_FILE}" if found else f"no {CONFIG_FILE}, {METRICS_FILE} or "
                      f"{SUMMARY_FILE}")
    if SUMMARY_FILE in present:
        summary = _attempt(damage, read_summary, path / SUMMARY_FILE)
    if METRICS_FILE in present:
        lines, issues = _attempt(damage, read_metrics, path / METRICS_FILE) or ([], [])
    error = None
    if summary is not None:
        status = summary["status"]
        epochs = summary.get("epochs_completed")
        if status in FINISHED and not damage and isinstance(epochs, int) and epochs > 0:
            rows = epochs_in(lines)
            if rows < epochs:
                damage.append(f"{METRICS_FILE} holds {rows} of the {epochs} epochs in {SUMMARY_FILE}"
                              + (f" ({issues[-1]})" if issues else ""))
    else:
        status, error = unfinished(path)
        if status in FINISHED:  # the index saw it end so, and its summary.json is gone
            damage.append(f"no {SUMMARY_FILE}, though the run index says the run {status}")
    return RunFolder(path, config, summary, lines, status, error, issues, damage[0] if damage else None)


def epochs_in(lines: list[str]) -> int:
    """The epochs metrics.csv's lines hold (an epoch written twice, by a resumed run, counts once)."""
    if not lines:
        return 0
    rows = csv.reader(lines)
    epoch = next(rows).index("epoch")
    return len({row[epoch] for row in rows if row})


def _attempt(damage: list[str], reader, path: Path):
    try:
        return reader(path)
    except Damaged as exc:
        damage.append(one_line(exc))
        return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Damaged(f"{path.name}: cannot read ({exc.__class__.__name__}: {exc})") from exc


def read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.load(_read_text(path), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise Damaged(f"{path.name}: invalid YAML{where} ({getattr(exc, 'problem', None) or exc})") from exc
    if not isinstance(config, dict):
        raise Damaged(f"{path.name}: expected a mapping of config keys, found {type(config).__name__}")
    return config


def read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise Damaged(f"{path.name}: invalid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from exc
    if not isinstance(summary, dict):
        raise Damaged(f"{path.name}: expected a JSON object, found {type(summary).__name__}")
    if not isinstance(summary.get("status"), str):
        raise Damaged(f"{path.name}: no status")
    return summary


def _number(text: str) -> bool:
    if text.strip() in NA_TEXT:
        return True
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_metrics(path: Path) -> tuple[list[str], list[str]]:
    """metrics.csv's whole lines (header first) and the caveats; Damaged where a row in the middle is broken.

    The writer appends whole rows (results.MetricsWriter), so only the last line can be cut or malformed by a
    writer that died or a stray append: it is dropped with a caveat. Anything else is damage."""
    name = path.name
    lines = _read_text(path).splitlines(keepends=True)
    issues: list[str] = []
    if not lines:
        raise Damaged(f"{name}: empty file (no header)")
    if not lines[-1].endswith("\n"):  # every whole line ends with a newline
        lines.pop()
        issues.append(f"{name}: dropped an incomplete last line")
        if not lines:
            raise Damaged(f"{name}: the header line is incomplete")
    rows = list(csv.reader(lines))  # one row per line: the writer writes no quoted line breaks
    header = rows[0]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise Damaged(f"{name}: missing column(s) {', '.join(missing)}")
    at = [header.index(c) for c in REQUIRED_COLUMNS]
    last = max(number for number, row in enumerate(rows, start=1) if row)
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue  # a blank line holds no row
        if len(row) != len(header):
            problem = f"line {number}: {len(row)} fields, the header has {len(header)}"
            damaged = f"{name}: line {number} has {len(row)} fields, the header has {len(header)}"
        elif not all(_number(row[i]) for i in at):
            column = next(c for c, i in zip(REQUIRED_COLUMNS, at, strict=True) if not _number(row[i]))
            problem, damaged = "text in a numeric column", f"{name}: non-numeric values in column {column}"
        elif row[at[0]].strip() in NA_TEXT:
            problem, damaged = "no epoch number", f"{name}: a row has no epoch number"
        else:
            continue
        if number != last:
            raise Damaged(damaged)
        del lines[number - 1]  # the last line: it costs that line
        issues.append(f"{name}: dropped a malformed last line ({problem})")
    return lines, issues


# ---------------------------------------------------------------------------- without summary.json


def unfinished(run_dir: Path) -> tuple[str, str | None]:
    """(status, error) of a run folder without summary.json: `running` while its process lives; how the
    run ended where summary.json could not be written (its .failed marker, else its run-index entry);
    else `killed`."""
    ended = index_entry(run_dir)
    error = ended.get("error") if ended else None
    if (run_dir / FAILED).exists():
        return "failed", error
    if alive(run_dir):
        return "running", None
    if ended and ended.get("status") not in (None, "running"):
        return str(ended["status"]), error
    return "killed", None


def unfinished_status(run_dir: Path) -> str:
    return unfinished(run_dir)[0]


def index_entry(run_dir: Path) -> dict | None:
    """The run index's last entry for this folder: the index of results_dir, the folder's parent or,
    in a sweep, its grandparent. None where there is none (a folder copied elsewhere)."""
    run_dir = Path(run_dir).absolute()
    for root in (run_dir.parent, run_dir.parent.parent):
        entry = read_index(root).last.get(os.path.relpath(run_dir, root))
        if entry is not None:
            return entry
    return None


@dataclass(frozen=True)
class Index:
    last: dict[str, dict]  # run_dir (relative to results_dir) -> its last entry
    by_hash: dict[str, list[str]]  # config hash -> its run folders, oldest first


def read_index(results_dir: Path | str) -> Index:
    """The run index of results_dir, parsed once while it does not change (resume asks for every cell)."""
    path = Path(results_dir) / INDEX
    try:
        st = path.stat()
    except OSError:
        return Index({}, {})
    return _parse_index(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _parse_index(path: str, mtime_ns: int, size: int) -> Index:
    last: dict[str, dict] = {}
    by_hash: dict[str, list[str]] = {}
    try:  # a damaged line (a torn write of an older version, bytes from elsewhere) costs that line only
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return Index({}, {})
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        rel = entry.get("run_dir") if isinstance(entry, dict) else None
        if not isinstance(rel, str):
            continue
        last[rel] = entry
        folders = by_hash.setdefault(str(entry.get("config_hash")), [])
        if rel not in folders:
            folders.append(rel)
    return Index(last, by_hash)


# ---------------------------------------------------------------------------- resume


def previous_runs(results_dir: str, cfg_hash: str, sweep_name: str | None = None) -> list[RunFolder]:
    """Earlier runs of this exact config under results_dir, oldest first, not yet superseded.

    With a sweep_name only runs inside that sweep's folder count: a sweep must end up holding
    every one of its cells (its report reads that folder), so a cell another sweep already
    trained is trained again here. A single run matches anywhere under results_dir.
    The index only points the way: each folder is read (`read`) for what it says.
    """
    root = Path(results_dir)
    found = []
    for rel in read_index(root).by_hash.get(cfg_hash, []):
        if sweep_name is not None and Path(rel).parts[:1] != (sweep_name,):
            continue
        if not (root / rel).is_dir():
            continue
        run = read(root / rel)
        if run.summary is not None and run.summary.get("config_hash") not in (None, cfg_hash):
            continue  # the folder holds another config now (copied over by hand)
        if not run.superseded_by:
            found.append(run)
    return found


def earlier_outcome(cfg, cfg_hash: str) -> tuple[dict | None, list[Path]]:
    """What resume does with a config: (the summary of the newest finished run to reuse, with its run_dir, or
    None to train; the earlier folders the reused or the new run replaces: every one that is not finished,
    whatever its status, damaged ones included, but not one whose process still runs).

    Raises MachineFailure (one line, exit 1) when one of those folders cannot be written: it could not be
    marked superseded, so nothing is trained."""
    earlier = [run for run in previous_runs(cfg.results_dir, cfg_hash, cfg.get("sweep_name"))
               if run.status != "running"]
    kept = next((run for run in reversed(earlier) if run.finished), None)
    replaced = [run.path for run in earlier if not run.finished]
    for path in replaced:
        check_folder(path)
    if kept is None:
        return None, replaced
    # debug: the run's own line (console.run_done) or the sweep's one resume line says it
    log.debug("skipped: this config already %s in %s (resume=false trains it again)", kept.status, kept.path)
    return {**kept.summary, "run_dir": str(kept.path), "skipped": True}, replaced


def check_folder(path: Path) -> None:
    """A folder resume will mark superseded must be writable (tried: a probe folder in it, summary.json
    openable), else one line naming it (MachineFailure, exit 1) before anything trains."""
    try:
        probe_folder(path)
        if (path / SUMMARY_FILE).is_file() and not os.access(path / SUMMARY_FILE, os.W_OK):
            raise PermissionError(1, "Operation not permitted", str(path / SUMMARY_FILE))
    except OSError as exc:
        raise MachineFailure(f"cannot write {exc.filename}: {exc.strerror or exc} (errno {exc.errno}); resume "
                             f"marks this earlier run superseded before training its config again") from None


def mark_superseded(run_dir: Path, by: str) -> None:
    """An earlier run that was not finished (interrupted, failed, killed, damaged) points to its replacement;
    its own status stays in summary.json (a damaged one: the damage too, and what could be read of it)."""
    run = read(run_dir)
    summary = dict(run.summary) if run.summary is not None else {"status": run.status}
    if run.summary is None and run.error:
        summary["error"] = run.error
    if run.damage:
        summary["damage"] = run.damage
    summary["superseded_by"] = by
    write_json(Path(run_dir) / SUMMARY_FILE, summary)
    with contextlib.suppress(OSError):  # the marker of its dead process: summary.json says it all now
        (Path(run_dir) / RUNNING).unlink(missing_ok=True)
