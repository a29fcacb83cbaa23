"""Digits, MNIST, CIFAR-10 and COCO Captions loaders, on small files written here in the real formats.

Nothing touches the network: downloads are served from files the tests build, either through the real
``fetch`` with ``file://`` URLs or by standing in for ``fetch`` in the loader module.
"""

import gzip
import json
import pickle
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from fake_data import idx_images, idx_labels
from torch.utils.data import DataLoader

from t2i_lib.data import DATASETS, DatasetNotFoundError, get_dataset
from t2i_lib.data import cifar, coco, mnist
from t2i_lib.data.sources import SOURCES, Source
from t2i_lib.storage.download import sha256_file


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    # Whatever a test forgets to pass as root lands in a temporary cache, never the user's.
    monkeypatch.setenv("T2I_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("T2I_OFFLINE", raising=False)


def _copying_fetch(served: dict[str, Path], calls: list):
    """A stand-in for t2i_lib.storage.download.fetch that serves local files by the URL's file name."""
    def fetch(url, sha256, dest=None, *, size=None, desc=None, allow_download=True, quiet=False):
        calls.append(dict(url=url, sha256=sha256, dest=Path(dest), size=size))
        dest = Path(dest)
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(served[url.rsplit("/", 1)[-1]], dest)
        return dest
    return fetch


# ---------------------------------------------------------------------------------------------------
# Registry

def test_unknown_dataset_and_split_names_are_listed():
    with pytest.raises(ValueError) as e:
        get_dataset("imagenet", profile="quick")
    for name in ("shapes", "digits", "mnist", "cifar10", "coco"):
        assert name in str(e.value)
    assert set(DATASETS) == {"shapes", "digits", "mnist", "cifar10", "coco"}
    with pytest.raises(ValueError, match="train, val"):
        get_dataset("coco", "test", profile="quick")


# ---------------------------------------------------------------------------------------------------
# Digits

def test_digits_splits_shapes_and_values():
    from sklearn.datasets import load_digits

    parts = {s: get_dataset("digits", s, profile="quick") for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [1258, 179, 360]
    x, y = parts["train"][0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)
    for ds in parts.values():
        assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
        assert sorted(set(ds.labels.tolist())) == list(range(10))   # stratified: every class everywhere
    # native size: exactly scikit-learn's pixels / 16, and the three splits partition the 1,797 images
    bunch = load_digits()
    native = {s: get_dataset("digits", s, profile="quick", image_size=8) for s in ("train", "val", "test")}
    got = torch.cat([native[s].images for s in native]).flatten(1)
    want = torch.from_numpy(bunch.images.reshape(len(bunch.images), -1) / 16).float()
    assert got.shape == want.shape
    # the same multiset of rows: sort both by their bytes
    key = lambda t: sorted(map(lambda r: r.numpy().tobytes(), t))
    assert key(got) == key(want)
    # deterministic
    again = get_dataset("digits", "val", profile="quick")
    assert torch.equal(again.images, parts["val"].images)


def test_digits_resize_and_bad_size():
    ds = get_dataset("digits", "test", profile="quick", image_size=32)
    assert ds[0][0].shape == (1, 32, 32)
    with pytest.raises(ValueError, match="image_size"):
        get_dataset("digits", profile="quick", image_size=0)
    with pytest.raises(ValueError, match="image_size"):
        get_dataset("mnist", profile="quick", image_size=-28)


# ---------------------------------------------------------------------------------------------------
# MNIST: IDX files (magic 2051 for images, 2049 for labels, big-endian)

@pytest.fixture
def mnist_files(tmp_path):
    """Raw and gzip'd IDX files: 24 training and 8 test images of random pixels."""
    rng = np.random.RandomState(0)
    arrays = {"train-images-idx3-ubyte": rng.randint(0, 256, (24, 28, 28)),
              "train-labels-idx1-ubyte": rng.randint(0, 10, 24),
              "t10k-images-idx3-ubyte": rng.randint(0, 256, (8, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.randint(0, 10, 8)}
    src = tmp_path / "mnist_src"
    src.mkdir()
    for name, a in arrays.items():
        data = idx_images(a) if a.ndim == 3 else idx_labels(a)
        (src / name).write_bytes(data)
        with gzip.open(src / f"{name}.gz", "wb") as f:
            f.write(data)
    return src, arrays


def _check_mnist(root, arrays, val_fraction=0.25):
    tr = get_dataset("mnist", "train", root=root, profile="quick", val_fraction=val_fraction)
    va = get_dataset("mnist", "val", root=root, profile="quick", val_fraction=val_fraction)
    te = get_dataset("mnist", "test", root=root, profile="quick")
    assert (len(tr), len(va), len(te)) == (18, 6, 8)
    x, y = te[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.allclose(x[0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"][3] / 255).float())
    assert y == arrays["t10k-labels-idx1-ubyte"][3]
    # train and val split the training file: together, every image exactly once, labels kept
    imgs = torch.stack([d[i][0][0] for d in (tr, va) for i in range(len(d))])
    labs = [d[i][1] for d in (tr, va) for i in range(len(d))]
    want = torch.from_numpy(arrays["train-images-idx3-ubyte"] / 255).float()
    order = [int(torch.nonzero((want == im).flatten(1).all(1))[0]) for im in imgs]
    assert sorted(order) == list(range(24))
    assert labs == [int(arrays["train-labels-idx1-ubyte"][k]) for k in order]


def test_mnist_reads_raw_idx_files(tmp_path, mnist_files):
    src, arrays = mnist_files
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in arrays:
        shutil.copy(src / name, raw / name)
    _check_mnist(tmp_path / "root", arrays)
    ds = get_dataset("mnist", "test", root=tmp_path / "root", profile="quick", image_size=32)
    assert ds[0][0].shape == (1, 32, 32)


def test_mnist_unpacks_gz_files_placed_by_hand(tmp_path, mnist_files):
    src, arrays = mnist_files
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in arrays:
        shutil.copy(src / f"{name}.gz", raw / f"{name}.gz")
    _check_mnist(tmp_path / "root", arrays)
    assert all((raw / name).read_bytes() == (src / name).read_bytes() for name in arrays)


def test_mnist_missing_files_error_says_what_where_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        get_dataset("mnist", root=tmp_path / "empty", profile="quick")
    msg = str(e.value)
    assert str(tmp_path / "empty" / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "download=True" in msg and SOURCES["mnist/train-images"].url in msg


def test_mnist_colab_profile_downloads_through_real_fetch(tmp_path, mnist_files, monkeypatch, capsys):
    # The real fetch, given file:// URLs and the hashes of the test's files: the whole path
    # (announce, fetch with its hash check, gunzip, torchvision's reader) runs as it does online.
    src, arrays = mnist_files
    for key, name in mnist.RAW_FILES.items():
        gz = src / f"{name}.gz"
        monkeypatch.setitem(SOURCES, key, Source(gz.as_uri(), sha256_file(gz), gz.stat().st_size))
    root = tmp_path / "root"
    with pytest.raises(DatasetNotFoundError):
        get_dataset("mnist", "test", root=root, profile="quick")   # quick: no download by default
    ds = get_dataset("mnist", "test", root=root, profile="colab")  # colab: downloads by default
    out = capsys.readouterr().out
    assert "MNIST is not in" in out and "downloading 4 file(s)" in out   # announced before fetching
    assert len(ds) == 8 and ds[0][1] == arrays["t10k-labels-idx1-ubyte"][0]
    for name in arrays:
        assert (root / "MNIST" / "raw" / name).read_bytes() == (src / name).read_bytes()
    _check_mnist(root, arrays)


def test_mnist_download_passes_the_published_pins(tmp_path, mnist_files, monkeypatch):
    src, arrays = mnist_files
    calls = []
    monkeypatch.setattr(mnist, "fetch", _copying_fetch({f"{n}.gz": src / f"{n}.gz" for n in arrays}, calls))
    ds = mnist.MNISTDataset(tmp_path / "root", "test", download=True)
    assert len(ds) == 8
    assert {c["sha256"] for c in calls} == {SOURCES[k].sha256 for k in mnist.RAW_FILES}
    assert all(len(c["sha256"]) == 64 and c["size"] > 0 for c in calls)
    assert {c["dest"].parent for c in calls} == {tmp_path / "root" / "MNIST" / "raw"}


# ---------------------------------------------------------------------------------------------------
# CIFAR-10: pickled batches (the "python version"), 10 images each

@pytest.fixture
def cifar_files(tmp_path):
    rng = np.random.RandomState(1)
    folder = tmp_path / "cifar_src" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = rng.randint(0, 256, (10, 3072)).astype(np.uint8)   # rows: 1024 R, 1024 G, 1024 B
        labels = [int(v) for v in rng.randint(0, 10, 10)]
        batch = {"batch_label": f"batch {k}", "labels": labels, "data": data,
                 "filenames": [f"img_{k}_{j}.png" for j in range(10)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        batches[name] = batch
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": 10, "label_names": list(cifar.CLASSES), "num_vis": 3072}, f,
                    protocol=2)
    archive = tmp_path / "cifar_src" / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
        evil = tmp_path / "cifar_src" / "evil.txt"
        evil.write_text("outside")
        tar.add(evil, arcname="../evil.txt")   # must never be written outside the dataset folder
    return folder, archive, batches


def _check_cifar(root, batches):
    te = get_dataset("cifar10", "test", root=root, profile="quick")
    tr = get_dataset("cifar10", "train", root=root, profile="quick", val_fraction=0.2)
    va = get_dataset("cifar10", "val", root=root, profile="quick", val_fraction=0.2)
    assert (len(tr), len(va), len(te)) == (40, 10, 10)
    assert te.classes == cifar.CLASSES
    for i in range(10):
        x, y = te[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        want = torch.from_numpy(batches["test_batch"]["data"][i].reshape(3, 32, 32) / 255).float()
        assert torch.allclose(x, want) and y == batches["test_batch"]["labels"][i]
    all_train = np.concatenate([batches[f"data_batch_{i}"]["data"] for i in range(1, 6)])
    got = sorted((tr.data.reshape(40, -1).numpy().tolist() + va.data.reshape(10, -1).numpy().tolist()))
    assert got == sorted(all_train.tolist())
    assert get_dataset("cifar10", "test", root=root, profile="quick", image_size=64)[0][0].shape == (3, 64, 64)


def test_cifar_reads_pickled_batches(tmp_path, cifar_files):
    folder, _, batches = cifar_files
    shutil.copytree(folder, tmp_path / "root" / "cifar-10-batches-py")
    _check_cifar(tmp_path / "root", batches)


def test_cifar_missing_files_error(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        get_dataset("cifar10", root=tmp_path / "empty", profile="quick")
    msg = str(e.value)
    assert str(tmp_path / "empty" / "cifar-10-batches-py") in msg
    assert "data_batch_1" in msg and "batches.meta" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg and "download=True" in msg


def test_cifar_download_extracts_archive_safely(tmp_path, cifar_files, monkeypatch, capsys):
    _, archive, batches = cifar_files
    calls = []
    monkeypatch.setattr(cifar, "fetch", _copying_fetch({archive.name: archive}, calls))
    root = tmp_path / "root"
    ds = cifar.CIFAR10Dataset(root, "test", download=True)
    assert len(ds) == 10
    assert "170.5 MB" in capsys.readouterr().out          # the real size, announced first
    assert calls[0]["sha256"] == SOURCES["cifar10/python"].sha256 and calls[0]["dest"] == root / archive.name
    assert not (tmp_path / "evil.txt").exists() and not (root / "evil.txt").exists()
    _check_cifar(root, batches)
    # with the files in place nothing is fetched again
    cifar.CIFAR10Dataset(root, "train", download=True)
    assert len(calls) == 1


# ---------------------------------------------------------------------------------------------------
# COCO Captions: captions JSON + small JPEGs

_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]


@pytest.fixture
def coco_files(tmp_path):
    """A captions_{train,val}2017.json pair and JPEGs; image 1 is half red (left) / half blue (right)."""
    src = tmp_path / "coco_src"
    ann_dir, img_dir = src / "annotations", src / "val2017"
    ann_dir.mkdir(parents=True)
    img_dir.mkdir()
    images, anns, aid = [], [], 100
    sizes = [(120, 60), (64, 80), (50, 50), (90, 40), (40, 70)]
    for k, (w, h) in enumerate(sizes):
        iid = 1000 + k
        name = f"{iid:012d}.jpg"
        a = np.zeros((h, w, 3), np.uint8)
        a[:] = _COLOURS[k]
        if k == 0:
            a[:, w // 2:] = (0, 0, 255)
        Image.fromarray(a).save(img_dir / name, quality=95)
        images.append({"id": iid, "file_name": name, "width": w, "height": h, "license": 1,
                       "coco_url": f"http://images.cocodataset.org/val2017/{name}"})
        if k == 4:
            continue   # an image without captions is left out of the dataset
        for j in range(5 + (k == 1)):    # image 1001 has six captions
            anns.append({"id": aid, "image_id": iid, "caption": f" image {iid} caption {j} "})
            aid += 1
    anns.reverse()   # annotation order in the file must not matter
    captions = {"info": {"description": "test"}, "licenses": [], "images": images, "annotations": anns}
    (ann_dir / "captions_val2017.json").write_text(json.dumps(captions))
    (ann_dir / "captions_train2017.json").write_text(json.dumps({**captions, "images": [], "annotations": []}))
    return src


def _zip_dir(folder: Path, arc_prefix: str, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"{arc_prefix}/{f.name}")
    return dest


def test_coco_reads_captions_and_images(tmp_path, coco_files):
    root = tmp_path / "root"
    shutil.copytree(coco_files, root / "coco")
    ds = get_dataset("coco", "val", root=root, profile="quick", image_size=32)
    assert ds.ids == [1000, 1001, 1002, 1003]
    item = ds[1]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["image_id"] == 1001
    assert item["captions"] == [f"image 1001 caption {j}" for j in range(6)]
    assert item["caption"] == item["captions"][0]                    # val: the first caption
    for k in range(4):
        x = ds[k]["image"]
        assert 0 <= x.min() and x.max() <= 1
        if k > 0:   # solid colours survive JPEG + resize + crop to within a few levels
            want = torch.tensor(_COLOURS[k], dtype=torch.float32).div(255)[:, None, None]
            assert (x - want).abs().max() < 0.06, k
    # image 1000 is 120x60, left half red, right half blue: resized to 64x32 and centre-cropped,
    # the crop's left quarter is red and its right quarter is blue
    x = ds[0]["image"]
    assert x[0, :, :8].mean() > 0.9 and x[2, :, :8].mean() < 0.1
    assert x[2, :, -8:].mean() > 0.9 and x[0, :, -8:].mean() < 0.1
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=coco.COCOCaptions.collate)))
    assert batch["image"].shape == (4, 3, 32, 32) and len(batch["captions"][1]) == 6
    assert batch["image_id"].tolist() == [1000, 1001, 1002, 1003]


def test_coco_subsets_and_caption_choice(tmp_path, coco_files):
    root = tmp_path / "root"
    shutil.copytree(coco_files, root / "coco")
    a = get_dataset("coco", "val", root=root, profile="quick", max_images=2, seed=3)
    b = get_dataset("coco", "val", root=root, profile="quick", max_images=2, seed=3)
    assert a.ids == b.ids and len(a.ids) == 2 and set(a.ids) <= {1000, 1001, 1002, 1003}
    picks = {tuple(get_dataset("coco", "val", root=root, profile="quick", max_images=2, seed=s).ids)
             for s in range(8)}
    assert len(picks) > 1                                             # the seed matters
    c = get_dataset("coco", "val", root=root, profile="quick", image_ids=[1003, 1001])
    assert c.ids == [1001, 1003]
    with pytest.raises(ValueError, match="1004"):
        get_dataset("coco", "val", root=root, profile="quick", image_ids=[1004])   # has no captions
    r = get_dataset("coco", "val", root=root, profile="quick", caption_choice="random", image_ids=[1001])
    torch.manual_seed(0)
    seen = {r[0]["caption"] for _ in range(60)}
    assert seen == set(r.all_captions[0])                             # every caption gets drawn
    with pytest.raises(ValueError, match="caption_choice"):
        get_dataset("coco", "val", root=root, profile="quick", caption_choice="longest")


def test_coco_missing_files_errors(tmp_path, coco_files):
    root = tmp_path / "root"
    with pytest.raises(DatasetNotFoundError) as e:
        get_dataset("coco", "val", root=root, profile="quick")
    msg = str(e.value)
    assert str(root / "coco" / "annotations") in msg and "captions_val2017.json" in msg
    assert SOURCES["coco/annotations"].url in msg and "download=True" in msg
    (root / "coco").mkdir(parents=True)
    shutil.copytree(coco_files / "annotations", root / "coco" / "annotations")
    with pytest.raises(DatasetNotFoundError) as e:
        get_dataset("coco", "val", root=root, profile="quick")
    msg = str(e.value)
    assert "4 of the 4 chosen are missing" in msg and str(root / "coco" / "val2017") in msg
    assert "000000001000.jpg" in msg and SOURCES["coco/val2017"].url in msg


def test_coco_download_unzips_only_what_is_needed(tmp_path, coco_files, monkeypatch, capsys):
    served_dir = tmp_path / "served"
    served_dir.mkdir()
    ann_zip = _zip_dir(coco_files / "annotations", "annotations", served_dir / "annotations_trainval2017.zip")
    with zipfile.ZipFile(ann_zip, "a") as zf:   # the real zip holds more than captions
        zf.writestr("annotations/instances_val2017.json", "{}")
    img_zip = _zip_dir(coco_files / "val2017", "val2017", served_dir / "val2017.zip")
    calls = []
    monkeypatch.setattr(coco, "fetch", _copying_fetch({p.name: p for p in (ann_zip, img_zip)}, calls))
    root = tmp_path / "root"
    ds = get_dataset("coco", "val", root=root, profile="colab", image_size=16, max_images=2, seed=0)
    out = capsys.readouterr().out
    assert "252.9 MB" in out and "815.6 MB" in out                    # real sizes, announced first
    assert [c["sha256"] for c in calls] == [SOURCES["coco/annotations"].sha256, SOURCES["coco/val2017"].sha256]
    assert sorted(p.name for p in (root / "coco" / "annotations").iterdir() if p.suffix == ".json") == \
        ["captions_train2017.json", "captions_val2017.json"]
    assert sorted(p.name for p in (root / "coco" / "val2017").iterdir()) == \
        sorted(f"{i:012d}.jpg" for i in ds.ids)                       # only the chosen two
    assert ds[0]["image"].shape == (3, 16, 16)
    # a larger subset later unpacks the rest from the zip already on disk
    full = get_dataset("coco", "val", root=root, profile="colab", image_size=16)
    assert len(full) == 4 and len(calls) == 3 and calls[2]["url"].endswith("val2017.zip")


def test_coco_per_image_download(tmp_path, coco_files, monkeypatch, capsys):
    root = tmp_path / "root"
    (root / "coco").mkdir(parents=True)
    shutil.copytree(coco_files / "annotations", root / "coco" / "annotations")
    calls = []
    served = {p.name: p for p in (coco_files / "val2017").iterdir()}
    monkeypatch.setattr(coco, "fetch", _copying_fetch(served, calls))
    ds = coco.COCOCaptions(root, "val", image_size=24, download=True, image_ids=[1002], images="per_image")
    assert "one by one" in capsys.readouterr().out
    assert [c["url"] for c in calls] == ["http://images.cocodataset.org/val2017/000000001002.jpg"]
    assert ds[0]["image"].shape == (3, 24, 24)
