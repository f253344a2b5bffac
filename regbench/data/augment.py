"""Batched, on-device augmentation with per-sample random parameters: the pipeline of a run.

The registry and the op signature live in augment_base.py; the ops in augment_ops.py and
regularizers/mixing.py (imported here, so importing this module registers every op).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from regbench.core.errors import ConfigError

# The ops register themselves on import: the image/signal ops, then the mixing ops (regularizers).
from regbench.data import augment_ops  # noqa: F401
from regbench.data.augment_base import AUGMENTS, KINDS, PARAMS, AugmentContext, AugmentOp, register  # noqa: F401 (public)
from regbench.regularizers import mixing  # noqa: F401


def build_augment(cfg, kind: str, num_classes: int,
                  generator: torch.Generator | None = None) -> Callable[[torch.Tensor, torch.Tensor], tuple] | None:
    """Compose the ops of the augment config section for data of `kind`; None when there are none.
    Every op draws from `generator` (a cell's augment stream, on the data's device; None: the global one)."""
    ops = list(cfg.ops)
    fns = [AUGMENTS.get(op) for op in ops]
    for op in ops:
        if kind not in KINDS[op]:
            valid = [n for n in AUGMENTS.names() if kind in KINDS[n]]
            raise ConfigError(f"augmentation {op!r} does not apply to {kind} data; valid choices: {', '.join(valid)}")
    if not fns:
        return None
    ctx = AugmentContext(kind, num_classes, cfg, generator)

    def apply(x: torch.Tensor, y: torch.Tensor) -> tuple:
        for fn in fns:
            x, y = fn(x, y, ctx)
        return x, y

    return apply

