"""MNIST: 70,000 handwritten digits, 28x28 grey, read through torchvision's ``MNIST`` class.

Where the files go: ``<root>/MNIST/raw/``, the four IDX files uncompressed (what torchvision reads),
e.g. ``train-images-idx3-ubyte``; ``root`` defaults to ``cache_dir("data")``. With ``download=True``
(the colab profile) the four original ``.gz`` files (about 11.6 MB) are fetched through
:func:`t2i_lib.storage.download.fetch`, checked against their published SHA-256 (see ``sources.py``) and
unpacked there. A ``.gz`` already in that folder, e.g. copied by hand, is unpacked without any download.

Splits: ``train`` and ``val`` divide the 60,000 training images (``val_fraction``, default 1/12, i.e.
5,000, chosen by a fixed permutation); ``test`` is the official 10,000.

Defined in Chapter 1 (the colab profile's first dataset).
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from t2i_lib.data.digits import check_image_size, resize_images
from t2i_lib.data.sources import SOURCES, DatasetNotFoundError, announce, fetch_source, missing_message
from t2i_lib.storage.download import cache_dir, fetch

SPLITS = ("train", "val", "test")
_SPLIT_SEED = 20240501  # fixes the train/val division forever; not the training seed

# source key -> the uncompressed file torchvision reads
RAW_FILES = {
    "mnist/train-images": "train-images-idx3-ubyte",
    "mnist/train-labels": "train-labels-idx1-ubyte",
    "mnist/test-images": "t10k-images-idx3-ubyte",
    "mnist/test-labels": "t10k-labels-idx1-ubyte",
}


def raw_dir(root: str | Path | None = None) -> Path:
    """Where torchvision looks for the IDX files: ``<root>/MNIST/raw``."""
    return Path(root if root is not None else cache_dir("data")).expanduser() / "MNIST" / "raw"


def _gunzip(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    os.replace(tmp, dst)  # never a half-written IDX file


def prepare_mnist(root: str | Path | None = None, download: bool = False) -> Path:
    """Make sure the four raw IDX files are in ``<root>/MNIST/raw``; return that folder.

    Missing files are unpacked from ``.gz`` files in the same folder; with ``download=True``,
    missing ``.gz`` files are fetched first (and ones already there are checked against their hash).
    With ``download=False`` and nothing to unpack, raises DatasetNotFoundError saying what goes where.
    """
    raw = raw_dir(root)
    missing = [k for k, name in RAW_FILES.items() if not (raw / name).is_file()]
    if not missing:
        return raw
    if download:
        to_fetch = [k for k in missing if not (raw / SOURCES[k].filename).is_file()]
        if to_fetch:
            announce("MNIST", [SOURCES[k] for k in to_fetch], raw)
        for k in missing:   # already-present .gz files are only verified, not downloaded
            fetch_source(fetch, SOURCES[k], raw / SOURCES[k].filename)
    else:
        absent = [k for k in missing if not (raw / SOURCES[k].filename).is_file()]
        if absent:
            raise DatasetNotFoundError(missing_message(
                "MNIST", raw, [f"{RAW_FILES[k]}  (or {SOURCES[k].filename})" for k in absent],
                [SOURCES[k] for k in absent]))
    for k in missing:
        _gunzip(raw / SOURCES[k].filename, raw / RAW_FILES[k])
    return raw


def holdout_indices(n: int, val_fraction: float, split: str) -> np.ndarray:
    """Fixed train/val division of ``n`` training items (sorted indices of ``split``)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(n * val_fraction))
    if split == "val" and n_val == 0:
        raise ValueError(f"the val split is empty (val_fraction={val_fraction} of {n} images)")
    perm = np.random.RandomState(_SPLIT_SEED).permutation(n)  # legacy generator: a stable stream
    return np.sort(perm[:n_val] if split == "val" else perm[n_val:])


class MNISTDataset(Dataset):
    """Items: (image FloatTensor (1, S, S) in [0, 1], label int); S = 28 unless ``image_size`` is given.

    Defined in Chapter 1.
    """

    classes = tuple(str(d) for d in range(10))

    def __init__(self, root: str | Path | None = None, split: str = "train", *, image_size: int = 28,
                 download: bool = False, val_fraction: float = 1 / 12):
        import torchvision

        if split not in SPLITS:
            raise ValueError(f"unknown MNIST split {split!r}; splits: {SPLITS}")
        self.split = split
        self.image_size = check_image_size(image_size)
        raw = prepare_mnist(root, download)
        tv = torchvision.datasets.MNIST(str(raw.parent.parent), train=split != "test", download=False)
        data, targets = tv.data, tv.targets                  # (N, 28, 28) uint8, (N,) int64
        if split != "test":
            idx = torch.from_numpy(holdout_indices(len(targets), val_fraction, split))
            data, targets = data[idx], targets[idx]
        self.data = data.contiguous()                       # kept as uint8: 4x less memory
        self.targets = targets.contiguous()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x = self.data[i].float().div_(255).unsqueeze(0)     # (1, 28, 28)
        if self.image_size != x.shape[-1]:
            x = resize_images(x[None], self.image_size)[0]  # (1, S, S)
        return x, int(self.targets[i])

    def __repr__(self) -> str:
        return f"MNISTDataset(split={self.split!r}, n={len(self)}, image_size={self.image_size})"
