"""regbench.data: bundled datasets, splits, normalisation, and real on-disk torchvision formats.

The torchvision tests write tiny files in the datasets' real formats into tmp_path and
read them back through the real torchvision classes, so no download is needed.
"""

from __future__ import annotations

import pickle
import random
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from regbench.core.errors import ConfigError
from regbench.data import DATASETS, build_splits, clear_cache, load_raw, stratified_split
from regbench.rules.config import DatasetConfig

BUNDLED = {  # name -> config overrides that keep each case fast
    "digits": {},
    "mnist1d": {"num_samples": 300},
    "synthetic": {"shape": [1, 12, 12], "num_samples": 600},
    "synthetic_seq": {"name": "synthetic", "shape": [2, 24], "num_samples": 600},
}


def dcfg(name: str = "digits", **overrides):
    """The `dataset` node as the CLI hands it over: a structured DictConfig."""
    return OmegaConf.structured(DatasetConfig(name=name, **overrides))


def bundled_cfg(case: str, **overrides):
    kw = {"name": case, **BUNDLED[case], **overrides}
    return dcfg(**kw)


# ---------------------------------------------------------------------------- bundled datasets


@pytest.mark.parametrize("case", list(BUNDLED))
def test_bundled_shapes_dtypes_and_sizes(case):
    cfg = bundled_cfg(case, val_fraction=0.25)
    raw = load_raw(cfg)
    s = build_splits(cfg, "cpu")
    image = s.kind == "image"
    assert s.x_train.dtype == (torch.uint8 if image else torch.float32)
    assert s.x_train.dim() == (4 if image else 3)
    for y in (s.y_train, s.y_val, s.y_test):
        assert y.dtype == torch.int64 and y.min() >= 0 and y.max() < s.num_classes
    n_pool = len(raw.y_train)
    assert len(s.y_val) == round(0.25 * n_pool) and len(s.y_train) + len(s.y_val) == n_pool
    assert len(s.y_test) == len(raw.y_test) and s.x_test.shape[1:] == s.x_train.shape[1:]
    assert s.mean.shape == s.std.shape == (1, s.input_shape[0]) + (1,) * (len(s.input_shape) - 1)
    summary = s.summary()
    assert summary["n_train"] + summary["n_val"] == n_pool and summary["input_shape"] == list(s.input_shape)


def test_expected_sizes_of_each_bundled_dataset():
    digits = load_raw(dcfg("digits"))
    assert (len(digits.y_train), len(digits.y_test)) == (1438, 359) and digits.scale == 16
    assert digits.x_train.shape[1:] == (1, 8, 8) and int(digits.x_train.max()) == 16
    m1d = load_raw(bundled_cfg("mnist1d"))
    assert m1d.x_train.shape == (240, 1, 40) and m1d.x_test.shape == (60, 1, 40) and m1d.kind == "sequence"
    syn = load_raw(dcfg("synthetic", shape=[3, 8, 8], num_classes=4, num_samples=100))
    assert syn.x_train.shape == (80, 3, 8, 8) and syn.y_train.max() == 3 and syn.scale == 255
    assert load_raw(dcfg("synthetic", shape=[30], num_samples=100)).x_train.shape == (80, 1, 30)


def test_digits_test_set_does_not_depend_on_split_seed():
    a, b = build_splits(dcfg(split_seed=0), "cpu"), build_splits(dcfg(split_seed=1), "cpu")
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, b.y_test)
    test_counts = torch.bincount(a.y_test, minlength=10)
    assert test_counts.min() >= 35 and test_counts.max() <= 37  # stratified ~20% of ~180 per class


