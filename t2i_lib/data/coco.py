"""COCO Captions 2017: photos with five human captions each, read with ``pycocotools.coco.COCO``.

Where the files go (``root`` defaults to ``cache_dir("data")``)::

    <root>/coco/annotations/captions_train2017.json   (and captions_val2017.json)
    <root>/coco/train2017/000000391895.jpg ...          (and val2017/...)

With ``download=True`` (the colab profile) missing files come through :func:`t2i_lib.storage.download.fetch`,
checked against their published SHA-256 (see ``sources.py``):

- ``annotations_trainval2017.zip`` (253 MB); only the two captions files are unpacked from it.
- the image zip of the split: ``val2017.zip`` (816 MB, 5,000 images) or ``train2017.zip`` (19.3 GB,
  118,287 images). Only the images of the chosen subset are unpacked, so ``max_images=20_000`` costs
  20,000 files of disk on top of the zip (delete the zip afterwards if space is short).
- or, with ``images="per_image"``, each chosen image alone from its ``coco_url`` (no zip; there are no
  published per-image hashes, so these files are not verified). Worth it for a few thousand images
  from train2017, whose zip is 19 GB.

Subsets: ``image_ids=[...]`` picks exact images; ``max_images=N`` picks N at random with ``seed``
(the same N images every time); neither: every image that has captions.

Defined in Chapter 5 (caching COCO as image tokens); the report's COCO experiments use it too.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from t2i_lib.data.digits import check_image_size
from t2i_lib.data.sources import SOURCES, DatasetNotFoundError, announce, fetch_source, missing_message
from t2i_lib.storage.download import cache_dir, fetch, human_size

SPLITS = ("train", "val")   # COCO 2017's test images have no public captions
CAPTION_CHOICES = ("random", "first")
_AVG_IMAGE_BYTES = 160_000  # for size estimates of per-image downloads (a COCO JPEG is ~160 KB)


def coco_dir(root: str | Path | None = None) -> Path:
    return Path(root if root is not None else cache_dir("data")).expanduser() / "coco"


def annotation_file(root: str | Path | None, split: str) -> Path:
    return coco_dir(root) / "annotations" / f"captions_{split}2017.json"


def image_dir(root: str | Path | None, split: str) -> Path:
    return coco_dir(root) / f"{split}2017"


def _unzip_members(archive: Path, members: dict[str, Path]) -> None:
    """Extract ``{member name: destination}`` from a zip, each via a temporary name (atomic)."""
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        absent = [m for m in members if m not in names]
        if absent:
            raise DatasetNotFoundError(f"{archive} does not contain {len(absent)} expected member(s), "
                                       f"e.g. {absent[:3]}; is it the right file?")
        for m, dst in members.items():
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".tmp")
            with zf.open(m) as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            os.replace(tmp, dst)


def prepare_annotations(root: str | Path | None, split: str, download: bool) -> Path:
    ann = annotation_file(root, split)
    if ann.is_file():
        return ann
    src = SOURCES["coco/annotations"]
    archive = coco_dir(root) / src.filename
    if download:
        if not archive.is_file():
            announce("COCO Captions 2017 annotations", [src], coco_dir(root))
        fetch_source(fetch, src, archive)
    elif not archive.is_file():
        raise DatasetNotFoundError(missing_message(
            f"COCO Captions 2017 ({split})", ann.parent, [ann.name], [src],
            extra=f"(it is annotations/{ann.name} inside {src.filename}; placing the zip in "
                  f"{coco_dir(root)} also works. The images come after: {split}2017.zip, "
                  f"{human_size(SOURCES[f'coco/{split}2017'].size)}, or images='per_image' for a subset)"))
    _unzip_members(archive, {f"annotations/captions_{s}2017.json": annotation_file(root, s)
                             for s in SPLITS})
    return ann


def _load_coco(ann: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):   # COCO() prints progress lines we do not need
        return COCO(str(ann))


def select_ids(all_ids, *, image_ids=None, max_images: int | None = None, seed: int = 0) -> list[int]:
    """The subset: explicit ``image_ids`` (checked), else ``max_images`` chosen with ``seed``, else all.
    Always returned sorted, so the same arguments give the same order."""
    all_ids = sorted(int(i) for i in all_ids)
    if image_ids is not None:
        wanted = [int(i) for i in image_ids]
        known = set(all_ids)
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise ValueError(f"{len(unknown)} image id(s) have no captions in this split, "
                             f"e.g. {unknown[:5]}")
        return sorted(set(wanted))
    if max_images is None or max_images >= len(all_ids):
        return all_ids
    if max_images < 1:
        raise ValueError(f"max_images must be positive, got {max_images}")
    rs = np.random.RandomState(seed)   # legacy generator: the same subset on every machine
    return sorted(all_ids[j] for j in rs.choice(len(all_ids), size=max_images, replace=False))


def prepare_images(coco, ids: list[int], root: str | Path | None, split: str, download: bool,
                   images: str = "zip") -> None:
    """Make sure the chosen images are in ``<root>/coco/<split>2017``."""
    folder = image_dir(root, split)
    missing = [i for i in ids if not (folder / coco.imgs[i]["file_name"]).is_file()]
    if not missing:
        return
    src = SOURCES[f"coco/{split}2017"]
    archive = coco_dir(root) / src.filename
    if images == "per_image" and download:
        n = len(missing)
        print(f"COCO {split}2017: {n} of the {len(ids)} chosen images are not in {folder}; downloading "
              f"them one by one from images.cocodataset.org (about {n * _AVG_IMAGE_BYTES / 1e6:.0f} MB).")
        for i in missing:
            info = coco.imgs[i]
            url = info.get("coco_url") or f"http://images.cocodataset.org/{split}2017/{info['file_name']}"
            fetch(url, None, folder / info["file_name"], quiet=True)
        return
    if images not in ("zip", "per_image"):
        raise ValueError(f"images must be 'zip' or 'per_image', got {images!r}")
    if download:
        if not archive.is_file():
            announce(f"COCO {split}2017 images ({len(missing)} of the {len(ids)} chosen are missing)",
                     [src], coco_dir(root))
        fetch_source(fetch, src, archive)
    elif not archive.is_file():
        example = ", ".join(coco.imgs[i]["file_name"] for i in missing[:3])
        raise DatasetNotFoundError(missing_message(
            f"COCO {split}2017 images ({len(missing)} of the {len(ids)} chosen are missing)", folder,
            [f"{example}, ... ({len(missing)} files)"], [src],
            extra=f"(unzip {src.filename} in {coco_dir(root)}, or place the zip there, or use a subset "
                  f"with max_images=... and images='per_image' to fetch only those)"))
    _unzip_members(archive, {f"{split}2017/{coco.imgs[i]['file_name']}": folder / coco.imgs[i]["file_name"]
                             for i in missing})


def load_image(path: Path, image_size: int) -> torch.Tensor:
    """JPEG -> RGB, shorter side resized to ``image_size`` (bicubic, antialiased), centre crop.
    Returns FloatTensor (3, S, S) in [0, 1]."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = image_size / min(w, h)
        nw, nh = max(image_size, round(w * scale)), max(image_size, round(h * scale))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - image_size) // 2, (nh - image_size) // 2
        im = im.crop((left, top, left + image_size, top + image_size))
        a = np.asarray(im, dtype=np.uint8)                           # (S, S, 3)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255)  # (3, S, S)


