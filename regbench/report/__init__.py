"""Tables, figures and a report from run folders (`regbench report`: its command line is cli/report_commands.py).

Reads only the run-folder contract (docs/architecture.md, "The run folder"): config.yaml, metrics.csv, summary.json,
at any depth below the given paths. Data flows one way:

    collect (scan + load) -> table/grid (tidy pandas) -> paired (every group vs its baseline,
    statistics from stats.py) -> figures -> content (+ content_compare) -> render (md + html)

`regbench compare` (compare.py) reuses collect, table and stats for two folders of runs; staging.py writes
a report's or a comparison's files whole or not at all.

Bad runs are skipped with a reason rather than stopping the report; only "nothing could
be reported" is an error (ConfigError: one line on stderr, exit 2).

May import: records (the run-folder contract), rules, the catalogue (plugin dropout types only), core;
never engine (a report imports no torch), sweeps, cli or api.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from regbench.core.errors import ConfigError
from regbench.report.collect import METRICS_FILE, Run, Skipped, load_run, scan
from regbench.report.drawing import FIGURES, draw_all
from regbench.report.staging import staging
from regbench.rules.config import DEFAULT_REPORT_FORMATS

# The grid (scipy), the figures (matplotlib) and the text are imported in build_report: reading runs
# (regbench.load_runs, `regbench report --help`) does not pay for them.

__all__ = ["ReportResult", "Skipped", "build_report", "read_runs", "terminal_notes"]



@dataclass
class ReportResult:
    table: pd.DataFrame  # one row per run read (also runs.csv)
    groups: pd.DataFrame  # one row per configuration group, seeds aggregated (also groups.csv)
    varied: list[str]  # config keys that differ across runs (seed and run-only keys excluded)
    skipped: list[Skipped]  # folders that could not be read, with the reason
    figures: dict[str, Path]  # figure name -> PNG written
    figures_skipped: dict[str, str]  # figure name -> why the data does not support it
    markdown: Path
    html: Path
    notes: list[str] = field(default_factory=list)  # caveats shown at the top of the report


def read_runs(paths: Sequence[Path]) -> tuple[list[Run], list[Skipped]]:
    """Every run folder below `paths` (each read once), and the folders skipped with a reason.

    Raises ConfigError (one line) for a missing path, or when no run can be read at all.
    """
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"path does not exist: {missing[0]}; valid: an existing folder of run folders")
    files = [str(p) for p in paths if not p.is_dir()]
    if files:
        raise ConfigError(f"{files[0]} is a file, not a folder; valid: a folder of run folders, or a run folder")
    folders: dict[Path, Path] = {}  # resolved -> as found; overlapping PATHs read a run once
    skipped: list[Skipped] = []
    for path in paths:
        folders |= {f.resolve(): f for f in scan(path) if f.resolve() not in folders}
    loaded = [load_run(folder) for folder in folders.values()]
    runs = [r for r in loaded if isinstance(r, Run)]
    skipped += [r for r in loaded if isinstance(r, Skipped)]
    where = ", ".join(map(str, paths))
    if not runs and skipped:
        first = skipped[0]
        raise ConfigError(
            f"no readable runs under {where}: {len(skipped)} folder(s) skipped, e.g. {first.path}: {first.reason}"
        )
    if not runs:
        raise ConfigError(f"no runs found under {where}; valid: a folder holding run folders "
                          "(config.yaml with metrics.csv or summary.json)")
    return runs, skipped


def build_report(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    *,
    formats: Iterable[str] = DEFAULT_REPORT_FORMATS,
    figures: Iterable[str] | None = None,
    margin: str | None = None,
) -> ReportResult:
    """Read every run below `paths` and write runs.csv, groups.csv, figures, report.md and report.html.

    `figures` limits which figures are drawn (names as in FIGURES; None = all the data supports).
    `margin`: the equivalence margins (`--margin`, regbench/rules/verdicts.py parse_margins); None: the
    runs' `margin` config key, else the defaults.
    Raises ConfigError when nothing can be reported (no path, no runs, no readable run).
    """
    roots = [Path(p) for p in paths]
    if not roots:
        raise ConfigError("no PATH given; valid: one or more folders holding run folders")
    runs, skipped = read_runs(roots)
    out = Path(out_dir)
    wanted = FIGURES if figures is None else [name for name in FIGURES if name in set(figures)]
    with staging(out) as stage:
        from regbench.report.content import report_blocks
        from regbench.report.content_compare import comparison_section
        from regbench.report.grid import build_grid
        from regbench.report.render import write_report
        from regbench.report.sequential import read_record

        record = read_record(roots, runs)  # a seed=auto sweep: its verdicts account for its planned looks
        grid = build_grid(runs, margin, record)
        grid.runs.to_csv(stage / "runs.csv", index=False)
        grid.groups.to_csv(stage / "groups.csv")
        grid.comparisons.to_csv(stage / "comparisons.csv", index=False)
        written, figures_skipped = {}, {}
        for panel, part in panels(runs).items():  # one set of figures per dataset/model: never overlaid
            drawn, not_drawn = draw_all(grid if len(runs) == len(part) else build_grid(part, margin, record),
                                        stage, formats, wanted, panel=panel)
            written |= drawn
            figures_skipped |= not_drawn
        blocks = report_blocks(grid, skipped, written, figures_skipped, [str(r) for r in roots],
                               comparison=comparison_section(grid))
        write_report(blocks, stage)
    return ReportResult(
        table=grid.runs,
        groups=grid.groups,
        varied=grid.varied,
        skipped=skipped,
        figures={name: out / path.name for name, (path, _) in written.items()},
        figures_skipped=figures_skipped,
        markdown=out / "report.md",
        html=out / "report.html",
        notes=grid.notes,
    )


def panels(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs by dataset and model ('' when all share one): each gets its own figures."""
    def combo(run: Run) -> str:
        return "-".join(str((run.config.get(k) or {}).get("name", "?")) for k in ("dataset", "model"))

    by: dict[str, list[Run]] = {}
    for run in runs:
        by.setdefault(combo(run), []).append(run)
    return by if len(by) > 1 else {"": runs}




def terminal_notes(result: ReportResult) -> list[str]:
    """One line per damaged folder left out (not one a rerun has replaced already) and per run read with a
    damaged metrics.csv line, for the terminal."""
    lines = [f"warning: {s.path}: damaged, not counted: {s.reason}" for s in result.skipped if not s.superseded_by]
    for path, issues in zip(result.table["path"], result.table["issues"].fillna(""), strict=True):
        lines += [f"warning: {path}: {issue}" for issue in str(issues).split("; ") if METRICS_FILE in issue]
    return lines
