"""Data sets, seeded subsets and preprocessing (include/nk_data.h), with the same random
choices and arithmetic as `nkern classify`."""
import numpy as np

from ._lib import ffi, lib, call, InArray, InputError, to_numpy, free_array

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_SPLIT = {"train": 0, "test": 1}


def _split(split):
    if split not in _SPLIT:
        raise InputError("split: %r (use 'train' or 'test')" % (split,), 2)
    return _SPLIT[split]


def _take_dataset(ds):
    try:
        x, y = to_numpy(ds.x), to_numpy(ds.y)
    finally:
        lib.nk_dataset_free(ds)
    return x, y.astype(np.int64)


def fashion_mnist(split="train", dir=None):
    """Fashion-MNIST (Debian's dataset-fashion-mnist, or dir): images (N, 28, 28, 1) float64 in
    0..255 and labels (N) int64."""
    ds = ffi.new("nk_dataset *")
    call(lib.nk_fashion_mnist_load, dir.encode() if dir else ffi.NULL, _split(split), ds)
    return _take_dataset(ds)


def cifar10(dir, split="train", n_max=0):
    """CIFAR-10's binary batches in dir: images (N, 32, 32, 3) float64 in 0..255 and labels;
    n_max > 0 keeps the first n_max."""
    ds = ffi.new("nk_dataset *")
    call(lib.nk_cifar10_load, dir.encode(), _split(split), int(n_max), ds)
    return _take_dataset(ds)


def load(path):
    """A data file as the CLI reads it: .npy (float32/float64/uint8) or IDX (*-ubyte[.gz];
    images get a trailing channel axis), as float64."""
    out = ffi.new("nk_array *")
    try:
        reader = lib.nk_npy_read if str(path).endswith(".npy") else lib.nk_idx_read
        call(reader, str(path).encode(), out)
        return to_numpy(out)
    finally:
        free_array(out)


def subset_indices(labels, n, balanced=False, seed=0):
    """n distinct row indices in random order (splitmix64 from seed), balanced per class on
    request: the indices `nkern classify --train n [--balanced] --seed S` draws."""
    lab = InArray(np.asarray(labels).reshape(-1), "labels")
    idx = np.empty(int(n), dtype=np.uintp)
    call(lib.nk_subset_indices, lab.c, int(n), int(bool(balanced)), int(seed),
         ffi.cast("size_t *", ffi.from_buffer(idx)))
    return idx.astype(np.intp)


def subset(x, y, n, balanced=False, seed=0):
    """(x[idx], y[idx]) for idx = subset_indices(y, n, balanced, seed)."""
    idx = subset_indices(y, n, balanced, seed)
    return np.asarray(x)[idx], np.asarray(y)[idx]


def _inplace(fn, x, *args):
    a = InArray(np.array(x, dtype=np.float64, order="C"), "x", writable=True)
    call(fn, a.c, *args)
    return a.array


def unit_range(x, lo=0.0, hi=255.0):
    """(x - lo) / (hi - lo), computed as the library does (pixels to [0, 1]); a new array."""
    return _inplace(lib.nk_prep_unit_range, x, float(lo), float(hi))


def standardize(x, kind="var"):
    """Per sample: subtract its mean, divide by its standard deviation (kind "var") or its L2
    norm (kind "norm"); a new array."""
    if kind not in ("var", "norm"):
        raise InputError("kind: %r (use 'var' or 'norm')" % (kind,), 2)
    return _inplace(lib.nk_prep_standardize, x, 1 if kind == "var" else 0)


class ZCA:
    """ZCA whitening fitted on training samples: W = U (Lambda + eps mean(Lambda) I)^(-1/2) U^T
    of the features' covariance; transform(x) applies x <- W (x - mean)."""

    def __init__(self, x_train, eps=0.1):
        a = InArray(x_train, "x_train")
        out = ffi.new("nk_zca **")
        call(lib.nk_zca_fit, a.c, float(eps), out)
        self._z = ffi.gc(out[0], lib.nk_zca_free)

    def transform(self, x):
        return _inplace(lambda c, err: lib.nk_zca_apply(self._z, c, err), x)
