"""Digits: scikit-learn's 1,797 real handwritten digits (8x8, from the UCI "optdigits" set), offline.

The quick profile's stand-in for MNIST. Both are handwritten digits 0-9 with one grey channel; Digits
is tiny (1,797 images shipped inside scikit-learn) and coarse (8x8, 17 grey levels). We upsample it
bilinearly to 28x28 by default so that the very same MNIST architectures run on it unchanged; the
upsampling adds no detail, so expect smooth, blurry-looking digits.

Splits are fixed and stratified (every class split 70 / 10 / 20 into train / val / test), so results
are comparable across runs and machines: 1,258 / 179 / 360 images.

Defined in Chapter 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")
FRACTIONS = (0.7, 0.1, 0.2)   # train, val, test, per class
_SPLIT_SEED = 20240501        # fixes the split forever; not the training seed


@dataclass
class DigitsConfig:
    split: str = "train"      # train | val | test
    image_size: int = 28      # 8 is the native resolution; 28 matches MNIST


def check_image_size(image_size, lo: int = 4, hi: int = 1024) -> int:
    """Common validation for loaders that resize: a positive int in [lo, hi]."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or not lo <= int(image_size) <= hi:
        raise ValueError(f"image_size must be an integer between {lo} and {hi} pixels, got {image_size!r}")
    return int(image_size)


def split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    """Indices of ``split`` in a stratified 70/10/20 split fixed by ``_SPLIT_SEED``."""
    if split not in SPLITS:
        raise ValueError(f"unknown Digits split {split!r}; splits: {SPLITS}")
    rs = np.random.RandomState(_SPLIT_SEED)   # the legacy generator: its stream never changes
    k = SPLITS.index(split)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rs.permutation(len(idx))]
        n_train = int(round(FRACTIONS[0] * len(idx)))
        n_val = int(round(FRACTIONS[1] * len(idx)))
        bounds = (0, n_train, n_train + n_val, len(idx))
        out.append(idx[bounds[k]:bounds[k + 1]])
    return np.sort(np.concatenate(out))


def resize_images(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """(N, C, h, w) float -> (N, C, S, S), bilinear (antialiased when shrinking), clamped to [0, 1]."""
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    shrink = image_size < min(images.shape[-2:])
    out = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False,
                        antialias=shrink)
    return out.clamp_(0.0, 1.0)


class DigitsDataset(Dataset):
    """Items: (image FloatTensor (1, S, S) in [0, 1], label int). Defined in Chapter 1."""

    classes = tuple(str(d) for d in range(10))

    def __init__(self, config: DigitsConfig | None = None, **kw):
        from sklearn.datasets import load_digits

        cfg = replace(config, **kw) if config is not None else DigitsConfig(**kw)
        cfg.image_size = check_image_size(cfg.image_size)
        self.config = cfg
        bunch = load_digits()
        images, labels = bunch.images, bunch.target      # (1797, 8, 8) in 0..16, (1797,)
        idx = split_indices(labels, cfg.split)
        x = torch.from_numpy(images[idx]).float().div_(16.0).unsqueeze(1)   # (N, 1, 8, 8)
        self.images = resize_images(x, cfg.image_size).contiguous()       # (N, 1, S, S)
        self.labels = torch.from_numpy(labels[idx].astype(np.int64))      # (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])

    def __repr__(self) -> str:
        return f"DigitsDataset(split={self.config.split!r}, n={len(self)}, image_size={self.config.image_size})"
