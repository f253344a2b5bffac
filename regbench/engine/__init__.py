"""The one training engine: every run is a stack of M >= 1 cells through one loop.

- setup.py   device, config checks, threads rule, determinism, SIGTERM handling
- stack.py   the stack: a lone model (M = 1) or M models lifted by torch.func (M > 1)
- optim.py   torch.optim's update rules on (M, ...) parameters with per-cell hyper-parameters
- cells.py   one cell's bookkeeping: run folder, rows, divergence, early stopping, the end
- loop.py    the loop itself, read top to bottom
- plan.py    which sweep cells stack together, why others run alone, stack sizes
- train.py   one configuration: a stack of one cell (what a lone run and the basic launcher call)
- optimizers.py  torch.optim optimizers of a lone model, weight-decay groups, the lr schedule
- evaluate.py    loss / accuracy over a split; uncertainty.py: MC dropout, calibration

How a sweep's jobs become stacks is the sweeps layer's (regbench/sweeps/stacked.py, stack_jobs.py).
May import: records, rules, the catalogue (data, models, regularizers), core; never report, sweeps,
cli or api.
"""