@pytest.mark.parametrize("case", ["digits", "synthetic"])
def test_split_is_deterministic_per_split_seed(case):
    a, b = build_splits(bundled_cfg(case, split_seed=3), "cpu"), build_splits(bundled_cfg(case, split_seed=3), "cpu")
    for key in ("x_train", "y_train", "x_val", "y_val", "x_test", "mean", "std"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    c = build_splits(bundled_cfg(case, split_seed=4), "cpu")
    assert not torch.equal(a.y_train, c.y_train) and not torch.equal(a.x_val, c.x_val)


def test_split_is_stratified_and_in_random_order():
    y = torch.arange(1000) % 7  # unequal classes: 143 or 142 each
    taken, rest = stratified_split(y, 300, torch.Generator().manual_seed(0))
    assert len(taken) == 300 and torch.equal(torch.sort(torch.cat([taken, rest])).values, torch.arange(1000))
    share = torch.bincount(y[taken], minlength=7) / torch.bincount(y, minlength=7).float()
    assert (share - 0.3).abs().max() < 1 / 140  # each class within one example of 30%
    assert not torch.equal(y[taken][:7], torch.arange(7).sort().values)  # not grouped by class


def test_val_and_train_size_subsample_are_stratified():
    s = build_splits(dcfg(val_fraction=0.2, train_size=200), "cpu")
    assert len(s.y_train) == 200
    for y, n in ((s.y_train, 200), (s.y_val, len(s.y_val))):
        counts = torch.bincount(y, minlength=10).float()
        assert (counts - n / 10).abs().max() <= 2  # digits classes are nearly balanced


def test_train_size_too_large_names_value_and_maximum():
    with pytest.raises(ConfigError, match=r"train_size=5000.*1\.\.1150"):
        build_splits(dcfg(train_size=5000), "cpu")


@pytest.mark.parametrize("case", ["digits", "mnist1d", "synthetic_seq"])
def test_normalize_gives_zero_mean_unit_std_on_train(case):
    s = build_splits(bundled_cfg(case), "cpu")
    z = s.normalize(s.x_train)
    dims = [0] + list(range(2, z.dim()))
    assert z.dtype == torch.float32
    assert z.mean(dims).abs().max() < 1e-4
    assert (z.std(dims, correction=0) - 1).abs().max() < 1e-3
    assert s.x_train.dtype == (torch.uint8 if s.kind == "image" else torch.float32)  # storage untouched


def test_normalize_does_not_modify_float_storage():
    s = build_splits(bundled_cfg("mnist1d"), "cpu")
    before = s.x_train.clone()
    s.normalize(s.x_train)
    assert torch.equal(s.x_train, before)


def _rng_states():
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


@pytest.mark.parametrize("case", list(BUNDLED))
def test_no_global_rng_change(case):
    clear_cache()  # so the generator really runs
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    t0, np0, py0 = _rng_states()
    build_splits(bundled_cfg(case, train_size=50), "cpu")
    t1, np1, py1 = _rng_states()
    assert torch.equal(t0, t1)
    assert np0[0] == np1[0] and np.array_equal(np0[1], np1[1]) and np0[2:] == np1[2:]
    assert py0 == py1


def test_mnist1d_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clear_cache()
    build_splits(bundled_cfg("mnist1d"), "cpu")
    assert list(tmp_path.iterdir()) == []


def test_cache_returns_same_raw_and_splits_do_not_alias_it():
    cfg = dcfg()
    raw = load_raw(cfg)
    assert load_raw(cfg) is raw
    s = build_splits(cfg, "cpu")
    assert s.x_test.data_ptr() != raw.x_test.data_ptr()


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown dataset 'nope'.*cifar10.*digits.*mnist1d.*svhn"):
        build_splits(dcfg("nope"), "cpu")


def test_bad_synthetic_shape_is_a_config_error():
    with pytest.raises(ConfigError, match=r"dataset.shape=\[1, 2, 3, 4\]"):
        load_raw(dcfg("synthetic", shape=[1, 2, 3, 4]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_splits_live_on_cuda():
    s = build_splits(dcfg(), "cuda")
    assert all(t.is_cuda for t in (s.x_train, s.y_val, s.x_test, s.mean, s.std))
    assert s.x_train.dtype == torch.uint8 and s.normalize(s.x_train[:8]).is_cuda


# ---------------------------------------------------------------------------- torchvision formats

MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}


def _write_idx(path: Path, arr: np.ndarray, magic: int) -> None:
    """IDX file: big-endian magic (2051 = uint8 3-D images, 2049 = uint8 1-D labels), then each dim."""
    assert magic == 0x0800 + arr.ndim  # 0x08 = unsigned byte, low byte = number of dims
    path.write_bytes(struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())


def _indexed_images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random uint8 images whose first value is the example's index, to trace it through the split."""
    x = np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x.reshape(n, -1)[:, 0] = np.arange(n)
    return x


def _check_traced(s, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> None:
    """Every split row is a written row with its written label; train+val is the training file."""
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    idx = torch.cat([s.x_train, s.x_val]).flatten(1)[:, 0].long()
    assert torch.equal(torch.sort(idx).values, torch.arange(len(yt)))
    assert torch.equal(torch.cat([s.x_train, s.x_val]), xt[idx])
    assert torch.equal(torch.cat([s.y_train, s.y_val]), yt[idx])
    assert torch.equal(s.x_test, torch.from_numpy(x_test)) and torch.equal(s.y_test, torch.from_numpy(y_test).long())


@pytest.mark.parametrize("name", list(MNIST_FOLDERS))
def test_mnist_family_reads_idx_files(tmp_path, name):
    raw = tmp_path / MNIST_FOLDERS[name] / "raw"
    raw.mkdir(parents=True)
    x_tr, x_te = _indexed_images(40, (28, 28), 0), _indexed_images(10, (28, 28), 1)
    y_tr, y_te = (np.arange(40) % 10).astype(np.uint8), (np.arange(10)[::-1] % 10).astype(np.uint8)
    _write_idx(raw / "train-images-idx3-ubyte", x_tr, 2051)
    _write_idx(raw / "train-labels-idx1-ubyte", y_tr, 2049)
    _write_idx(raw / "t10k-images-idx3-ubyte", x_te, 2051)
    _write_idx(raw / "t10k-labels-idx1-ubyte", y_te, 2049)
    s = build_splits(dcfg(name, root=str(tmp_path), val_fraction=0.25), "cpu")
    assert s.input_shape == (1, 28, 28) and s.kind == "image" and s.scale == 255 and len(s.y_val) == 10
    _check_traced(s, x_tr[:, None], y_tr, x_te[:, None], y_te)


def _pickle(path: Path, obj: dict) -> None:
    # The real files are Python 2 pickles with str keys; torchvision loads them with encoding="latin1",
    # which yields str keys ("data", "labels"). They only look like b"data" with encoding="bytes".
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(root: Path, name: str = "cifar10", n_train: int = 50, n_test: int = 10):
    """Small CIFAR files in torchvision's on-disk format under root: -> (x_train, y_train, x_test, y_test)."""
    k, label_key = (10, "labels") if name == "cifar10" else (100, "fine_labels")
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True)
    train_files = [f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"]
    x_tr = _indexed_images(n_train, (3, 32, 32), 0)  # stored as rows of 3072 = R plane, G plane, B plane
    y_tr = np.arange(n_train) * 7 % k
    x_te, y_te = _indexed_images(n_test, (3, 32, 32), 1), np.arange(n_test) * 3 % k
    for file, rows in zip(train_files, np.array_split(np.arange(n_train), len(train_files)), strict=True):
        _pickle(folder / file, {"data": x_tr[rows].reshape(len(rows), 3072), label_key: y_tr[rows].tolist()})
    test_file = "test_batch" if name == "cifar10" else "test"
    _pickle(folder / test_file, {"data": x_te.reshape(n_test, 3072), label_key: y_te.tolist()})
    meta_file, meta_key = ("batches.meta", "label_names") if name == "cifar10" else ("meta", "fine_label_names")
    _pickle(folder / meta_file, {meta_key: [f"class{i}" for i in range(k)]})
    return x_tr, y_tr, x_te, y_te


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_pickled_batches(tmp_path, name, no_md5):
    k = 10 if name == "cifar10" else 100
    x_tr, y_tr, x_te, y_te = write_cifar(tmp_path, name)
    s = build_splits(dcfg(name, root=str(tmp_path), val_fraction=0.2), "cpu")
    assert s.input_shape == (3, 32, 32) and s.num_classes == k and s.x_train.is_contiguous()
    _check_traced(s, x_tr, y_tr, x_te, y_te)


def test_svhn_reads_mat_files(tmp_path, no_md5):
    from scipy.io import savemat

    x_tr, x_te = _indexed_images(30, (3, 32, 32), 0), _indexed_images(10, (3, 32, 32), 1)  # (N,C,H,W)
    y_tr, y_te = np.arange(30) % 10, np.arange(10)
    for file, x, y in (("train_32x32.mat", x_tr, y_tr), ("test_32x32.mat", x_te, y_te)):
        # SVHN stores X as (H,W,C,N) and y as (N,1) with the digit 0 labelled 10
        savemat(tmp_path / file, {"X": x.transpose(2, 3, 1, 0), "y": np.where(y == 0, 10, y).astype(np.uint8)[:, None]})
    s = build_splits(dcfg("svhn", root=str(tmp_path), val_fraction=0.2), "cpu")
    assert s.input_shape == (3, 32, 32) and s.x_train.is_contiguous()
    _check_traced(s, x_tr, y_tr, x_te, y_te)


EXPECTED_FOLDER = {
    "mnist": "MNIST/raw",
    "fashion_mnist": "FashionMNIST/raw",
    "kmnist": "KMNIST/raw",
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "svhn": "",
}


@pytest.mark.parametrize("name", list(EXPECTED_FOLDER))
def test_missing_files_offline_is_one_line_config_error(tmp_path, name):
    folder = str(tmp_path / EXPECTED_FOLDER[name]).rstrip("/")
    with pytest.raises(ConfigError) as err:
        build_splits(dcfg(name, root=str(tmp_path)), "cpu")
    msg = str(err.value)
    assert "\n" not in msg and name in msg and f"{folder} " in msg and "dataset.download=true" in msg
    assert ("train_32x32.mat" if name == "svhn" else "data_batch_1" if name == "cifar10" else "") in msg


@pytest.mark.parametrize("name", list(EXPECTED_FOLDER))
def test_failed_download_is_one_line_config_error(tmp_path, name, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.mnist as tv_mnist
    import torchvision.datasets.svhn as tv_svhn

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    # Patched where torchvision's classes look the functions up, so the test never touches the network.
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    monkeypatch.setattr(tv_svhn, "download_url", offline)
    with pytest.raises(ConfigError) as err:
        build_splits(dcfg(name, root=str(tmp_path), download=True), "cpu")
    msg = str(err.value)
    assert "\n" not in msg and "download" in msg and "no network" in msg and str(tmp_path) in msg


def test_every_registered_dataset_is_covered():
    assert set(DATASETS.names()) == {"digits", "mnist1d", "synthetic"} | set(EXPECTED_FOLDER)


def test_partial_or_corrupt_files_say_which(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"junk")
    with pytest.raises(ConfigError, match=r"missing: data_batch_2, .*test_batch, batches\.meta\)"):
        build_splits(dcfg("cifar10", root=str(tmp_path)), "cpu")
    for file in ["data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"]:
        (folder / file).write_bytes(b"junk")
    with pytest.raises(ConfigError, match=f"files in {folder} could not be read or failed torchvision's checksum"):
        build_splits(dcfg("cifar10", root=str(tmp_path)), "cpu")


def test_mnist1d_defaults_are_the_benchmarks_own_definition():
    """dataset=mnist1d with no overrides is the package's canonical generation: 4000 train / 1000 test."""
    from mnist1d.data import get_dataset_args, make_dataset

    clear_cache()
    raw = load_raw(dcfg("mnist1d"))
    assert (len(raw.y_train), len(raw.y_test)) == (4000, 1000)
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        ref = make_dataset(get_dataset_args())  # the package's own default arguments
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    assert torch.equal(raw.x_train[:, 0], torch.from_numpy(ref["x"]).float())
    assert torch.equal(raw.x_test[:, 0], torch.from_numpy(ref["x_test"]).float())
    assert torch.equal(raw.y_train, torch.from_numpy(ref["y"]).long())
    assert torch.equal(raw.y_test, torch.from_numpy(ref["y_test"]).long())
    splits = build_splits(dcfg("mnist1d"), "cpu")  # the default validation carve-out comes from train only
    assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (3200, 800, 1000)


def _mnist1d_generator_calls(monkeypatch) -> list:
    """Count the package generator's calls (it still runs, so the arrays stay its own)."""
    import mnist1d.data

    calls, real = [], mnist1d.data.make_dataset
    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda args: calls.append(args) or real(args))
    return calls


def test_mnist1d_is_generated_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REGBENCH_CACHE_DIR", str(tmp_path / "cache"))
    calls = _mnist1d_generator_calls(monkeypatch)
    clear_cache()
    first = load_raw(dcfg("mnist1d", num_samples=300))
    assert len(calls) == 1 and len(list((tmp_path / "cache" / "mnist1d").glob("*.npz"))) == 1
    clear_cache()  # a new process: the in-memory cache is gone, the file is not
    second = load_raw(dcfg("mnist1d", num_samples=300))
    assert len(calls) == 1
    for a, b in zip((first.x_train, first.y_train, first.x_test, first.y_test),
                    (second.x_train, second.y_train, second.x_test, second.y_test), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    clear_cache()
    load_raw(dcfg("mnist1d", num_samples=200))  # another sample count is another entry
    assert len(calls) == 2 and len(list((tmp_path / "cache" / "mnist1d").glob("*.npz"))) == 2
    assert not list((tmp_path / "cache" / "mnist1d").glob("*.tmp"))


def test_mnist1d_cache_damaged_or_unwritable_falls_back_to_the_generator(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("REGBENCH_CACHE_DIR", str(cache))
    calls = _mnist1d_generator_calls(monkeypatch)
    clear_cache()
    ref = load_raw(dcfg("mnist1d", num_samples=300))
    (entry,) = (cache / "mnist1d").glob("*.npz")
    damaged = [b"not a zip file", b""]  # a truncated write, an empty file left by a crash, a bare .npy array
    with open(tmp_path / "bare.npy", "wb") as f:
        np.save(f, np.zeros(3))
    damaged.append((tmp_path / "bare.npy").read_bytes())
    for n, content in enumerate(damaged, start=2):
        entry.write_bytes(content)
        clear_cache()
        again = load_raw(dcfg("mnist1d", num_samples=300))
        assert len(calls) == n and torch.equal(again.x_train, ref.x_train)
        with np.load(entry) as f:  # the damaged entry was replaced by a good one
            assert np.array_equal(f["y_test"], ref.y_test.numpy())
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the cache folder should be: nothing can be written
    monkeypatch.setenv("REGBENCH_CACHE_DIR", str(blocked / "cache"))
    clear_cache()
    assert torch.equal(load_raw(dcfg("mnist1d", num_samples=300)).x_test, ref.x_test) and len(calls) == 5


def test_digits_are_read_from_the_cache_without_sklearn_after_the_first_load(tmp_path, monkeypatch):
    import sklearn.datasets

    monkeypatch.setenv("REGBENCH_CACHE_DIR", str(tmp_path / "cache"))
    calls, real = [], sklearn.datasets.load_digits
    monkeypatch.setattr(sklearn.datasets, "load_digits", lambda: calls.append(1) or real())
    clear_cache()
    first = load_raw(dcfg("digits"))
    clear_cache()
    second = load_raw(dcfg("digits"))
    assert len(calls) == 1 and len(list((tmp_path / "cache" / "digits").glob("*.npz"))) == 1
    bunch = real()  # the cached arrays are sklearn's own: same images in the same split
    ref_x = torch.from_numpy(bunch.images).to(torch.uint8)
    assert torch.equal(second.x_train, first.x_train) and torch.equal(second.y_test, first.y_test)
    together = torch.cat([second.x_train, second.x_test])[:, 0]
    assert sorted(map(bytes, together.numpy())) == sorted(map(bytes, ref_x.numpy()))


def test_no_home_folder_means_no_cache_not_an_error(monkeypatch):
    from regbench.data import bundled

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(bundled, "cache_dir", no_home)
    clear_cache()
    raw = load_raw(dcfg("digits"))
    assert len(raw.y_train) + len(raw.y_test) == 1797
