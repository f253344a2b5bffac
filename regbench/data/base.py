"""Dataset registry -> raw tensors -> train/val/test splits on the target device (docs/architecture.md).

A loader is a plain function registered in DATASETS whose keyword arguments are
DatasetConfig field names (e.g. `def mnist(root: str, download: bool)`). build_splits
reads exactly those fields from the config, so the loaded data can be cached per
process on them: a sweep in one process reads or generates each dataset once.

The whole split then lives on the device in its compact dtype (uint8 for images);
`DataSplits.normalize` turns a batch into float32 when it is used.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import ListConfig
from torch import Tensor

from regbench.core.errors import ConfigError
from regbench.core.registry import Registry

# name -> loader(**fields of DatasetConfig) -> RawDataset; filled by bundled.py / torchvision_sets.py
DATASETS: Registry[Callable[..., RawDataset]] = Registry("dataset")

_CACHE_SIZE = 4  # raw datasets kept in memory per process (CIFAR-100 is ~180 MB of uint8)
_STATS_CHUNK = 8192  # examples per chunk when computing mean/std, bounds the float32 temporary


@dataclass(frozen=True)
class RawDataset:
    """A dataset as loaded, on the CPU, before any train/val split.

    x: uint8 (N,C,H,W) for images, float32 (N,C,L) for 1-D signals; y: int64 (N,).
    Frozen because loaders are cached: the same object is handed to every caller.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    kind: str  # "image" | "sequence"
    scale: float  # x / scale is roughly in [0, 1]: 255 for uint8 images, 1.0 for float data


@dataclass
class DataSplits:
    """Train/val/test tensors on the target device plus train-set normalisation statistics."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    mean: Tensor  # float32 (1,C,1,1) for images, (1,C,1) for sequences; of x / scale on the train part
    std: Tensor  # same shape as mean
    scale: float
    num_classes: int
    kind: str
    name: str
    # normalize() as one subtract and one divide on the raw values: (x - mean*scale) / (std*scale)
    _shift: Tensor = field(init=False, repr=False)
    _div: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._shift = self.mean * self.scale
        self._div = self.std * self.scale

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def normalize(self, xb: Tensor) -> Tensor:
        """Batch in the stored dtype -> float32 with ~zero mean, unit std per channel."""
        # Out of place on purpose: if xb is already float32, .float() returns the stored tensor itself.
        return (xb.float() - self._shift) / self._div

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": len(self.y_test),
            "input_shape": list(self.input_shape),  # a list, so YAML/JSON dumps stay plain
            "num_classes": self.num_classes,
        }


# ---------------------------------------------------------------------------- loading


def _loader_kwargs(loader: Callable[..., RawDataset], cfg: Any) -> dict[str, Any]:
    """The config fields the loader asks for, made hashable (lists -> tuples, root -> absolute path)."""
    kwargs: dict[str, Any] = {}
    for key in inspect.signature(loader).parameters:
        value = getattr(cfg, key)
        if key == "root":
            value = os.path.abspath(os.path.expanduser(str(value)))  # same folder -> same cache entry
        elif isinstance(value, (list, tuple, ListConfig)):
            value = tuple(value)
        kwargs[key] = value
    return kwargs


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_cached(name: str, items: tuple[tuple[str, Any], ...]) -> RawDataset:
    return DATASETS.get(name)(**dict(items))


def load_raw(cfg: Any) -> RawDataset:
    """Load (or fetch from the in-process cache) the dataset named by cfg.name."""
    loader = DATASETS.get(cfg.name)
    return _load_cached(cfg.name, tuple(sorted(_loader_kwargs(loader, cfg).items())))


def clear_cache() -> None:
    """Forget cached datasets (tests; or to free memory between sweeps)."""
    _load_cached.cache_clear()


# ---------------------------------------------------------------------------- splitting


def _allocate(counts: Tensor, n_take: int) -> Tensor:
    """Per-class quotas summing to exactly n_take, proportional to counts (largest remainder)."""
    total = int(counts.sum())
    base = counts * n_take // total  # (K,) floor of the exact share
    remainder = counts * n_take % total  # (K,) how close each class is to one more
    extra = n_take - int(base.sum())  # < K examples still to hand out
    order = torch.argsort(remainder, descending=True, stable=True)
    base[order[:extra]] += 1
    return base


def stratified_split(y: Tensor, n_take: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Indices (taken, rest) of y, each class split in the same proportion, both in random order.

    y: int64 (N,) on the CPU; taken has n_take entries. Uses only `generator`, never global RNG.
    """
    n = y.numel()
    perm = torch.randperm(n, generator=generator)  # (N,) random order
    order = torch.argsort(y[perm], stable=True)  # groups classes, keeps the random order inside each
    counts = torch.bincount(y)  # (K,)
    quota = _allocate(counts, n_take)
    starts = torch.cumsum(counts, 0) - counts  # (K,) first sorted position of each class
    rank = torch.arange(n) - starts.repeat_interleave(counts)  # (N,) position within its class
    take = torch.empty(n, dtype=torch.bool)
    take[order] = rank < quota.repeat_interleave(counts)  # back from class-sorted to random order
    return perm[take], perm[~take]


