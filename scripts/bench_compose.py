"""Per-cell cost of composing a sweep's configs: regbench/sweeps/compose.py against Hydra's own.

    .venv/bin/python scripts/bench_compose.py [GRID ...]

Default grid: the issue's 32 cells (mnist1d MLP, dropout=standard at 8 rates x 4 seeds). Both
paths compose every cell of the same grid in this process, Hydra's first; prints ms per cell and
the ratio (timings depend on the machine's load: compare the ratio).
"""

from __future__ import annotations

import sys
import time

from hydra import initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode

from regbench.rules.config import register_configs
from regbench.sweeps.compose import CellComposer
from regbench.sweeps.multirun import task_config

GRID = ["dataset=mnist1d", "model.hidden=[100,100]", "dropout=standard", "dropout.p=0,0.1,0.2,0.3,0.4,0.5,0.6,0.7",
        "seed=0,1,2,3"]


def main(grid: list[str]) -> None:
    register_configs()
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(config_name="config", overrides=["sweep_name=bench", *grid],
                                           run_mode=RunMode.MULTIRUN)
        params = [f"{k}={v}" for k, v in (master.hydra.sweeper.params or {}).items()]
        parsed = OverridesParser.create().parse_overrides([*params, *grid])
        [cells] = BasicSweeper.split_arguments(parsed, None)

        t = time.perf_counter()
        for cell in cells:
            loader.load_sweep_config(master, cell)
        hydra_s = (time.perf_counter() - t) / len(cells)

        t = time.perf_counter()
        composer = CellComposer(loader, master)
        cfgs = [composer.compose(cell) for cell in cells]
        ours_s = (time.perf_counter() - t) / len(cells)

        t = time.perf_counter()
        for cell in cells:  # again, templates cached: the per-cell part alone
            composer.compose(cell)
        cell_s = (time.perf_counter() - t) / len(cells)

        t = time.perf_counter()
        for cfg in cfgs:
            task_config(cfg)
        task_s = (time.perf_counter() - t) / len(cells)

    print(f"{len(cells)} cells, {composer.templates} template(s) composed by Hydra, {composer.slow} cells by Hydra")
    print(f"Hydra load_sweep_config: {hydra_s * 1e3:.1f} ms/cell")
    print(f"regbench CellComposer:   {ours_s * 1e3:.1f} ms/cell (templates included)  -> {hydra_s / ours_s:.0f}x")
    print(f"  of which per cell, without the templates: {cell_s * 1e3:.1f} ms/cell -> {hydra_s / cell_s:.0f}x")
    print(f"task config copy (per job, in place of run_job's deep copies): {task_s * 1e3:.1f} ms/cell")


if __name__ == "__main__":
    main(sys.argv[1:] or GRID)
