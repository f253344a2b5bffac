"""The command lines of `regbench report` and `regbench compare`: arguments in, one line per error out.

What they compute lives in the report package (build_report; compare.compare and compare.write); here
are only their arguments, their --format rule (one for both), and what they print.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from regbench.core.errors import ConfigError, MachineFailure
from regbench.rules.config import DEFAULT_REPORT_FORMATS, REPORT_FORMATS

REPORT_USAGE = "regbench report PATH... [--out DIR] [--format png,svg] [--margin D]"
MARGIN_HELP = ("equivalence margin δ in the metric's own units: 0.02 (0.02 = 2 pp of accuracy) or METRIC=VALUE,... "
               "(default: 1 pp for accuracies and ECE, 0.02 nats for losses and NLL)")


class _OneLineParser(argparse.ArgumentParser):
    def __init__(self, usage_line: str, **kwargs):
        super().__init__(**kwargs)
        self.usage_line = usage_line

    def error(self, message: str):  # argparse prints usage + error on 2 lines; the CLI promises one
        raise ConfigError(f"{message}; usage: {self.usage_line}")


def figure_formats(text: str) -> tuple[str, ...]:
    """--format: a comma-separated list of REPORT_FORMATS (PNG is always written besides)."""
    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in REPORT_FORMATS]
    if unknown or not formats:
        raise ConfigError(f"--format {text!r} is not valid; valid: a comma-separated list of "
                          f"{', '.join(REPORT_FORMATS)}")
    return formats


def add_format(ap: argparse.ArgumentParser, png_why: str) -> None:
    """--format, the same option in report and compare: its default is DEFAULT_REPORT_FORMATS, one declaration."""
    ap.add_argument("--format", default=",".join(DEFAULT_REPORT_FORMATS),
                    help=f"figure formats, comma-separated, from {','.join(REPORT_FORMATS)} (PNG is always written: "
                    f"{png_why}; each other format draws every figure again); default %(default)s")


def _fail(exc: ConfigError | MachineFailure) -> int:
    print(f"regbench: error: {' '.join(str(exc).split())}", file=sys.stderr)
    return exc.exit_code


# ---------------------------------------------------------------------------- regbench report


def report_parser() -> argparse.ArgumentParser:
    from regbench.report.drawing import FIGURES

    ap = _OneLineParser(REPORT_USAGE, prog="regbench report", description=(
        "Aggregate run folders (at any depth below PATH) into tables, figures and report.md/.html."))
    ap.add_argument("paths", nargs="+", metavar="PATH", help="folders holding run folders, or run folders")
    ap.add_argument("--out", type=Path, help="output folder (default: PATH/report for one PATH, else ./report)")
    add_format(ap, "the report embeds it")
    ap.add_argument("--figures", help=f"only these figures, comma-separated, from {','.join(FIGURES)}")
    ap.add_argument("--margin", help=MARGIN_HELP.replace("the metric's", "the metrics'"))
    return ap


def report_main(argv: list[str] | None = None) -> int:
    from regbench.report import build_report, terminal_notes
    from regbench.report.drawing import FIGURES

    try:
        args = report_parser().parse_args(argv)
        out = args.out or (Path(args.paths[0]) / "report" if len(args.paths) == 1 else Path("report"))
        only = None if args.figures is None else [f.strip() for f in args.figures.split(",") if f.strip()]
        unknown = sorted(set(only or []) - set(FIGURES))
        if unknown:
            raise ConfigError(f"--figures {unknown[0]!r} is not valid; valid: {', '.join(FIGURES)}")
        result = build_report(args.paths, out, formats=figure_formats(args.format), figures=only, margin=args.margin)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except (ConfigError, MachineFailure) as exc:
        return _fail(exc)
    statuses = ", ".join(f"{s} {n}" for s, n in result.table["status"].value_counts().items())
    for line in terminal_notes(result):
        print(line, file=sys.stderr)
    print(f"Report written to {result.html} and {result.markdown}")
    print(f"{len(result.table)} runs read ({statuses}), {len(result.skipped)} skipped; "
          f"{len(result.groups)} groups, {len(result.figures)} figures; tables in {out / 'runs.csv'} and "
          f"{out / 'groups.csv'}")
    return 0


# ---------------------------------------------------------------------------- regbench compare


def compare_parser() -> argparse.ArgumentParser:
    from regbench.report import compare

    ap = _OneLineParser(compare.USAGE, prog="regbench compare", description=compare.__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", metavar="FOLDER", help="A B (two folders of runs), or A with --where")
    # action="append": a second --where is seen and refused (compare_main), not silently replaced by the last
    ap.add_argument("--where", metavar="KEY=VALUE", action="append",
                    help="split one folder on one key (one --where): runs with KEY=VALUE are the reference, every "
                    "other value of KEY is compared with them")
    ap.add_argument("--metric", help="metric column of runs.csv to compare (default: test.acc, else final.val_acc)")
    ap.add_argument("--margin", help=MARGIN_HELP)
    ap.add_argument("--out", type=Path, help="output folder (default: A/compare with --where, else ./compare)")
    add_format(ap, "compare.png")
    return ap


def _one_where(given: list[str] | None) -> str | None:
    """The --where condition: compare splits one folder on ONE key (A: its runs with KEY=VALUE, B: every other
    value of KEY), so a second --where has no meaning there; refused, naming each, never one dropped."""
    if given is None or len(given) == 1:
        return None if given is None else given[0]
    times = "twice" if len(given) == 2 else f"{len(given)} times"
    named = " and ".join(", ".join(f"--where {w}" for w in given).rsplit(", ", 1))
    raise ConfigError(f"--where is given {times} ({named}); compare splits one folder on one key (A: its runs with "
                      "KEY=VALUE, B: each other value of KEY); valid: one --where KEY=VALUE (the other keys that vary "
                      "are matched; for another split run compare again)")


def compare_main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from regbench.report import compare
    from regbench.rules import verdicts

    try:
        args = compare_parser().parse_args(argv)
        formats = list(figure_formats(args.format))
        paths = [Path(p) for p in args.paths]
        result = compare.compare(paths, _one_where(args.where), args.metric, args.margin)
        out = args.out or (paths[0] / "compare" if len(paths) == 1 else Path("compare"))
        written = compare.write(result, out, formats)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except (ConfigError, MachineFailure) as exc:
        return _fail(exc)
    print(f"{result.reference}; B changes: {result.changed}; metric: {result.metric}")
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(compare.display_frame(result).to_string(index=False))
    print(f"paired by seed (Welch where seeds do not pair); {compare.family_text(result)}; "
          f"{compare.margin_words(result)}; written: {', '.join(map(str, written))}")
    print(" ".join(verdicts.LEGEND.replace("**", "").split()))
    return 0
