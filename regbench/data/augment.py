"""Batched, on-device augmentation with per-sample random parameters.

An op is `fn(x, y, kind) -> (x, y)` on a normalised float batch x: (N, C, H, W) images
or (N, C, L) signals, and targets y: (N,) class indices or (N, K) soft targets (mixing
ops turn indices into soft targets). Ops run only in training, never in evaluation.
"""

from __future__ import annotations

from typing import Callable

import torch

from regbench.errors import ConfigError
from regbench.registry import Registry

AugmentOp = Callable[[torch.Tensor, torch.Tensor, str], tuple]
AUGMENTS: Registry[AugmentOp] = Registry("augmentation")
# Which data kinds each op supports: ops valid for images only are refused on 1-D signals.
KINDS: dict[str, tuple[str, ...]] = {}


def register(name: str, kinds: tuple[str, ...] = ("image", "sequence")):
    def deco(fn):
        AUGMENTS.register(name)(fn)
        KINDS[name] = kinds
        return fn

    return deco


def build_augment(ops, kind: str) -> Callable[[torch.Tensor, torch.Tensor], tuple] | None:
    """Compose the named ops for data of `kind`; None when there is nothing to do."""
    fns = [AUGMENTS.get(op) for op in ops]
    for op in ops:
        if kind not in KINDS[op]:
            valid = [n for n in AUGMENTS.names() if kind in KINDS[n]]
            raise ConfigError(f"augmentation {op!r} does not apply to {kind} data; valid choices: {', '.join(valid)}")
    if not fns:
        return None

    def apply(x: torch.Tensor, y: torch.Tensor) -> tuple:
        for fn in fns:
            x, y = fn(x, y, kind)
        return x, y

    return apply
