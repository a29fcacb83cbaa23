"""Every remote file the datasets use, in one table: URL, SHA-256, size in bytes.

The hashes are the published ones, not computed by us: the MNIST and COCO 2017 rows match TensorFlow
Datasets' url_checksums files (``mnist.txt``, ``coco2017.txt``), the CIFAR-10 row its ``cifar10.csv``
and Keras' ``cifar10.load_data`` (both pin the same digest for ``cifar-10-python.tar.gz``). MNIST's
sizes are the gzip files', as served. :func:`t2i_lib.storage.download.fetch` checks each download against these.

Only the colab profile downloads anything (see ``get_dataset(download=...)``). The quick profile uses
Shapes and Digits, which need no files.

Defined in Chapter 1 (the first chapter with a downloaded dataset).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    url: str
    sha256: str | None   # None only where no published hash could be found (none at present)
    size: int            # bytes, as downloaded
    mirrors: tuple[str, ...] = ()  # same file elsewhere (same hash); tried in order if the URL fails

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


SOURCES: dict[str, Source] = {
    # MNIST, the original IDX files, gzip'd. TFDS fetches them from Google's CVDF mirror; torchvision
    # from its S3 mirror. Both serve LeCun's original bytes (same sizes, same hashes).
    "mnist/train-images": Source(
        "https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9_912_422,
        ("https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",)),
    "mnist/train-labels": Source(
        "https://storage.googleapis.com/cvdf-datasets/mnist/train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28_881,
        ("https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",)),
    "mnist/test-images": Source(
        "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1_648_877,
        ("https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",)),
    "mnist/test-labels": Source(
        "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4_542,
        ("https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",)),
    # CIFAR-10, the "python version" that torchvision reads (pickled batches in a .tar.gz).
    "cifar10/python": Source(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", 170_498_071),
    # COCO 2017. The annotation zip holds captions, instances and keypoints for train and val; we
    # extract only captions_{train,val}2017.json from it.
    "coco/annotations": Source(
        "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
        "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268", 252_907_541),
    "coco/train2017": Source(
        "http://images.cocodataset.org/zips/train2017.zip",
        "69a8bb58ea5f8f99d24875f21416de2e9ded3178e903f1f7603e283b9e06d929", 19_336_861_798),
    "coco/val2017": Source(
        "http://images.cocodataset.org/zips/val2017.zip",
        "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05", 815_585_330),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on disk and downloading was not allowed. The message says which files
    are expected, the exact directory they go in, and how to get them."""


def missing_message(dataset: str, directory: Path, expected: list[str], sources: list[Source],
                    extra: str = "") -> str:
    """The text of a DatasetNotFoundError: what is missing, where it goes, how to get it."""
    from t2i_lib.storage.download import human_size

    lines = [f"{dataset} is not on disk. Expected in {directory}:"]
    lines += [f"  {name}" for name in expected]
    total = sum(s.size for s in sources)
    lines.append(f"Get it with download=True (the colab profile does this; T2I_PROFILE=colab), which "
                 f"fetches {human_size(total)}:")
    lines += [f"  {s.url}  ({human_size(s.size)})" for s in sources]
    if extra:
        lines.append(extra)
    lines.append("or download those files by hand and unpack them as listed above.")
    return "\n".join(lines)


def announce(dataset: str, sources: list[Source], directory: Path) -> None:
    """Print, before anything is fetched, what will be downloaded and how large it is."""
    from t2i_lib.storage.download import human_size

    total = sum(s.size for s in sources)
    print(f"{dataset} is not in {directory}; downloading {len(sources)} file(s), "
          f"{human_size(total)} in all:")
    for s in sources:
        print(f"  {s.filename:32s} {human_size(s.size):>9s}  {s.url}")


def fetch_source(fetch, source: Source, dest: Path, desc: str | None = None) -> Path:
    """``fetch`` one source into ``dest`` (a file path), trying its mirrors if the main URL fails.
    ``fetch`` is passed in so that each loader module's own (monkeypatchable) name is used."""
    from t2i_lib.storage.download import DownloadError

    errors = []
    for url in (source.url,) + source.mirrors:
        try:
            return fetch(url, source.sha256, dest, size=source.size, desc=desc or source.filename)
        except DownloadError as e:
            if "mismatch" in str(e):
                raise  # a wrong file is not fixed by asking a mirror
            errors.append(f"{url}: {e}")
    raise DownloadError(f"could not download {source.filename} from any of its URLs:\n" + "\n".join(errors))
