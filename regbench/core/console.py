"""What a person at the terminal sees: a bar per run and per sweep, a final line per run, a table per sweep.

On a terminal (stderr is a TTY) a run or a stack shows a tqdm bar (epoch, val accuracy, gap) and a sweep
shows one more bar above it (cells done / total, ETA, outcome counts). Off a terminal (CI logs,
`> log.txt`) there are no bars, only the lines: one when a run ends, a table when a sweep ends.
The sweep bar is driven by Hydra callbacks and the sweeper, so it works for any launcher that
runs jobs in this process (basic, vectorized); jobs in other processes (joblib, submitit) still
print their own final lines, and the sweeper's closing table covers every launcher.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections import Counter

from tqdm.auto import tqdm

FALLBACK_COLUMNS = 100  # bar width when the terminal reports none (a pty without a window size: 0 columns)
TABLE_ROWS = 20  # cells listed in a sweep's closing table; the report has all of them


def on_terminal() -> bool:
    return sys.stderr.isatty()


def _columns() -> int:
    # shutil falls back to $COLUMNS or 80 where the terminal reports 0 columns; tqdm would draw
    # a bar of width 0 there, i.e. nothing at all.
    return shutil.get_terminal_size((FALLBACK_COLUMNS, 24)).columns or FALLBACK_COLUMNS


# The logger of lines that only say what is being launched (Hydra's "Launching jobs" style): shown with -v.
DETAIL = "regbench.detail"
# The logger of a run's start line ("run <folder>: mlp on cpu, … parameters"): shown for a single run.
RUN_START = "regbench.run"


class OwnLines(logging.Filter):
    """What the terminal shows by default (hydra/job_logging/regbench.yaml): warnings and errors from
    anyone, and regbench's own information lines, but not Hydra's or its launchers' INFO lines, nor the
    launch details, nor (in a sweep, mode MULTIRUN) each cell's start line; its final line is printed."""

    def __init__(self, mode: str = "RUN"):
        super().__init__()
        self.sweep = str(mode).endswith("MULTIRUN")  # hydra.mode resolves to "RunMode.MULTIRUN"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        name = record.name
        if name == DETAIL or (self.sweep and name == RUN_START):
            return False
        return name == "regbench" or name.startswith("regbench.")


class _Sweep:
    """The one sweep bar of this process (None outside a sweep)."""

    bar: tqdm | None = None
    counts: Counter = Counter()


def sweep_started(total: int) -> None:
    sweep_finished()
    _Sweep.counts = Counter()
    if on_terminal():
        _Sweep.bar = tqdm(total=total, desc="sweep", unit="run", file=sys.stderr, ncols=_columns(),
                          position=0, dynamic_ncols=False)


def cell_done(status: str) -> None:
    _Sweep.counts[status] += 1
    if _Sweep.bar is not None:
        _Sweep.bar.set_postfix_str(", ".join(f"{n} {s}" for s, n in sorted(_Sweep.counts.items())), refresh=False)
        _Sweep.bar.update(1)


def sweep_finished() -> None:
    if _Sweep.bar is not None:
        _Sweep.bar.close()
        _Sweep.bar = None


def run_bar(epochs: int, done: int, desc: str, enabled: bool) -> tqdm:
    """The per-run epoch bar: shown only on a terminal (and trainer.progress=true), erased when done."""
    return tqdm(range(done + 1, epochs + 1), desc=desc, total=epochs, initial=done, unit="epoch", leave=False,
                file=sys.stderr, disable=not (enabled and on_terminal()), ncols=_columns(),
                position=1 if _Sweep.bar is not None else 0, dynamic_ncols=False)


def epoch_postfix(numbers: list[list[float]], training: int) -> str:
    """The run bar's numbers after an epoch: val accuracy and the accuracy gap (train − val, in points,
    as the final line says it); a stack shows the range of val accuracy over its cells, the mean gap
    and how many cells still train. numbers: one row per cell, (train_loss, train_acc, val_loss,
    val_acc, ...) as the loop measures them."""
    val = [row[3] for row in numbers]
    gaps = [100 * (row[1] - row[3]) for row in numbers]
    if len(numbers) == 1:
        return f"val_acc={val[0]:.3f}, gap={gaps[0]:+.1f}"
    return (f"val_acc={min(val):.3f}..{max(val):.3f}, gap={sum(gaps) / len(gaps):+.1f} (mean), "
            f"cells={training}")


def say(line: str) -> None:
    """Print a line without breaking the bars (tqdm.write clears and redraws them)."""
    if _Sweep.bar is not None:
        tqdm.write(line, file=sys.stdout)
    else:
        print(line, flush=True)


def _pct(block: dict | None, key: str) -> str:
    value = (block or {}).get(key)
    return "—" if value is None else f"{100 * value:.1f}%"


def final_line(summary: dict) -> str:
    """e.g. `completed in 4.2 s, 30 epochs: train 100.0% val 97.2% test 96.9% gap +2.8 points`; a cell of a
    stack says the stack's wall time (`completed in 49.0 s (stack of 8), ...`), not its share of it."""
    final, test = summary.get("final") or {}, summary.get("test") or {}
    gap = final.get("gap_acc")
    gap_text = "—" if gap is None else f"{100 * gap:+.1f} points"
    took = f"{summary.get('seconds', 0):.1f} s"
    if summary.get("stack_seconds") is not None:
        took = f"{summary['stack_seconds']:.1f} s (stack of {summary.get('stack_cells')})"
    return (f"{summary.get('status')} in {took}, {summary.get('epochs_completed')} epochs: "
            f"train {_pct(final, 'train_acc')} val {_pct(final, 'val_acc')} test {_pct(test, 'acc')} gap {gap_text}")


def run_done(summary: dict, single: bool) -> None:
    """The one line per run: what it reached; a single run also names its folder (a sweep's table follows)."""
    from pathlib import Path

    if summary.get("skipped") and not single:
        return  # resume reused it: the sweep's one resume line counts these (multirun.resume_line)
    incomplete = summary["status"] != "completed"
    said = final_line(summary)
    say(f"{Path(summary['run_dir']).name}: " + (f"skipped, already {said} (resume=false trains it again)"
                                                if summary.get("skipped")
                                                else said + (f" [{summary.get('error')}]" if incomplete else "")))
    if single:
        say(f"results: {summary['run_dir']}")


def sweep_table(cells: list[tuple[str, dict]]) -> str:
    """A short table of a sweep's cells: (overrides that distinguish it, its summary or failure dict)."""
    width = min(60, max([len(name) for name, _ in cells] + [4]))
    lines = [f"{'cell':<{width}}  {'status':<11} {'val':>6} {'test':>6} {'gap':>6}"]
    for name, s in cells[:TABLE_ROWS]:
        final, test = s.get("final") or {}, s.get("test") or {}
        gap = final.get("gap_acc")
        lines.append(f"{name[:width]:<{width}}  {str(s.get('status', 'failed')):<11} {_pct(final, 'val_acc'):>6} "
                     f"{_pct(test, 'acc'):>6} {'—' if gap is None else f'{100 * gap:+.1f}':>6}")
    if len(cells) > TABLE_ROWS:
        lines.append(f"... and {len(cells) - TABLE_ROWS} more cells (the report lists them all)")
    return "\n".join(lines)
