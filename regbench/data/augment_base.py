"""The augmentation registry: what an op is, and how it registers (read by every op module).

An op is `fn(x, y, ctx) -> (x, y)` on a normalised float batch x: (N, C, H, W) images
or (N, C, L) signals, and targets y: (N,) class indices or (N, K) soft targets (mixing
ops turn indices into soft targets). `ctx` carries the data kind, the number of classes
and the `augment` config section (op parameters). Ops run only in training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from regbench.core.registry import Registry


@dataclass(frozen=True)
class AugmentContext:
    kind: str  # "image" (N, C, H, W) | "sequence" (N, C, L)
    num_classes: int
    cfg: Any  # the augment config section: op parameters (crop_pad, cutout_size, ...)
    generator: torch.Generator | None = None  # the cell's augment stream: every random draw of an op takes it


AugmentOp = Callable[[torch.Tensor, torch.Tensor, AugmentContext], tuple]
AUGMENTS: Registry[AugmentOp] = Registry("augmentation")
# Which data kinds each op supports: ops valid for images only are refused on 1-D signals.
KINDS: dict[str, tuple[str, ...]] = {}
# The augment.* keys each op reads: a parameter of an op not in augment.ops is refused (regbench/rules/active.py).
PARAMS: dict[str, tuple[str, ...]] = {}


def register(name: str, kinds: tuple[str, ...] = ("image", "sequence"), params: tuple[str, ...] = ()):
    def deco(fn):
        AUGMENTS.register(name)(fn)
        KINDS[name] = kinds
        PARAMS[name] = params
        return fn

    return deco
