"""Image-token caches, and what the tokens look like statistically.

A transformer that models image tokens (Chapters 6-9) reads the same tokens epoch after epoch, and the
dVAE or VQ-VAE that makes them is frozen by then. Encoding every image again each epoch would spend most
of the compute on the tokenizer, so the tokens are computed once and kept on disk:

    cache = cache_tokens(dvae, dataset, "tokens/shapes_train.npy", fingerprint=fingerprint(dvae, "shapes-train-32px"))
    tokens = load_tokens("tokens/shapes_train.npy")    # (N, h, w) uint16, memory-mapped, read-only

The array is a ``.npy`` file opened as a memory map (``np.lib.format.open_memmap``), so it never has to
fit in RAM: COCO train2017 at 32 x 32 tokens is 118,287 x 1,024 x 2 bytes, about 242 MB, and a dataset
ten times larger would work the same way. Tokens are stored as ``uint16`` when K <= 65,536 (DALL-E's
8,192 codes need 13 bits), as ``int32`` otherwise.

Beside the array, ``<path>.json`` records the progress: rows done, the array's shape and dtype, K, and a
fingerprint of the encoder and data. It is rewritten atomically (temp file + ``os.replace``) after the
rows it counts have been flushed, so it never claims rows that are not on disk. Hence:

- an interrupted run (Ctrl-C, a Colab disconnect, an exception) *resumes* at the first row not done;
- a finished cache is reused without encoding anything;
- a cache made by another encoder, with another K or for another dataset (a different fingerprint or
  shape) is refused with an error that says what differs and how to start over.

The second half of the file, :func:`~t2i_lib.experiments.token_stats.token_statistics`, measures a token grid: how many codes are used,
how evenly (perplexity), and how much a token says about its neighbours (mutual information in bits).

Defined in Chapter 5.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from t2i_lib.data.batches import images_of
from t2i_lib.data.checks import check_token_values
from t2i_lib.storage.atomic import atomic_write


_FORMAT = 1


class TokenCacheError(RuntimeError):
    """A token cache on disk does not belong to this encoder/dataset, or is not finished."""


def token_dtype(num_codes: int) -> np.dtype:
    """``uint16`` when every index 0..K-1 fits in 16 bits (K <= 65,536), else ``int32``."""
    if num_codes < 1:
        raise ValueError(f"num_codes must be positive, got {num_codes}")
    return np.dtype(np.uint16) if num_codes <= 65536 else np.dtype(np.int32)


def fingerprint(*parts) -> str:
    """A short SHA-256 fingerprint of whatever decides the tokens: models (their weights and buffers),
    tensors, arrays, and anything else by ``repr`` (a dataset's name, split and size, say).

    Two encoders with the same architecture but different weights get different fingerprints.

    Defined in Chapter 5.
    """
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, nn.Module):
            h.update(type(p).__name__.encode())
            for name, t in sorted(p.state_dict().items()):
                h.update(name.encode())
                h.update(str(tuple(t.shape)).encode())
                h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(p, torch.Tensor):
            h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
        h.update(b"|")
    return h.hexdigest()[:16]


@dataclass
class TokenCache:
    """What :func:`cache_tokens` returns."""

    path: Path  # the .npy file
    tokens: np.ndarray  # (N, h, w), memory-mapped, read-only
    num_codes: int  # K
    rows_encoded: int  # rows this call encoded (0 when a finished cache was reused)
    resumed_from: int  # rows already on disk when this call started
    seconds: float  # time this call spent encoding
    tokens_per_s: float  # tokens this call produced per second (nan when nothing was encoded)

    @property
    def reused(self) -> bool:
        return self.rows_encoded == 0

    def __repr__(self) -> str:
        n, h, w = self.tokens.shape
        how = ("reused, nothing encoded" if self.reused else
               f"encoded {self.rows_encoded:,} images in {self.seconds:.1f} s ({self.tokens_per_s:,.0f} tokens/s)"
               + (f", resumed at row {self.resumed_from:,}" if self.resumed_from else ""))
        return (f"TokenCache({self.path.name}: {n:,} x {h} x {w} {self.tokens.dtype}, K={self.num_codes}, "
                f"{self.tokens.nbytes / 2**20:.1f} MiB; {how})")


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _read_meta(path: Path) -> dict | None:
    mp = _meta_path(path)
    if not mp.exists():
        return None
    try:
        return json.loads(mp.read_text())
    except (OSError, ValueError) as e:
        raise TokenCacheError(f"The progress file {mp} of the token cache is unreadable ({e}). Delete {path} "
                              f"and {mp}, or pass overwrite=True, to encode again.") from e


def _write_meta(path: Path, meta: dict) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(_meta_path(path), write)


def _start_over_hint(path: Path) -> str:
    return f"Delete {path} and {_meta_path(path)}, or pass overwrite=True, to encode from scratch."


def load_tokens(path: str | os.PathLike) -> np.ndarray:
    """Open a finished token cache read-only: a memory-mapped (N, h, w) array (``uint16`` or ``int32``).

    Raises FileNotFoundError if there is none, :class:`TokenCacheError` if it is unfinished.

    Defined in Chapter 5.
    """
    path = Path(path)
    meta = _read_meta(path)
    if not path.exists() or meta is None:
        raise FileNotFoundError(f"No token cache at {path} (or its progress file {_meta_path(path).name} is "
                                f"missing). Build it with t2i_lib.data.token_cache.cache_tokens(...).")
    if meta["rows_done"] < meta["shape"][0]:
        raise TokenCacheError(f"The token cache {path} is unfinished: {meta['rows_done']:,} of {meta['shape'][0]:,} "
                              f"images encoded. Call cache_tokens(...) again with the same arguments to resume.")
    return np.load(path, mmap_mode="r")


def _encoder_and_codes(tokenizer, num_codes: int | None) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
    """(encode function, K) from a tokenizer (anything with ``encode`` and ``num_codes``) or a bare function."""
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "num_codes"):
        k = int(tokenizer.num_codes)
        if num_codes is not None and int(num_codes) != k:
            raise ValueError(f"cache_tokens: num_codes={num_codes} disagrees with the tokenizer's num_codes={k} "
                             f"({type(tokenizer).__name__}); leave num_codes out, a tokenizer knows its own")
        return tokenizer.encode, k
    if not callable(tokenizer):
        raise TypeError(f"cache_tokens expects an image tokenizer (with encode and num_codes) or an encode "
                        f"function; received {type(tokenizer).__name__}")
    if num_codes is None:
        raise ValueError("cache_tokens needs num_codes= when given a bare encode function (or pass the tokenizer "
                         "itself, e.g. cache_tokens(dvae, ...), which knows its num_codes)")
    return tokenizer, int(num_codes)


def cache_tokens(tokenizer, dataset, path: str | os.PathLike, *,
                 num_codes: int | None = None, batch_size: int = 64, fingerprint: str = "", device=None,
                 collate_fn=None, num_workers: int = 0, overwrite: bool = False, progress: bool = True,
                 commit_every_s: float = 2.0) -> TokenCache:
    """Encode every image of ``dataset`` once into a memory-mapped token array at ``path`` (a ``.npy``).

    ``tokenizer``: any image tokenizer (:mod:`t2i_lib.models.tokenizer`: a VQ-VAE, a dVAE, OpenAI's dVAE;
    its ``encode`` and ``num_codes`` are used), or a bare encode function images (B, C, H, W) -> tokens
    (B, h, w), integers in [0, num_codes) (e.g. ``dvae.encode``, or a wrapper that adds autocast), which
    then needs ``num_codes``. The encoder is called under ``torch.no_grad()``. Batches are the dataset's
    items in order, collated by the DataLoader; the images are taken with ``images_of`` (a tensor, the first
    item of a tuple, or ``batch["image"]``) and moved to ``device`` if given. ``fingerprint``: a string
    that changes whenever the tokens would (see :func:`fingerprint`); a cache with another one is refused.

    Resumes an unfinished cache, returns a finished one without encoding, and with ``overwrite=True``
    starts again. Progress is committed at least every ``commit_every_s`` seconds and when the call ends,
    normally or by an exception (a KeyboardInterrupt included), so at most a few seconds of work are lost.

    Returns a :class:`TokenCache` with the read-only array and the measured tokens per second.

    Defined in Chapter 5.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    encode_fn, num_codes = _encoder_and_codes(tokenizer, num_codes)
    path = Path(path).expanduser()
    if path.suffix != ".npy":
        raise ValueError(f"the token cache is a .npy file; got path {path} (name it e.g. {path.stem}.npy)")
    n = len(dataset)
    if n == 0:
        raise ValueError("cache_tokens(): the dataset is empty.")
    dtype = token_dtype(num_codes)
    meta = None if overwrite else _read_meta(path)
    if meta is None and path.exists() and not overwrite:
        raise TokenCacheError(f"{path} exists but has no progress file {_meta_path(path).name}, so there is no "
                              f"telling how much of it is valid. " + _start_over_hint(path))

    if meta is not None:  # resume or reuse: everything that decides the tokens must agree
        want = {"num_rows": n, "num_codes": num_codes, "dtype": dtype.name, "fingerprint": fingerprint}
        have = {"num_rows": meta["shape"][0], "num_codes": meta["num_codes"], "dtype": meta["dtype"],
                "fingerprint": meta["fingerprint"]}
        diff = [f"{k}: cache has {have[k]!r}, this call {want[k]!r}" for k in want if have[k] != want[k]]
        if meta.get("format") != _FORMAT:
            diff.append(f"format: cache has {meta.get('format')!r}, this version writes {_FORMAT}")
        if diff:
            raise TokenCacheError(f"The token cache {path} was made by a different encoder or for different data:\n  "
                                  + "\n  ".join(diff) + "\n" + _start_over_hint(path))
        if not path.exists():
            raise TokenCacheError(f"{_meta_path(path)} describes a cache, but {path} itself is missing. "
                                  + _start_over_hint(path))
        start = int(meta["rows_done"])
        if start >= n:
            return TokenCache(path, np.load(path, mmap_mode="r"), num_codes, 0, start, 0.0, math.nan)
        arr = np.lib.format.open_memmap(path, mode="r+")
        if arr.shape != tuple(meta["shape"]) or arr.dtype != dtype:
            raise TokenCacheError(f"{path} holds an array {arr.shape} {arr.dtype}, but its progress file says "
                                  f"{tuple(meta['shape'])} {meta['dtype']}. " + _start_over_hint(path))
    else:
        start, arr = 0, None
        if overwrite:
            for p in (path, _meta_path(path)):
                if p.exists():
                    p.unlink()

    def batches():
        idx = list(range(start, n))
        chunks = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
        return DataLoader(dataset, batch_sampler=chunks, collate_fn=collate_fn, num_workers=num_workers)

    done = start
    committed = start
    last_commit = time.monotonic()
    t0 = time.monotonic()
    bar = tqdm(total=n, initial=start, desc=f"encoding {path.name}", unit="img", disable=not progress)

    def commit() -> None:
        nonlocal committed, last_commit
        if arr is None or done == committed:
            return
        arr.flush()  # the rows first, then the claim that they are there
        _write_meta(path, {**meta, "rows_done": done})
        committed, last_commit = done, time.monotonic()

    try:
        for batch in batches():
            x = images_of(batch)
            if device is not None:
                x = x.to(device, non_blocking=True)
            with torch.no_grad():
                t = encode_fn(x)
            t = torch.as_tensor(t)
            b = x.shape[0]
            if t.dim() != 3 or t.shape[0] != b:
                raise ValueError(f"cache_tokens: the encoder must return tokens of shape (B, h, w) = ({b}, h, w) for "
                                 f"a batch of {b} images; it returned shape {tuple(t.shape)}")
            check_token_values(t, num_codes, "cache_tokens (checking what the encoder returned)")
            if arr is None:  # first batch of a fresh cache: now the grid size is known
                shape = (n, int(t.shape[1]), int(t.shape[2]))
                path.parent.mkdir(parents=True, exist_ok=True)
                arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
                meta = {"format": _FORMAT, "rows_done": 0, "shape": list(shape), "dtype": dtype.name,
                        "num_codes": num_codes, "fingerprint": fingerprint}
                _write_meta(path, meta)
            elif tuple(t.shape[1:]) != tuple(arr.shape[1:]):
                raise ValueError(f"cache_tokens: the encoder returned token grids of shape {tuple(t.shape[1:])}, but the cache holds "
                                 f"grids of shape {tuple(arr.shape[1:])}")
            arr[done:done + b] = t.cpu().numpy().astype(dtype)
            done += b
            bar.update(b)
            if time.monotonic() - last_commit >= commit_every_s:
                commit()
    finally:
        commit()
        bar.close()

    seconds = time.monotonic() - t0
    rows = done - start
    per_image = arr.shape[1] * arr.shape[2]
    del arr
    return TokenCache(path, np.load(path, mmap_mode="r"), num_codes, rows, start, seconds,
                      rows * per_image / max(seconds, 1e-9))


def read_progress(path: str | os.PathLike) -> dict | None:
    """The progress record of the cache at ``path`` (rows done, shape, dtype, K, fingerprint), or None if none.

    Defined in Chapter 5.
    """
    return _read_meta(Path(path).expanduser())


class SessionLost(Exception):
    """Raised by :func:`lose_session_after`'s encoder: a stand-in for a runtime that disconnects mid-job.

    Defined in Chapter 5.
    """


def lose_session_after(encode_fn: Callable[[torch.Tensor], torch.Tensor], calls: int) -> Callable:
    """``encode_fn``, except that every call after the first ``calls`` raises :class:`SessionLost`.

    Chapter 5 hands it to :func:`cache_tokens` to interrupt a cache on purpose, then resumes with the plain
    encoder. ``wrapped.calls`` counts the calls made (the failing ones included).

    Defined in Chapter 5.
    """
    if calls < 0:
        raise ValueError(f"lose_session_after: calls must be >= 0, got {calls}")

    def wrapped(images):
        wrapped.calls += 1
        if wrapped.calls > calls:
            raise SessionLost(f"the runtime disconnected (after {calls} encoder calls)")
        return encode_fn(images)

    wrapped.calls = 0
    return wrapped