def _channel_stats(x: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of x / scale over all but the channel dim -> two (1,C,1,...) float32."""
    dims = [0] + list(range(2, x.dim()))
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros(x.shape[1], dtype=torch.float64)
    for chunk in x.split(_STATS_CHUNK):  # float32 per chunk (MPS has no float64), float64 across chunks
        c = chunk.float() / scale
        total += c.sum(dims).cpu().double()
        total_sq += c.square().sum(dims).cpu().double()
    count = x.numel() // x.shape[1]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0)
    std = var.sqrt().clamp_min(1e-6)  # a constant channel would otherwise divide by zero
    view = (1, -1) + (1,) * (x.dim() - 2)
    return mean.float().view(view).to(x.device), std.float().view(view).to(x.device)


def build_splits(cfg: Any, device: torch.device | str) -> DataSplits:
    """Load cfg.name, split its training set into train/val (stratified, seeded by cfg.split_seed),
    optionally subsample train to cfg.train_size, and move everything to `device`.

    cfg is a DatasetConfig or the `dataset` DictConfig node. The test set is the dataset's own.
    """
    raw = load_raw(cfg)
    gen = torch.Generator().manual_seed(int(cfg.split_seed))  # private RNG: global state untouched

    n_pool = len(raw.y_train)
    n_val = round(n_pool * float(cfg.val_fraction))
    if not 0 < n_val < n_pool:
        raise ConfigError(
            f"dataset.val_fraction={cfg.val_fraction} leaves {n_val} of {n_pool} training examples for validation; "
            "valid: a fraction that keeps at least one example in both train and val"
        )
    val_idx, train_idx = stratified_split(raw.y_train, n_val, gen)

    if cfg.train_size is not None:
        available = len(train_idx)
        if not 1 <= cfg.train_size <= available:
            raise ConfigError(
                f"dataset.train_size={cfg.train_size} is out of range for {cfg.name}; valid values: 1..{available} "
                f"(the {n_pool} training examples minus {n_val} for validation)"
            )
        keep, _ = stratified_split(raw.y_train[train_idx], int(cfg.train_size), gen)
        train_idx = train_idx[keep]

    device = torch.device(device)
    # Indexing copies, so train/val never alias the cached RawDataset; the test set is copied explicitly.
    x_train = raw.x_train[train_idx].to(device)
    mean, std = _channel_stats(x_train, raw.scale)
    return DataSplits(
        x_train=x_train,
        y_train=raw.y_train[train_idx].to(device),
        x_val=raw.x_train[val_idx].to(device),
        y_val=raw.y_train[val_idx].to(device),
        x_test=raw.x_test.to(device, copy=True),
        y_test=raw.y_test.to(device, copy=True),
        mean=mean,
        std=std,
        scale=raw.scale,
        num_classes=raw.num_classes,
        kind=raw.kind,
        name=str(cfg.name),
    )
