"""CIFAR-10: 60,000 colour photos, 32x32, ten classes, read through torchvision's ``CIFAR10`` class.

Where the files go: ``<root>/cifar-10-batches-py/`` holding ``data_batch_1`` ... ``data_batch_5``,
``test_batch`` and ``batches.meta`` (pickled dicts, the "python version" of the dataset); ``root``
defaults to ``cache_dir("data")``. With ``download=True`` (the colab profile) the 170 MB archive
``cifar-10-python.tar.gz`` is fetched into ``<root>`` through :func:`t2i_lib.storage.download.fetch`, checked
against its published SHA-256, and unpacked. An archive already in ``<root>`` is unpacked without
downloading.

Splits: ``train`` / ``val`` divide the 50,000 training images (``val_fraction``, default 0.1, by a
fixed permutation); ``test`` is the official 10,000.

Defined in Chapter 2 (the ResNet VAE on CIFAR-10).
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import torch
from torch.utils.data import Dataset

from t2i_lib.data.digits import check_image_size, resize_images
from t2i_lib.data.mnist import holdout_indices
from t2i_lib.data.sources import SOURCES, DatasetNotFoundError, announce, fetch_source, missing_message
from t2i_lib.storage.download import cache_dir, fetch

SPLITS = ("train", "val", "test")
FOLDER = "cifar-10-batches-py"
FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch", "batches.meta")
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def data_dir(root: str | Path | None = None) -> Path:
    return Path(root if root is not None else cache_dir("data")).expanduser()


def _extract(archive: Path, root: Path) -> None:
    """Unpack the batch files from the archive into ``root / FOLDER``. Member by member, regular files
    inside FOLDER only, each written to a temporary name and renamed: no path in the archive can
    write outside that folder, and an interrupted unpack leaves no half-written batch."""
    out = root / FOLDER
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar:
            parts = Path(m.name).parts
            if not m.isfile() or len(parts) != 2 or parts[0] != FOLDER or parts[1] in ("", ".", ".."):
                continue
            dst = out / parts[1]
            tmp = dst.with_name(dst.name + ".tmp")
            with tar.extractfile(m) as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            os.replace(tmp, dst)


def prepare_cifar10(root: str | Path | None = None, download: bool = False) -> Path:
    """Make sure the seven batch files are in ``<root>/cifar-10-batches-py``; return ``root``."""
    root = data_dir(root)
    folder = root / FOLDER
    missing = [f for f in FILES if not (folder / f).is_file()]
    if not missing:
        return root
    src = SOURCES["cifar10/python"]
    archive = root / src.filename
    if download:
        if not archive.is_file():
            announce("CIFAR-10", [src], root)
        fetch_source(fetch, src, archive)   # verifies an archive already there
    elif not archive.is_file():
        raise DatasetNotFoundError(missing_message(
            "CIFAR-10", folder, missing, [src],
            extra=f"(the archive unpacks into that folder; placing {src.filename} in {root} also works)"))
    _extract(archive, root)
    still = [f for f in FILES if not (folder / f).is_file()]
    if still:
        raise DatasetNotFoundError(f"{archive} did not contain {still}; is it the CIFAR-10 python version?")
    return root


def _torchvision_cifar10():
    import torchvision

    class _CIFAR10(torchvision.datasets.CIFAR10):
        # torchvision's reader, with its per-file MD5 check reduced to "the file is there"
        # (check_integrity with md5=None). Why: the archive's SHA-256 is already checked when it
        # is downloaded, re-hashing 180 MB on every construction adds nothing, and the check would
        # refuse the small files in the real format that our tests build.
        train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
        test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
        meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}

    return _CIFAR10


class CIFAR10Dataset(Dataset):
    """Items: (image FloatTensor (3, S, S) in [0, 1], label int); S = 32 unless ``image_size`` is given.

    Defined in Chapter 2.
    """

    def __init__(self, root: str | Path | None = None, split: str = "train", *, image_size: int = 32,
                 download: bool = False, val_fraction: float = 0.1):
        if split not in SPLITS:
            raise ValueError(f"unknown CIFAR-10 split {split!r}; splits: {SPLITS}")
        self.split = split
        self.image_size = check_image_size(image_size)
        root = prepare_cifar10(root, download)
        tv = _torchvision_cifar10()(str(root), train=split != "test", download=False)
        data = torch.from_numpy(tv.data)                     # (N, 32, 32, 3) uint8
        targets = torch.tensor(tv.targets, dtype=torch.long)  # (N,)
        if split != "test":
            idx = torch.from_numpy(holdout_indices(len(targets), val_fraction, split))
            data, targets = data[idx], targets[idx]
        self.data = data.permute(0, 3, 1, 2).contiguous()   # (N, 3, 32, 32) uint8
        self.targets = targets
        self.classes = tuple(tv.classes)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x = self.data[i].float().div_(255)                  # (3, 32, 32)
        if self.image_size != x.shape[-1]:
            x = resize_images(x[None], self.image_size)[0]  # (3, S, S)
        return x, int(self.targets[i])

    def __repr__(self) -> str:
        return f"CIFAR10Dataset(split={self.split!r}, n={len(self)}, image_size={self.image_size})"
