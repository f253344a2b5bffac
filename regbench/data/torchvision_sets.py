"""Standard image datasets read through the real torchvision dataset classes.

Tensors come straight from the dataset object's `.data` / `.targets` / `.labels`
arrays (no per-sample loop, no PIL). torchvision is imported inside the loaders so
`import regbench.data` stays cheap. A missing or failed download becomes a one-line
ConfigError naming the folder torchvision looked in and the files it expects there.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from regbench.core.errors import ConfigError
from regbench.data.base import DATASETS, RawDataset

# registry name -> (torchvision class name, number of classes)
_SETS = {
    "mnist": ("MNIST", 10),
    "fashion_mnist": ("FashionMNIST", 10),
    "kmnist": ("KMNIST", 10),
    "cifar10": ("CIFAR10", 10),
    "cifar100": ("CIFAR100", 100),
    "svhn": ("SVHN", 10),
}
_REASON_CHARS = 240  # torchvision's own error text is cut to this length in our one-line message


def _expected_files(cls: Any, root: str) -> tuple[str, list[str]]:
    """(folder, file names) torchvision reads for this class, taken from the class itself to stay in sync."""
    if hasattr(cls, "resources"):  # MNIST family: <root>/<ClassName>/raw/<name without .gz>
        return os.path.join(root, cls.__name__, "raw"), [name.removesuffix(".gz") for name, _ in cls.resources]
    if hasattr(cls, "base_folder"):  # CIFAR: <root>/<base_folder>/{batches, meta}
        files = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return os.path.join(root, cls.base_folder), files
    return root, [cls.split_list[s][1] for s in ("train", "test")]  # SVHN: <root>/{train,test}_32x32.mat


def _open(name: str, root: str, download: bool, train: bool) -> Any:
    """Instantiate the torchvision dataset, turning its errors into one-line ConfigErrors."""
    import torchvision.datasets as tvd  # lazy: heavy import, only needed for these datasets

    cls = getattr(tvd, _SETS[name][0])
    split = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
    folder, files = _expected_files(cls, root)
    try:
        return cls(root, download=download, **split)
    except Exception as err:  # any failure here is a data-setup problem for the user, not a bug
        # torchvision's messages span lines (MNIST lists every mirror): squeeze to one short line
        reason = f"{type(err).__name__}: {' '.join(str(err).split())}"[:_REASON_CHARS]
        missing = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
        where = f"put the files {', '.join(files)} in {folder}"
        if download:
            raise ConfigError(
                f"dataset {name}: download into {root} failed ({reason}); no network? "
                f"{where} and keep dataset.download=false"
            ) from None
        if missing:
            which = "" if len(missing) == len(files) else f" (missing: {', '.join(missing)})"
            raise ConfigError(
                f"dataset {name}: files not found in {folder}{which}; {where} or set dataset.download=true"
            ) from None
        raise ConfigError(
            f"dataset {name}: files in {folder} could not be read or failed torchvision's checksum "
            f"({reason}); replace them or set dataset.download=true"
        ) from None


def _images(data: Any, layout: str) -> torch.Tensor:
    """The dataset's .data as uint8 (N,C,H,W). layout: 'NHW' (MNIST), 'NHWC' (CIFAR), 'NCHW' (SVHN)."""
    # from_numpy keeps numpy's strides: CIFAR's .data is an NHWC view of an NCHW buffer, so the
    # permute below lands back on the original memory order and .contiguous() copies nothing.
    t = data if isinstance(data, torch.Tensor) else torch.from_numpy(data)
    if layout == "NHW":
        return t.unsqueeze(1)  # (N,28,28) -> (N,1,28,28)
    if layout == "NHWC":
        t = t.permute(0, 3, 1, 2)  # (N,32,32,3) -> (N,3,32,32)
    return t.contiguous()  # batches are sliced from it: keep it dense


def _labels(targets: Any) -> torch.Tensor:
    """.targets / .labels (tensor, list or numpy) -> int64 (N,)."""
    return torch.as_tensor(np.asarray(targets), dtype=torch.int64)


def _load(name: str, root: str, download: bool) -> RawDataset:
    layout = {"cifar10": "NHWC", "cifar100": "NHWC", "svhn": "NCHW"}.get(name, "NHW")
    parts = []
    for train in (True, False):
        ds = _open(name, root, download, train)
        targets = ds.labels if name == "svhn" else ds.targets
        parts += [_images(ds.data, layout), _labels(targets)]
    return RawDataset(*parts, num_classes=_SETS[name][1], kind="image", scale=255.0)


def _register(name: str) -> None:
    def loader(root: str, download: bool) -> RawDataset:
        return _load(name, root, download)

    loader.__name__ = loader.__qualname__ = name
    loader.__doc__ = f"torchvision.datasets.{_SETS[name][0]} from `root` (uint8 images, official train/test split)."
    DATASETS.register(name)(loader)


for _name in _SETS:
    _register(_name)
