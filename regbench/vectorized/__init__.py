"""Vectorised sweeps: many cells of a grid trained as one stacked model (docs/architecture.md).

Ablation grids are 50-500 small runs; for small models the time goes to per-step overhead
(Python, kernel launches, optimizer loops), not arithmetic. Stacking M cells that share
their structure turns M small steps into one step of M-batched matrix products.

- buckets.py  which cells stack together (bucket keys), why others fall back, size limits
- stacked.py  the stacked MLP: (M, ...) parameters, hand-written forward, stacked evaluation
- noise.py    per-cell dropout masks (bucket stream, or each cell's sequential stream)
- optim.py    SGD/SGDW/Adam/AdamW on stacked parameters with per-cell lr / decay / momentum
- loop.py     the bucket's training loop; every cell writes its own run folder
- launch.py   the Hydra launcher's work (hydra/launcher=vectorized)
"""
