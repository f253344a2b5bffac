"""The one training engine: every run is a stack of M >= 1 cells through one loop.

- setup.py   device, config checks, threads rule, determinism, SIGTERM handling
- stack.py   the stack: a lone model (M = 1) or M models lifted by torch.func (M > 1)
- optim.py   torch.optim's update rules on (M, ...) parameters with per-cell hyper-parameters
- cells.py   one cell's bookkeeping: run folder, rows, divergence, early stopping, the end
- loop.py    the loop itself, read top to bottom
- plan.py    which sweep cells stack together, why others run alone, stack sizes
- launch.py  hand a sweep's jobs to the loop as stacks (hydra/launcher=vectorized)
"""
