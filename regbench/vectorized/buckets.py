"""Which sweep cells can train together: buckets of equal structure, differing only in values.

A bucket key is the cell's resolved config minus the keys the stacked model carries per
cell (CONTINUOUS: the schema's per-cell keys this loop stacks) and minus the keys that only
say where or how visibly results go (the schema's not-hashed keys). Two cells with the same
key have the same data, shapes, dropout placement, optimizer rule, schedule, batch size and
epochs, so their steps line up one to one.
"""

from __future__ import annotations

import json
import math
import os

import torch
from omegaconf import DictConfig, OmegaConf

from regbench.config import NOT_HASHED_KEYS, PER_CELL_KEYS

# Per-cell keys (regbench/config.py) this stacked loop still reads from a bucket's first cell: cells
# must agree on them (label smoothing; mixing runs in the sequential loop).
NOT_STACKED_YET = frozenset({"reg.label_smoothing", "augment.mixup_alpha", "augment.cutmix_alpha"})
# Values the stacked model / optimizer hold per cell: (M,) tensors.
CONTINUOUS = tuple(sorted(PER_CELL_KEYS - NOT_STACKED_YET))
# Fields an MLP with standard / Gaussian dropout never reads.
UNUSED_BY_MLP = ("model.channels", "model.kernel_size", "dropout.p_conv", "dropout.block_size", "dropout.schedule",
                 "dropout.mask")
# Where or how visibly a run is written (each cell keeps its own), or fields the MLP never reads.
PER_CELL = (*sorted(NOT_HASHED_KEYS), "hydra", *UNUSED_BY_MLP)
# Dropout types with a stacked form, and the noise family they share a bucket by (none = standard at p=0).
STACKABLE_DROPOUT = {"none": "bernoulli", "standard": "bernoulli", "gaussian": "gaussian"}
DEFAULT_MEMORY_FRACTION = 0.5  # of the free device memory (CPU: MemAvailable) a bucket may plan for


def fallback_reason(cfg: DictConfig) -> tuple[str, str] | None:
    """(what, why) if this cell cannot be stacked and runs in the sequential loop; None if it can."""
    if cfg.model.name != "mlp":
        return f"model={cfg.model.name}", "only mlp stacks"
    if cfg.dropout.name not in STACKABLE_DROPOUT:
        return f"dropout={cfg.dropout.name}", f"only dropout={'|'.join(STACKABLE_DROPOUT)} stack"
    if len(cfg.augment.ops):
        return f"augment.ops={list(cfg.augment.ops)}", "augmentation runs in the sequential loop"
    if OmegaConf.select(cfg, "eval.mode", default="eval") != "eval":
        return f"eval.mode={cfg.eval.mode}", "the stacked model evaluates in eval mode only"
    if OmegaConf.select(cfg, "eval.mc_every_epoch", default=False) and cfg.eval.mc_samples > 0:
        return "eval.mc_every_epoch=true", "per-epoch MC dropout columns come from the sequential loop"
    if cfg.trainer.checkpoint:
        return "trainer.checkpoint=true", "per-epoch checkpoints are written by the sequential loop"
    if cfg.trainer.compile:
        return "trainer.compile=true", "the stacked forward is not compiled"
    return None


def bucket_key(cfg: DictConfig) -> str:
    """Cells with equal keys train as one stacked model."""
    d = OmegaConf.to_container(cfg, resolve=True)
    for key in CONTINUOUS + PER_CELL:
        *parents, leaf = key.split(".")
        node = d
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    d["dropout"]["name"] = STACKABLE_DROPOUT.get(d["dropout"]["name"], d["dropout"]["name"])
    return json.dumps(d, sort_keys=True, default=str)


def chunk_sizes(n: int, limit: int) -> list[int]:
    """Split n cells into the fewest chunks of at most `limit`, as equal as possible (e.g. 10, 4 -> 4, 3, 3)."""
    parts = max(1, math.ceil(n / max(1, limit)))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def memory_budget(device: torch.device, max_memory_gb: float | None) -> int:
    """Bytes a bucket may use: the configured cap, else a fraction of what the device has free."""
    if max_memory_gb is not None:
        return int(max_memory_gb * 2**30)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * DEFAULT_MEMORY_FRACTION)
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 2**32
    return int(available * DEFAULT_MEMORY_FRACTION)
