"""Dataset registry -> tensors on the target device (docs/architecture.md).

    from regbench.data import build_splits
    splits = build_splits(cfg.dataset, device)      # DataSplits: uint8/float tensors on device
    xb = splits.normalize(splits.x_train[idx])       # float32, ~zero mean / unit std per channel

Importing this package registers every loader but imports neither torchvision's
datasets nor sklearn nor mnist1d: each loader imports what it needs when called.

The catalogue layer (data, models, regularizers), above core: these three may import each other
(a mixing augmentation is a regularizer run by the data pipeline) and core; nothing higher.
"""

from regbench.data import bundled, torchvision_sets  # noqa: F401  (imported so their loaders register)
from regbench.data.base import DATASETS, DataSplits, RawDataset, build_splits, clear_cache, load_raw, stratified_split

__all__ = ["DATASETS", "DataSplits", "RawDataset", "build_splits", "clear_cache", "load_raw", "stratified_split"]
