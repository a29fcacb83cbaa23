"""Small datasets written in the real on-disk formats, where the library looks for them.

The loaders are tested on these (``test_data.py``), and the colab rehearsal
(``test_colab_rehearsal.py``) runs whole chapters on them. Pixels are random: these files check
formats and code paths, never what a model learns.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def idx_images(a: np.ndarray) -> bytes:
    """MNIST's IDX image format: magic 2051, then (N, H, W) big-endian, then uint8 pixels."""
    return struct.pack(">IIII", 0x00000803, *a.shape) + a.astype(np.uint8).tobytes()


def idx_labels(a: np.ndarray) -> bytes:
    """MNIST's IDX label format: magic 2049, then N, then uint8 labels."""
    return struct.pack(">II", 0x00000801, len(a)) + a.astype(np.uint8).tobytes()


def write_mnist(data_root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """The four raw IDX files in ``<data_root>/MNIST/raw`` (where torchvision reads them)."""
    rng = np.random.RandomState(seed)
    raw = Path(data_root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_images(rng.randint(0, 256, (n, 28, 28))))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_labels(rng.randint(0, 10, n)))
    return raw


def write_cifar_batch(path: Path, n: int, rng: np.random.RandomState, label: str) -> dict:
    """One pickled batch of CIFAR-10's "python version": rows of 1024 R, 1024 G, 1024 B bytes."""
    batch = {"batch_label": label, "labels": [int(v) for v in rng.randint(0, 10, n)],
             "data": rng.randint(0, 256, (n, 3072)).astype(np.uint8),
             "filenames": [f"{label.replace(' ', '_')}_{j}.png" for j in range(n)]}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)
    return batch


def write_cifar10(data_root: Path, n_per_train_batch: int, n_test: int, seed: int = 1) -> Path:
    """``<data_root>/cifar-10-batches-py``: five training batches, the test batch and batches.meta."""
    rng = np.random.RandomState(seed)
    folder = Path(data_root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", n_per_train_batch, rng, f"training batch {i} of 5")
    write_cifar_batch(folder / "test_batch", n_test, rng, "testing batch 1 of 1")
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": n_per_train_batch, "label_names": list(CIFAR_CLASSES),
                     "num_vis": 3072}, f, protocol=2)
    return folder


def write_coco(data_root: Path, n_images: dict[str, int], size=(48, 36), seed: int = 2) -> Path:
    """``<data_root>/coco``: captions_{split}2017.json (five captions per image) and the JPEGs in
    ``{split}2017/``, for each split in ``n_images`` (e.g. ``{"train": 16, "val": 512}``)."""
    rng = np.random.RandomState(seed)
    coco = Path(data_root) / "coco"
    (coco / "annotations").mkdir(parents=True, exist_ok=True)
    iid, aid = 1, 1
    for split, n in n_images.items():
        folder = coco / f"{split}2017"
        folder.mkdir(exist_ok=True)
        images, anns = [], []
        for _ in range(n):
            name = f"{iid:012d}.jpg"
            w, h = size
            Image.fromarray(rng.randint(0, 256, (h, w, 3)).astype(np.uint8)).save(folder / name, quality=90)
            images.append({"id": iid, "file_name": name, "width": w, "height": h, "license": 1,
                           "coco_url": f"http://images.cocodataset.org/{split}2017/{name}"})
            for j in range(5):
                anns.append({"id": aid, "image_id": iid, "caption": f"picture {iid}, caption {j}"})
                aid += 1
            iid += 1
        captions = {"info": {"description": "t2i-book test data"}, "licenses": [], "images": images,
                    "annotations": anns}
        (coco / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(captions))
    return coco
