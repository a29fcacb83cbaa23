"""The datasets, behind one entry point: ``get_dataset(name, split, ...)``.

::

    ==========  =====================================================  ================  ===============
    name        what                                                    item              needs files?
    ==========  =====================================================  ================  ===============
    shapes      coloured shapes with captions, drawn on demand          dict (see below)  no
    digits      scikit-learn's 8x8 handwritten digits, resized to 28    (image, label)    no
    mnist       MNIST 28x28 (torchvision)                               (image, label)    11.6 MB
    cifar10     CIFAR-10 32x32 (torchvision)                            (image, label)    170 MB
    coco        COCO Captions 2017 (pycocotools)                        dict (see below)  0.25 GB + images
    ==========  =====================================================  ================  ===============

Images are float tensors in [0, 1], channels first. Shapes items are
``dict(image, caption, attrs)``; COCO items ``dict(image, caption, captions, image_id)``.

The quick profile uses the first two (offline). ``download`` defaults to True only in the colab
profile; with ``download=False`` a missing dataset raises :class:`~t2i_lib.data.sources.DatasetNotFoundError` saying what to
put where. Files live under ``root`` (default ``cache_dir("data")``: ``$T2I_CACHE/data``).

Modules:

- ``batches``: ``images_of``, ``stack_dataset`` (Chapter 1), ``stack_items``, ``batched``, ``RGBDataset`` (Chapter 4): batches and datasets as tensors
- ``checks``: ``check_images`` and ``check_tokens``, the one validation of images and tokens (Chapter 1; tokens: Chapter 4)
- ``sources``: where each downloadable dataset comes from, its files, sizes and SHA-256 pins (Chapter 1)
- ``digits``: scikit-learn's Digits, the offline MNIST stand-in (Chapter 1)
- ``mnist``: MNIST from its IDX files (Chapter 1)
- ``cifar``: CIFAR-10 from its pickled batches (Chapter 2)
- ``coco``: COCO Captions 2017, images and captions through pycocotools (Chapter 5)
- ``shapes/``: the Shapes world, its renderer, captions, scorer and dataset (Chapter 4)
- ``token_cache``: a dataset's image tokens, encoded once into a resumable memory-mapped file, and a simulated disconnect (Chapter 5)

Defined in Chapter 1 (each dataset's own module names the chapter that introduces it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from t2i_lib.data.batches import RGBDataset, batched, images_of, stack_dataset, stack_items
from t2i_lib.data.sources import SOURCES, DatasetNotFoundError

__all__ = ["get_dataset", "images_of", "stack_dataset", "stack_items", "batched", "RGBDataset", "DATASETS", "DatasetInfo", "DatasetNotFoundError", "SOURCES"]




@dataclass(frozen=True)
class DatasetInfo:
    description: str
    splits: tuple[str, ...]
    offline: bool                                    # True: nothing to download, ever
    default_size: Callable[[object], int]            # profile -> default image_size
    build: Callable[..., object]                     # (split, root, image_size, download, **kw) -> Dataset


def _shapes(split, root, image_size, download, **kw):
    from t2i_lib.data.shapes.dataset import ShapesDataset
    return ShapesDataset(split=split, image_size=image_size, **kw)


def _digits(split, root, image_size, download, **kw):
    from t2i_lib.data.digits import DigitsDataset
    return DigitsDataset(split=split, image_size=image_size, **kw)


def _mnist(split, root, image_size, download, **kw):
    from t2i_lib.data.mnist import MNISTDataset
    return MNISTDataset(root, split, image_size=image_size, download=download, **kw)


def _cifar10(split, root, image_size, download, **kw):
    from t2i_lib.data.cifar import CIFAR10Dataset
    return CIFAR10Dataset(root, split, image_size=image_size, download=download, **kw)


def _coco(split, root, image_size, download, **kw):
    from t2i_lib.data.coco import COCOCaptions
    return COCOCaptions(root, split, image_size=image_size, download=download, **kw)


DATASETS: dict[str, DatasetInfo] = {
    "shapes": DatasetInfo("synthetic captioned shapes (offline, the text-to-image backbone)",
                          ("train", "val", "test", "heldout", "test_unseen"), True,
                          lambda p: p.pick(32, 64), _shapes),
    "digits": DatasetInfo("scikit-learn handwritten digits, 8x8 resized (offline MNIST stand-in)",
                          ("train", "val", "test"), True, lambda p: 28, _digits),
    "mnist": DatasetInfo("MNIST handwritten digits, 28x28", ("train", "val", "test"), False,
                         lambda p: 28, _mnist),
    "cifar10": DatasetInfo("CIFAR-10 photos, 32x32, 10 classes", ("train", "val", "test"), False,
                           lambda p: 32, _cifar10),
    "coco": DatasetInfo("COCO Captions 2017 photos with captions", ("train", "val"), False,
                        lambda p: p.pick(32, 64), _coco),
}


def get_dataset(name: str, split: str = "train", *, profile=None, root=None, image_size: int | None = None,
                download: bool | None = None, **kw):
    """Build a dataset by name. Defined in Chapter 1.

    ``profile``: a :class:`~t2i_lib.profiles.Profile` or its name (default: ``get_profile()``); it picks
    the default ``image_size`` and whether to download. ``download`` defaults to True only in the colab
    profile. Extra keywords go to the dataset class (e.g. Shapes' ``length``, COCO's ``max_images``).
    """
    from t2i_lib.profiles import Profile, get_profile

    key = str(name).strip().lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    info = DATASETS[key]
    if split not in info.splits:
        raise ValueError(f"dataset {key!r} has no split {split!r}; splits: {', '.join(info.splits)}")
    if not isinstance(profile, Profile):
        profile = get_profile(profile)
    if download is None:
        download = profile.name == "colab"
    if image_size is None:
        image_size = info.default_size(profile)
    return info.build(split, root, image_size, bool(download), **kw)
