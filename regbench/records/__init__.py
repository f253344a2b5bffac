"""A run's records: its folder and files, the run index, claims, checkpoints, trackers.

- results.py        run folder, metrics.csv / summary.json writers, the end of a run
- index.py          the run index (.regbench-index.jsonl) and the process markers (.running / .failed)
- folder.py         a run folder read back (status, damage: the one definition of finished), resume look-ups
- claims.py         one claim per training cell, so two processes never train the same cell
- checkpoint.py     per-epoch checkpoints (trainer.checkpoint=true)
- loggers.py        the RunLogger interface (start / log_epoch / close) and TensorBoard
- mlflow_logger.py  logger=mlflow

These files are the contract between the engine (which writes them) and the report (which reads
nothing else). May import: rules, the catalogue, core; never engine, report, sweeps, cli or api.
"""
