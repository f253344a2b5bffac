"""Which sweep cells train together: stacks of equal structure, differing only in values.

A stack key is what the cell's config hash covers (config.hashable_dict: not the keys that only
say where or how visibly results go) minus the keys a stack holds per cell (PER_CELL_VALUES:
(M,) tensors or each cell's own objects). Two cells with the same key have the same
data, model shapes, dropout type and placement, optimizer rule, schedule, batch size and
epochs, so their steps line up one to one. What cannot stack (`alone_reason`) trains as a
stack of one through the same loop, with one log line saying why.
"""

from __future__ import annotations

import json
import logging
import math
import os

import torch
from omegaconf import DictConfig, OmegaConf

from regbench.core.errors import ConfigError
from regbench.engine.stack import signature
from regbench.rules.config import PER_CELL_KEYS, drop_keys, hashable_dict

# Values a stack holds per cell: the schema's per-cell keys (regbench/rules/config.py: (M,) tensors or each
# cell's own generator), plus what each cell keeps in its own objects here: its augmentation (any
# augment.* value) and its end-of-run bookkeeping (early stopping, test weights, MC / calibration).
ENGINE_PER_CELL = frozenset({"augment", "eval.mc_samples", "eval.ece_bins", "trainer.select", "trainer.monitor",
                             "trainer.patience", "trainer.min_delta"})
PER_CELL_VALUES = tuple(sorted(PER_CELL_KEYS | ENGINE_PER_CELL))
log = logging.getLogger("regbench")
DEFAULT_MEMORY_FRACTION = 0.5  # of the free device memory (CPU: MemAvailable) a stack may plan for


def alone_reason(cfg: DictConfig) -> tuple[str, str] | None:
    """(what, why) if this cell trains as a stack of one; None if it can share a stack."""
    if OmegaConf.select(cfg, "eval.mode", default="eval") != "eval":
        return f"eval.mode={cfg.eval.mode}", "train-mode evaluation restores each model's buffers and RNG"
    if OmegaConf.select(cfg, "eval.mc_every_epoch", default=False) and cfg.eval.mc_samples > 0:
        return "eval.mc_every_epoch=true", "per-epoch MC dropout runs on each cell's own model"
    if cfg.trainer.checkpoint:
        return "trainer.checkpoint=true", "a checkpoint holds one model and its torch.optim state"
    if cfg.trainer.compile:
        return "trainer.compile=true", "the stacked (vmap) forward is not compiled"
    if cfg.trainer.channels_last:
        return "trainer.channels_last=true", "vmap folds the cell dim into the batch, which undoes NHWC"
    return None


def groups(cells: list) -> list[list]:
    """The stacks cells built for one train() call form, decided before any of them trains: each cell that
    cannot share a stack (`alone_reason`) alone, then the others by model structure (stack.signature: e.g.
    DropConnect wraps only the layers whose rate is > 0, so other parameter names), each stack in order of
    (lr, weight decay, momentum): the optimizer updates equal ones side by side."""
    alone: list = []
    by_structure: dict[tuple, list] = {}
    for c in cells:
        reason = alone_reason(c.cfg) if len(cells) > 1 else None
        if reason:
            log.info("%s: trains alone (%s)", *reason)
            alone.append(c)
        else:
            by_structure.setdefault(signature(c.model), []).append(c)
    if len(by_structure) > 1:
        log.info("%d cells have %d different model structures: trained as %d stacks", len(cells) - len(alone),
                 len(by_structure), len(by_structure))
    order = lambda c: (c.cfg.optim.lr, c.cfg.optim.weight_decay, c.cfg.optim.momentum)  # noqa: E731
    return [[c] for c in alone] + [sorted(group, key=order) for group in by_structure.values()]


def stack_key(cfg: DictConfig) -> str:
    """Cells with equal keys train as one stack."""
    d = hashable_dict(cfg)  # where and how visibly each cell is written: its own (the not-hashed keys)
    drop_keys(d, PER_CELL_VALUES)
    if d["dropout"]["name"] == "none":  # no slot modules at all, as standard dropout at rate 0
        d["dropout"]["name"] = "standard"
    return json.dumps(d, sort_keys=True, default=str)


def check_limits(max_cells, max_memory_gb) -> None:
    """hydra.launcher.max_cells / max_memory_gb of the vectorized launcher: a limit of no cells or no
    memory cannot take effect (chunk_sizes would quietly make stacks of one). Raises ConfigError."""
    if isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells < 1:
        raise ConfigError(f"hydra.launcher.max_cells={max_cells} is not valid; valid values: an integer >= 1")
    if max_memory_gb is not None and not (isinstance(max_memory_gb, (int, float)) and math.isfinite(max_memory_gb)
                                          and max_memory_gb > 0):
        raise ConfigError(f"hydra.launcher.max_memory_gb={max_memory_gb} is not valid; valid values: a number > 0 "
                          "(GiB), or null for half of the free memory")


def chunk_sizes(n: int, limit: int) -> list[int]:
    """Split n cells into the fewest chunks of at most `limit`, as equal as possible (e.g. 10, 4 -> 4, 3, 3)."""
    parts = max(1, math.ceil(n / max(1, limit)))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def memory_budget(device: torch.device, max_memory_gb: float | None) -> int:
    """Bytes a stack may use: the configured cap, else a fraction of what the device has free."""
    if max_memory_gb is not None:
        return int(max_memory_gb * 2**30)
    return int(available_memory(device) * DEFAULT_MEMORY_FRACTION)


def available_memory(device: torch.device) -> int:
    """Bytes the device has free now: CUDA's free memory, else the machine's MemAvailable."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 2**32
