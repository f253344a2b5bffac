"""Sweeps: the Hydra application, a sweep's cells, and how launchers hand them to the engine.

- hydra_app.py    @hydra.main over regbench/conf/: one call per run (or per stack job)
- compose.py      compose a sweep's cells once per group selection, not once per cell
- multirun.py     preflight of every cell before the first trains, the jobs' configs, outcome counts
- outcome.py      what a command's runs ended as, handed back to the command (exit code, the Python API)
- stacked.py      hydra/launcher=vectorized: a sweep's jobs trained as stacks in this process
- stack_jobs.py   hydra.sweeper.cells_per_job=K: each launcher job is a stack of up to K cells
- launchers.py    threads and GPU of one job under a parallel launcher (joblib, submitit, Ray)
- ray_launch.py   the per-task function the Ray launcher ships to its workers
- auto_seeds.py   seed=auto: seeds added in looks until the comparisons are decided
- callbacks.py    after a sweep: the progress line and the sweep's own report

The Hydra plugins in hydra_plugins/regbench_plugins/ are thin and call into this package.
May import: engine, report, records, rules, the catalogue (data, models, regularizers), core;
never cli or api.
"""
