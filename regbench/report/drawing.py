"""Which figures a report can hold, and drawing them, one after another, in this process.

This module imports no matplotlib (figures.py does, when the first figure is drawn), so that
`regbench report --help` and the FIGURES list stay cheap. Figures were once drawn in forked worker
processes: ~0.7 s saved on one report, slower than this on a loaded machine, and a Ctrl-C left the
workers holding the terminal's pipe open; drawing here is the plain design.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from regbench.report.grid import Grid

# Every figure a report can hold, in drawing order. figures.py draws each one with its function of the
# same name (tests/test_report_speed.py checks the two lists name the same figures).
FIGURES = ("curves", "gap", "rate_sweep", "vs_baseline", "heatmap", "calibration")


def draw_all(grid: Grid, out_dir: Path, formats: Iterable[str], only: Iterable[str] | None = None,
             panel: str = "") -> tuple[dict[str, tuple[Path, str]], dict[str, str]]:
    """Draw each supported figure: ({name: (png path, caption)}, {name: reason it was skipped}).

    panel: the dataset/model the grid holds when a report spans several (figures never overlay
    them); names become `gap:<panel>` and files `gap-<panel>.png`."""
    from regbench.report.figures import draw_one

    wanted = FIGURES if only is None else [name for name in FIGURES if name in set(only)]
    results = [draw_one(grid, out_dir, tuple(formats), panel, name) for name in wanted]
    written = {key: value for key, value in results if not isinstance(value, str)}
    skipped = {key: value for key, value in results if isinstance(value, str)}
    return written, skipped
