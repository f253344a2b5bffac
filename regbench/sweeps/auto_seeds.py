"""`regbench run -m <grid> seed=auto`: seeds are added to every cell until the comparisons are decided.

The command line's `seed=auto` becomes `hydra.sweeper.auto_seeds=true` (cli.hydra_args: the
schema's seed is an integer, and Hydra composes the sweep's config with it before the sweeper
runs); the sweep folder name is taken from the line as typed, so a rerun finds the same folder.
The sweeper (hydra_plugins/regbench_plugins/sweeper.py) then runs the looks of
report/sequential.py: each look's new seeds go to the launcher as one batch (a stacking launcher
trains them as stacks), and after each look the runs in the sweep folder with a seed below the
look's count are read as the report reads them (the same grid, baselines, margins and level),
until every comparison against the baseline on the headline metric is decided or the budget is
spent. A rerun replays the looks: cells already finished are skipped by the run index and each
look reads only its own seeds, so it stops where it stopped before, or goes on from there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from regbench.core.errors import Abort, ConfigError

AUTO = "auto"
FLAG = "hydra.sweeper.auto_seeds=true"  # what seed=auto becomes on the way to Hydra


def _seed_values(arg: str) -> list[str] | None:
    """The values of a `seed=...` override (None for any other argument)."""
    key, sep, value = arg.partition("=")
    if not sep or arg.startswith("-") or key.lstrip("+~") != "seed":
        return None
    return [v.strip() for v in value.split(",")]


def rewrite(args: list[str], multirun: bool) -> list[str]:
    """`seed=auto` -> FLAG; bad uses are ConfigErrors (one line) before anything starts."""
    seeds = [(a, _seed_values(a)) for a in args if _seed_values(a) is not None]
    auto = [(a, v) for a, v in seeds if AUTO in v]
    if not auto:
        return args
    arg, values = auto[0]
    if len(values) > 1:
        raise ConfigError(f"{arg} mixes seed=auto with explicit seeds; valid: seed=auto alone, or a list of seeds "
                          "(seed=0,1,2)")
    if not multirun:
        raise ConfigError("seed=auto needs -m (it adds seeds to a grid until its comparisons are decided); valid: "
                          "regbench run -m <grid> seed=auto, or one seed (seed=0)")
    return [a for a in args if a != arg] + [FLAG]


def check(auto: bool, max_seeds: int | None, pilot: int) -> int | None:
    """The seed budget of a seed=auto sweep (None: a plain sweep); Abort for a setting that cannot apply."""
    from regbench.rules.verdicts import MAX_SEEDS  # numpy only: a plain sweep does not import the report

    if not auto:
        if max_seeds is not None:
            raise Abort(f"hydra.sweeper.max_seeds={max_seeds} only applies with seed=auto; valid: add seed=auto, "
                        "or leave max_seeds out")
        return None
    budget = MAX_SEEDS if max_seeds is None else max_seeds
    if budget < pilot:
        raise Abort(f"hydra.sweeper.max_seeds={budget} is below the pilot of {pilot} seeds; valid: an integer "
                    f">= {pilot}")
    return budget


def undecided(sweep_dir: Path, seeds: int, record) -> tuple[int, int]:
    """(undecided, all) comparisons against the baseline on the headline metric, from the runs in
    sweep_dir with a seed below `seeds`, exactly as the sweep's report will judge them."""
    from regbench.report import read_runs
    from regbench.report.grid import build_grid
    from regbench.report.paired import headline_metric
    from regbench.rules.verdicts import DECIDED

    runs, _ = read_runs([sweep_dir])
    runs = [r for r in runs if int(r.config.get("seed") or 0) < seeds]
    grid = build_grid(runs, None, record)
    comps = grid.comparisons
    head = comps[comps["metric"] == headline_metric(grid.runs)] if len(comps) else comps
    return int((~head["decision"].isin(DECIDED)).sum()) if len(head) else 0, len(head)


def run_looks(sweep_once: Callable[[list[str]], list], arguments: list[str], sweep_dir: Path,
              max_seeds: int) -> list:
    """Every look of the sequential rule: sweep_once(arguments + the look's new seeds) per look;
    returns the launcher's batches of all looks (what BasicSweeper.sweep returns)."""
    from regbench.report.sequential import PILOT, Record, schedule, stop_reason

    looks = schedule(max_seeds, PILOT)
    record = Record(pilot=PILOT, max_seeds=max_seeds, looks_planned=len(looks))
    returns: list = []
    done = 0
    for i, n in enumerate(looks):
        returns += sweep_once([*arguments, f"seed={','.join(str(s) for s in range(done, n))}"])
        done = n
        left, total = undecided(sweep_dir, n, record)
        reason = stop_reason(left, n, max_seeds) if total else "nothing to compare (one configuration)"
        record.seeds, record.undecided, record.reason = n, left, reason or ""
        record.save(sweep_dir)
        after = f"stopped: {reason}" if reason else f"next look at {looks[i + 1]} seeds"
        print(f"seed=auto: look {i + 1}/{len(looks)} at {n} seeds per cell: {total - left} of {total} "
              f"comparison(s) decided; {after}", flush=True)
        if reason:
            break
    return returns
