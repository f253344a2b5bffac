"""Datasets that need no download: sklearn digits, generated MNIST-1D, and a synthetic task.

Each loader's keyword arguments are DatasetConfig fields (see base.py); none of them
touches the global torch / numpy / random state or writes into the working directory
(digits and generated MNIST-1D are kept in the user cache, see cached_arrays).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import zipfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from regbench.core import files
from regbench.core.errors import ConfigError
from regbench.data.base import DATASETS, RawDataset, stratified_split

log = logging.getLogger(__name__)

_DIGITS_TEST_FRACTION = 0.2  # digits has no official test split: this share is held out, always the same
_DIGITS_TEST_SEED = 0  # fixed, independent of split_seed, so every run is scored on the same test set
_SYNTH_SAMPLES = 4000  # synthetic: examples generated when dataset.num_samples is unset (train + test)
_SYNTH_TRAIN_FRACTION = 0.8  # synthetic: train/test split of the num_samples generated
_SYNTH_MODES = 3  # prototypes per class: a mixture, so no single linear template solves it
# L2 norm of each prototype, in units of the per-element noise std at noise=1. At 5, shape [1,16,16], 4000
# samples: a 256-unit MLP fits train to 100% and scores ~79% on test, logistic regression ~57%.
_SYNTH_SEPARATION = 5.0
_SYNTH_COARSE = 4  # prototypes are drawn on a 4x4 (or length-4) grid and upsampled: smooth patterns
_SYNTH_GREY_PER_UNIT = 32.0  # image kind: grey levels per unit of signal, so 128 +- 4 units fits in uint8
_SYNTH_CHUNK = 4096  # examples generated per chunk: keeps the noise buffer in cache (~3x faster than one call)


@DATASETS.register("digits")
def digits() -> RawDataset:
    """sklearn's 1797 8x8 handwritten digits (bundled with sklearn), grey levels 0..16; kept in the
    user cache per sklearn version (cached_arrays), so a process reads them without importing sklearn."""
    def make() -> dict:
        from sklearn.datasets import load_digits  # lazy: sklearn import is slow and only this loader needs it

        bunch = load_digits()
        return {"images": bunch.images, "target": bunch.target}

    bunch = cached_arrays("digits", {"scikit-learn": version("scikit-learn")}, ("images", "target"), make)
    x = torch.from_numpy(bunch["images"]).to(torch.uint8).unsqueeze(1)  # (1797, 1, 8, 8), values 0..16
    y = torch.from_numpy(bunch["target"]).long()  # (1797,)
    gen = torch.Generator().manual_seed(_DIGITS_TEST_SEED)
    test_idx, train_idx = stratified_split(y, round(len(y) * _DIGITS_TEST_FRACTION), gen)
    return RawDataset(x[train_idx], y[train_idx], x[test_idx], y[test_idx], num_classes=10, kind="image", scale=16.0)


@DATASETS.register("mnist1d")
def mnist1d(num_samples: int | None) -> RawDataset:
    """MNIST-1D (Greydanus & Kalai, 2024): 10 classes of 40-long signals, generated offline.

    By default exactly the benchmark's own definition: the generator's default arguments
    (`get_dataset_args()`: 5000 samples, 80% train -> 4000 train / 1000 test, seed 42), read
    from the package, not restated here. `dataset.num_samples` changes only the sample count.
    Calls the package's generator directly (`get_dataset` would download, or write a pickle
    into the working directory) and keeps what it made in the user cache (`cached_arrays`).
    """
    if num_samples is not None and num_samples < 10:
        from mnist1d.data import get_dataset_args  # lazy: imports matplotlib, scipy, requests

        raise ConfigError(f"dataset.num_samples={num_samples} is too small for mnist1d; valid values: >= 10 "
                          f"(default: the benchmark's {get_dataset_args().num_samples})")
    data = _mnist1d_arrays(num_samples)

    def signals(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).float().unsqueeze(1)  # (N, 40) float64 -> (N, 1, 40) float32

    return RawDataset(
        signals(data["x"]),
        torch.from_numpy(data["y"]).long(),
        signals(data["x_test"]),
        torch.from_numpy(data["y_test"]).long(),
        num_classes=10,
        kind="sequence",
        scale=1.0,
    )


def cache_dir() -> Path:
    """Where bundled datasets are kept between processes: $REGBENCH_CACHE_DIR, else
    $XDG_CACHE_HOME/regbench, else ~/.cache/regbench (the usual place for a tool's caches)."""
    if os.environ.get("REGBENCH_CACHE_DIR"):
        return Path(os.environ["REGBENCH_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "regbench"


CACHE_FORMAT = 1  # part of every cache key: a change to what is stored makes new entries, never misreads old ones
# a damaged entry: a truncated zip, an empty file (EOFError), a bare .npy under the name (TypeError), a missing array
_UNREADABLE = (OSError, EOFError, KeyError, TypeError, ValueError, zipfile.BadZipFile)


def cached_arrays(name: str, key: dict, names: tuple[str, ...], make: Callable[[], dict]) -> dict[str, np.ndarray]:
    """make()'s arrays `names`, made once per `key` and then read from cache_dir()/name/: making them
    costs seconds (generating MNIST-1D ~3 s; importing sklearn for digits ~1 s), reading the file
    ~10 ms, and every process of a sweep needs them. The key is `key` (the maker's package version
    and arguments) plus numpy's and scipy's versions and CACHE_FORMAT. The file is written whole
    (files.atomic_write_text) and read back exactly (same dtypes); an unreadable or
    unwritable cache is skipped, never an error: make() is the truth."""
    blob = json.dumps({**key, "numpy": version("numpy"), "scipy": version("scipy"), "format": CACHE_FORMAT},
                      sort_keys=True)
    try:
        path = cache_dir() / name / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.npz"
    except RuntimeError as e:  # no home folder to put a cache in (HOME unset, no passwd entry)
        log.debug("%s: no cache folder (%s)", name, e)
        return {k: np.asarray(v) for k, v in make().items() if k in names}
    try:
        with np.load(path) as f:
            return {k: f[k] for k in names}
    except _UNREADABLE:
        pass  # not cached yet, or a damaged file: make them (and replace it)
    made = make()
    arrays = {k: np.asarray(made[k]) for k in names}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write_text(path, buf.getvalue())
    except OSError as e:  # read-only home, full disk: the next process makes them again
        log.debug("%s: not cached in %s (%s)", name, path.parent, e)
    return arrays


def _mnist1d_arrays(num_samples: int | None) -> dict[str, np.ndarray]:
    """make_dataset(get_dataset_args())'s four arrays (num_samples, if given, replacing the default
    count), cached per (package version, num_samples): the version stands for its default arguments.
    The generator reseeds the global numpy/random state (its fixed seed), so both are restored."""

    def make() -> dict:
        from mnist1d.data import get_dataset_args, make_dataset  # lazy: imports matplotlib, scipy, requests

        args = get_dataset_args()
        if num_samples is not None:
            args.num_samples = int(num_samples)  # rounded down to a multiple of 10 by the generator
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            return make_dataset(args)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

    return cached_arrays("mnist1d", {"mnist1d": version("mnist1d"), "num_samples": num_samples},
                         ("x", "y", "x_test", "y_test"), make)


@DATASETS.register("synthetic")
def synthetic(shape: tuple[int, ...], num_classes: int, num_samples: int | None, noise: float,
              split_seed: int) -> RawDataset:
    """Gaussian mixture around smooth random prototypes, any shape, generated in well under a second.

    shape [C,H,W] -> uint8 images; [C,L] (or [L], read as [1,L]) -> float32 sequences.
    Each class has a few prototypes of fixed norm, so difficulty depends on `noise`, not
    on the input size. Uses its own generator seeded by split_seed.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        shape = (1,) + shape  # a flat vector is a one-channel sequence
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ConfigError(f"dataset.shape={list(shape)} is not valid; valid values: [C,H,W] or [C,L], all >= 1")
    if num_classes < 2:
        raise ConfigError(f"dataset.num_classes={num_classes} is not valid; valid values: >= 2")
    if num_samples is None:
        num_samples = _SYNTH_SAMPLES
    if num_samples < 2 * num_classes:
        raise ConfigError(f"dataset.num_samples={num_samples} is too small; valid values: >= {2 * num_classes}")
    if noise < 0:
        raise ConfigError(f"dataset.noise={noise} is out of range; valid values: >= 0")

    gen = torch.Generator().manual_seed(int(split_seed))
    image = len(shape) == 3
    spatial = shape[1:]  # (H, W) or (L,)
    coarse = tuple(min(_SYNTH_COARSE, s) for s in spatial)

    # Prototypes: (K*M, C, *coarse) random -> upsampled to (K*M, C, *spatial), each rescaled to norm SEPARATION.
    protos = torch.randn((num_classes * _SYNTH_MODES, shape[0]) + coarse, generator=gen)
    protos = F.interpolate(protos, size=spatial, mode="bilinear" if image else "linear", align_corners=False)
    protos = protos - protos.mean(dim=tuple(range(1, protos.dim())), keepdim=True)
    protos = protos * (_SYNTH_SEPARATION / protos.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, *[1] * len(shape))

    y = torch.arange(num_samples) % num_classes  # balanced classes...
    y = y[torch.randperm(num_samples, generator=gen)]  # ...in random order
    mode = y * _SYNTH_MODES + torch.randint(_SYNTH_MODES, (num_samples,), generator=gen)  # (N,) prototype index

    x = torch.empty((num_samples,) + shape, dtype=torch.uint8 if image else torch.float32)
    for start in range(0, num_samples, _SYNTH_CHUNK):
        m = mode[start : start + _SYNTH_CHUNK]
        signal = torch.empty((len(m),) + shape).normal_(generator=gen).mul_(noise).add_(protos[m])
        if image:  # quantise: 128 +- GREY_PER_UNIT per unit of signal, clipped to 0..255
            signal = signal.mul_(_SYNTH_GREY_PER_UNIT).add_(128.0).round_().clamp_(0, 255)
        x[start : start + len(m)] = signal

    n_train = round(num_samples * _SYNTH_TRAIN_FRACTION)
    return RawDataset(
        x[:n_train],
        y[:n_train],
        x[n_train:],
        y[n_train:],
        num_classes=num_classes,
        kind="image" if image else "sequence",
        scale=255.0 if image else 1.0,
    )