class COCOCaptions(Dataset):
    """Items: dict(image=FloatTensor (3, S, S) in [0, 1], caption=str, captions=list[str], image_id=int).

    ``caption`` is one of the image's captions: a random one each time (``caption_choice="random"``,
    default for train; drawn from torch's global generator, so ``seed_everything`` makes it repeat)
    or always the first (``"first"``, default for val). Use ``collate_fn=COCOCaptions.collate`` in a
    DataLoader. Defined in Chapter 5.
    """

    def __init__(self, root: str | Path | None = None, split: str = "train", *, image_size: int = 64,
                 download: bool = False, max_images: int | None = None, image_ids=None, seed: int = 0,
                 caption_choice: str | None = None, images: str = "zip"):
        if split not in SPLITS:
            raise ValueError(f"unknown COCO Captions split {split!r}; splits: {SPLITS} "
                             f"(COCO 2017's test images have no public captions)")
        caption_choice = caption_choice or ("random" if split == "train" else "first")
        if caption_choice not in CAPTION_CHOICES:
            raise ValueError(f"caption_choice must be one of {CAPTION_CHOICES}, got {caption_choice!r}")
        self.split, self.caption_choice = split, caption_choice
        self.image_size = check_image_size(image_size, lo=8)
        ann = prepare_annotations(root, split, download)
        coco = _load_coco(ann)
        with_captions = [i for i in coco.getImgIds() if coco.imgToAnns.get(i)]
        self.ids = select_ids(with_captions, image_ids=image_ids, max_images=max_images, seed=seed)
        prepare_images(coco, self.ids, root, split, download, images)
        folder = image_dir(root, split)
        self.paths = [folder / coco.imgs[i]["file_name"] for i in self.ids]
        self.all_captions = [[a["caption"].strip() for a in sorted(coco.imgToAnns[i], key=lambda a: a["id"])]
                             for i in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        caps = self.all_captions[i]
        k = int(torch.randint(len(caps), ())) if self.caption_choice == "random" else 0
        return dict(image=load_image(self.paths[i], self.image_size),   # (3, S, S)
                    caption=caps[k], captions=list(caps), image_id=self.ids[i])

    @staticmethod
    def collate(batch: list[dict]) -> dict:
        """DataLoader ``collate_fn``: stacks images, keeps captions as lists. (The default collate
        fails on ``captions``: images have 5 to 7 captions each, and it needs equal lengths.)"""
        return dict(image=torch.stack([b["image"] for b in batch]),          # (B, 3, S, S)
                    caption=[b["caption"] for b in batch],
                    captions=[b["captions"] for b in batch],
                    image_id=torch.tensor([b["image_id"] for b in batch]))   # (B,)

    def __repr__(self) -> str:
        return f"COCOCaptions(split={self.split!r}, n={len(self)}, image_size={self.image_size})"
