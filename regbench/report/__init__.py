"""`regbench report PATH… [--out DIR] [--format png,svg,pdf]`: tables, figures and a report from run folders.

Reads only the run-folder contract (docs/architecture.md, "The run folder"): config.yaml, metrics.csv, summary.json,
at any depth below the given paths. Data flows one way:

    collect (scan + load) -> table/grid (tidy pandas) -> paired (every group vs its baseline,
    statistics from stats.py) -> figures -> content (+ content_compare) -> render (md + html)

`regbench compare` (compare.py) reuses collect, table and stats for two folders of runs.

Bad runs are skipped with a reason rather than stopping the report; only "nothing could
be reported" is an error (ConfigError: one line on stderr, exit 2).

May import: records (the run-folder contract), rules, the catalogue (plugin dropout types only), core;
never engine (a report imports no torch), sweeps, cli or api.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from regbench.core.errors import ConfigError, MachineFailure, machine_failure
from regbench.report.collect import METRICS_FILE, Run, Skipped, load_run, scan
from regbench.report.drawing import FIGURES, draw_all
from regbench.rules.config import DEFAULT_REPORT_FORMATS, REPORT_FORMATS

# The grid (scipy), the figures (matplotlib) and the text are imported in build_report: reading runs
# (regbench.load_runs, `regbench report --help`) does not pay for them.

__all__ = ["ReportResult", "Skipped", "build_report", "main", "read_runs"]

FORMATS = REPORT_FORMATS  # the schema's list, which also checks the sweep report's `report_format`
DEFAULT_FORMATS = DEFAULT_REPORT_FORMATS


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
    formats: Iterable[str] = DEFAULT_FORMATS,
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


@contextlib.contextmanager
def staging(out: Path, what: str = "the report"):
    """Write the report (or `what` else) into a hidden folder next to `out`, then rename each file into `out`.

    A full disk or a read-only folder therefore never leaves a 0-byte or half-written report.md
    or PNG in place of the previous one (rename is atomic and needs no space); the error is a
    MachineFailure naming the path and the cause (exit 1); any other failure to write there (`out` is a
    file, or below one) is the user's input (ConfigError, exit 2).
    """
    stage = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    try:
        stage.mkdir(parents=True)
        yield stage
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(stage.iterdir()):
            os.replace(path, out / path.name)
    except OSError as exc:
        target = out if exc.filename is None or str(stage) in str(exc.filename) else exc.filename
        cause = f"{exc.strerror or exc} (errno {exc.errno})"
        if machine_failure(exc) is None:  # e.g. a file where the folder should be: the user's --out
            raise ConfigError(f"cannot write {what} to {out} ({target}: {cause}); valid: --out a folder, new or "
                              "existing, not a file or below one") from None
        raise MachineFailure(f"cannot write {what} to {target}: {cause}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def terminal_notes(result: ReportResult) -> list[str]:
    """One line per damaged folder left out (not one a rerun has replaced already) and per run read with a
    damaged metrics.csv line, for the terminal."""
    lines = [f"warning: {s.path}: damaged, not counted: {s.reason}" for s in result.skipped if not s.superseded_by]
    for path, issues in zip(result.table["path"], result.table["issues"].fillna(""), strict=True):
        lines += [f"warning: {path}: {issue}" for issue in str(issues).split("; ") if METRICS_FILE in issue]
    return lines


def _formats(text: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"--format {text!r} is not valid; valid: a comma-separated list of {', '.join(FORMATS)}")
    return formats


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + error on 2 lines; the CLI promises one
        raise ConfigError(f"{message}; usage: regbench report PATH... [--out DIR] [--format png,svg] [--margin D]")


def parser() -> argparse.ArgumentParser:
    ap = _OneLineParser(
        prog="regbench report",
        description="Aggregate run folders (at any depth below PATH) into tables, figures and report.md/.html.",
    )
    ap.add_argument("paths", nargs="+", metavar="PATH", help="folders holding run folders, or run folders")
    ap.add_argument("--out", type=Path, help="output folder (default: PATH/report for one PATH, else ./report)")
    ap.add_argument(
        "--format",
        default=",".join(DEFAULT_FORMATS),
        help=f"figure formats, comma-separated, from {','.join(FORMATS)} (PNG is always written: the "
        "report embeds it; each other format draws every figure again); default %(default)s",
    )
    ap.add_argument("--figures", help=f"only these figures, comma-separated, from {','.join(FIGURES)}")
    ap.add_argument("--margin", help="equivalence margins δ in the metrics' own units: 0.02 (the headline metric; "
                    "0.02 = 2 pp of accuracy) or METRIC=VALUE,... (default: 1 pp for accuracies and ECE, 0.02 nats "
                    "for losses and NLL)")
    return ap


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except ConfigError as exc:
        print(f"regbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    out = args.out or (Path(args.paths[0]) / "report" if len(args.paths) == 1 else Path("report"))
    try:
        only = None if args.figures is None else [f.strip() for f in args.figures.split(",") if f.strip()]
        unknown = sorted(set(only or []) - set(FIGURES))
        if unknown:
            raise ConfigError(f"--figures {unknown[0]!r} is not valid; valid: {', '.join(FIGURES)}")
        result = build_report(args.paths, out, formats=_formats(args.format), figures=only, margin=args.margin)
    except (ConfigError, MachineFailure) as exc:
        print(f"regbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    statuses = ", ".join(f"{s} {n}" for s, n in result.table["status"].value_counts().items())
    for line in terminal_notes(result):
        print(line, file=sys.stderr)
    print(f"Report written to {result.html} and {result.markdown}")
    print(
        f"{len(result.table)} runs read ({statuses}), {len(result.skipped)} skipped; "
        f"{len(result.groups)} groups, {len(result.figures)} figures; tables in {out / 'runs.csv'} and "
        f"{out / 'groups.csv'}"
    )
    return 0
