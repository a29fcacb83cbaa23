"""Atomic file writes: a temporary file in the same folder, fsync, ``os.replace``, fsync of the folder.

A reader (or a resumed run) sees either the old file or the new one, never half of one. Every file the
library writes for later (checkpoints, weights, token caches and their progress notes) goes through
:func:`atomic_write`.

Defined in Chapter 1 (checkpoints); used again in Chapter 5 (the token cache)."""

from __future__ import annotations

import os
from pathlib import Path


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable. Some file systems (FUSE mounts such as Drive) refuse; that is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path``, then ``os.replace`` it into place.

    Whatever goes wrong mid-way (disk full, Ctrl-C, a crash simulated by a test), ``path`` keeps its
    previous content and the half-written temp file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{_tmp_prefix(path)}{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    # Temp files left by earlier runs that were killed outright (no chance to clean up) are garbage now.
    for stale in path.parent.glob(_tmp_prefix(path) + "*"):
        try:
            stale.unlink()
        except OSError:
            pass
    return path
