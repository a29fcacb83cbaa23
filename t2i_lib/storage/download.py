"""The one way anything is fetched: cache directory, SHA-256 check, atomic write, resumable, offline-aware.

::

    from t2i_lib.storage.download import fetch
    path = fetch("https://example.org/data/file.zip", sha256="9f86d0...", size=1_234_567)

What :func:`fetch` does, in order:

1. If the destination file already exists (and has the expected SHA-256, when one is given) it is
   returned at once, without touching the network. A verified file also gets a tiny ``.name.sha256``
   note beside it (hash, size, modification time), so a multi-gigabyte archive is hashed once, not on
   every run.
2. If downloads are off (``T2I_OFFLINE=1`` in the environment, or ``allow_download=False``, which the
   quick profile's datasets use), it raises :class:`DownloadError` saying which URL to fetch, how large
   it is, and the exact path to place the file at by hand.
3. Otherwise it prints what it downloads and how large it is, streams into ``<dest>.part`` with a
   progress bar, and, if a ``.part`` from an interrupted attempt is already there, asks the server for
   the rest only (an HTTP ``Range`` request). Dropped connections are retried a few times, resuming
   each time.
4. It checks the SHA-256 of the complete file. A mismatch deletes the ``.part`` and raises, showing both
   hashes; a match ``os.replace``-s the ``.part`` onto the destination, so the destination is either
   absent or complete, never half-written.

Files go to ``cache_dir()``: ``$T2I_CACHE`` if set, else ``~/.cache/t2i-book``. On Colab, pointing
``T2I_CACHE`` at a Google Drive folder keeps downloads across sessions.

In a ``torchrun`` job every process may call :func:`fetch`; the processes with ``LOCAL_RANK`` other than
0 wait for local rank 0 to finish the download instead of downloading the same file in parallel.

Defined in Chapter 1 (the first dataset that comes from the internet).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from t2i_lib import env

__all__ = ["DownloadError", "cache_dir", "fetch", "sha256_file", "human_size"]

CACHE_ENV = env.CACHE
OFFLINE_ENV = env.OFFLINE
_CHUNK = 1 << 20  # 1 MiB
_RETRIES = 4
_TIMEOUT_S = 60


class DownloadError(RuntimeError):
    """A file could not be fetched (offline, network failure, or a hash mismatch)."""


def cache_dir(subdir: str = "") -> Path:
    """``$T2I_CACHE`` if set, else ``~/.cache/t2i-book``; joined with ``subdir``; created on demand.

    Defined in Chapter 1.
    """
    path = env.cache_root() / subdir
    path.mkdir(parents=True, exist_ok=True)
    return path


def human_size(n: int | None) -> str:
    if n is None:
        return "unknown size"
    x = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if x < 1000 or unit == "TB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    return f"{n} B"  # pragma: no cover


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _offline() -> bool:
    return env.offline()


def _url_basename(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        raise ValueError(f"Cannot infer a file name from {url!r}; pass dest=... explicitly.")
    return name


# A small note beside a verified file, so the next run can skip re-hashing it if it has not changed.
def _note_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.sha256")


def _write_note(dest: Path, digest: str) -> None:
    st = dest.stat()
    try:
        _note_path(dest).write_text(json.dumps({"sha256": digest, "size": st.st_size,
                                                "mtime_ns": st.st_mtime_ns}))
    except OSError:
        pass  # a read-only directory only costs a re-hash next time


def _matches(dest: Path, sha256: str) -> tuple[bool, str | None]:
    """(does dest have this hash?, its actual hash if it was computed)."""
    st = dest.stat()
    try:
        note = json.loads(_note_path(dest).read_text())
        if (note.get("sha256") == sha256 and note.get("size") == st.st_size
                and note.get("mtime_ns") == st.st_mtime_ns):
            return True, sha256
    except (OSError, ValueError):
        pass
    actual = sha256_file(dest)
    if actual == sha256:
        _write_note(dest, actual)
    return actual == sha256, actual


def _is_waiting_rank() -> bool:
    """A torchrun process that should let local rank 0 do the download."""
    return env.local_world_size() > 1 and env.local_rank() != 0


def fetch(url: str, sha256: str | None, dest: str | os.PathLike | None = None, *, size: int | None = None,
          desc: str | None = None, allow_download: bool = True, quiet: bool = False) -> Path:
    """Return a local path to the file at ``url``, downloading it only if needed (see module docstring).

    ``sha256``: the expected hex digest (None skips the check and prints the hash so it can be pinned).
    ``dest``: where the file goes (default ``cache_dir() / <file name in the url>``).
    ``size``: the expected size in bytes, for messages (and checked when no hash is given).
    ``desc``: a human name for messages and the progress bar.
    ``quiet``: no announcement, progress bar or hash line (for many small files fetched in a loop;
    errors are still raised with the full message).

    Defined in Chapter 1.
    """
    dest = Path(dest).expanduser() if dest is not None else cache_dir() / _url_basename(url)
    if dest.is_dir():
        dest = dest / _url_basename(url)
    sha256 = sha256.strip().lower() if sha256 else None
    name = desc or dest.name

    if dest.is_file():
        if sha256 is None:
            return dest
        ok, actual = _matches(dest, sha256)
        if ok:
            return dest
        stale = f"{dest} exists but its SHA-256 is {actual}, not the expected {sha256}"
    else:
        stale = None

    if not allow_download or _offline():
        why = "allow_download=False" if not allow_download else f"{OFFLINE_ENV}=1"
        what = stale + "." if stale else f"{name} is not on disk."
        raise DownloadError(
            f"{what} Downloads are off ({why}), so nothing was fetched.\n"
            f"  URL        : {url}\n"
            f"  destination: {dest}\n"
            f"  size       : {human_size(size)}\n"
            + (f"  sha256     : {sha256}\n" if sha256 else "")
            + f"Download the file on a machine with internet access and place the file there by hand "
              f"(exactly that path), or allow downloads (unset {OFFLINE_ENV}; the colab profile downloads).")

    if _is_waiting_rank():
        return _wait_for_rank0(dest, sha256, url)

    if stale and not quiet:
        print(stale + ": downloading it again.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _download(url, part, dest, size=size, name=name, quiet=quiet)

    actual = sha256_file(part) if (sha256 is not None or not quiet) else None
    if sha256 is not None and actual != sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"SHA-256 mismatch for {url}:\n  expected {sha256}\n  got      {actual}\n"
            f"The download was deleted and nothing was written to {dest}. Either the transfer was "
            f"corrupted (try again) or the file on the server changed (then the expected hash in t2i_lib "
            f"needs updating; please report it).")
    if sha256 is None:
        got = part.stat().st_size
        if size is not None and got != size:
            part.unlink(missing_ok=True)
            raise DownloadError(f"Size mismatch for {url}: got {got} bytes, expected {size}; the download "
                                f"was deleted and nothing was written to {dest}.")
        if not quiet:
            print(f"  SHA-256 {actual} (no expected hash was given; pin this one to verify future downloads)")
    os.replace(part, dest)
    if sha256 is not None:
        _write_note(dest, actual)
    return dest


def _download(url: str, part: Path, dest: Path, *, size: int | None, name: str, quiet: bool = False) -> None:
    from tqdm.auto import tqdm

    announced = False
    for attempt in range(_RETRIES):
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "t2i-book (python urllib)"}
        if have:
            headers["Range"] = f"bytes={have}-"
        req = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp:
                status = getattr(resp, "status", None) or resp.getcode() or 200
                if status == 206 and _range_start(resp) != have:
                    part.unlink(missing_ok=True)  # a range we did not ask for: start clean
                    raise http.client.HTTPException(f"server answered with the wrong byte range "
                                                    f"({resp.headers.get('Content-Range')})")
                if have and status == 206:
                    mode = "ab"
                else:
                    have, mode = 0, "wb"  # the server sent the whole file: start over
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length and length.isdigit() else size
                if not announced and not quiet:
                    print(f"Downloading {name} ({human_size(total)})\n  from {url}\n  to   {dest}"
                          + (f"\n  resuming after {human_size(have)} already on disk" if have else ""))
                    announced = True
                with open(part, mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                 desc=name, file=sys.stdout, leave=False, disable=quiet) as bar:
                    while chunk := resp.read(_CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
                    f.flush()
                    os.fsync(f.fileno())
            got = part.stat().st_size
            if total is not None and length and got < total:
                raise http.client.IncompleteRead(b"", total - got)
            return
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:
                return  # "range not satisfiable": the .part is already complete; the hash check decides
            if e.code < 500 or attempt == _RETRIES - 1:
                raise DownloadError(f"Downloading {url} failed: HTTP {e.code} {e.reason}.") from e
            err: Exception = e
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as e:
            if attempt == _RETRIES - 1:
                kept = f" The partial file {part} was kept; running again resumes from it." if part.exists() else ""
                raise DownloadError(f"Downloading {url} failed after {_RETRIES} attempts: {e}.{kept}") from e
            err = e
        wait = 2 ** attempt
        if not quiet:
            print(f"  download interrupted ({err}); retrying in {wait} s, resuming where it stopped")
        time.sleep(wait)


def _range_start(resp) -> int | None:
    """The first byte offset of a 206 response, from ``Content-Range: bytes START-END/TOTAL``."""
    cr = resp.headers.get("Content-Range", "")
    try:
        return int(cr.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _wait_for_rank0(dest: Path, sha256: str | None, url: str, timeout_s: float = 6 * 3600) -> Path:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if dest.is_file() and (sha256 is None or _matches(dest, sha256)[0]):
            return dest
        time.sleep(2)
    raise DownloadError(f"Waited {timeout_s / 3600:.0f} h for local rank 0 to download {url} to {dest}.")
