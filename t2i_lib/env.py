"""Every environment variable the library reads, parsed in one place and the same way.

::

    ==================  ==========================================================  =====================
    variable            what it does                                                read by
    ==================  ==========================================================  =====================
    T2I_PROFILE         ``quick`` or ``colab``: overrides the automatic profile      ``profiles``
    T2I_CACHE           folder for datasets and weights (default ~/.cache/t2i-book)  ``storage.download``
    T2I_OFFLINE         ``1``: never download; a missing file says what to fetch     ``storage.download``
    T2I_STATIC_WIDGETS  ``1``: widgets render their static fallback (the book)       ``viz.widgets``
    RANK, WORLD_SIZE,   set by ``torchrun``: this process's place in a multi-process  ``train.distributed``,
    LOCAL_RANK,         run                                                          ``storage``
    LOCAL_WORLD_SIZE
    ==================  ==========================================================  =====================

A flag is on for ``1``, ``true``, ``yes`` or ``on`` and off for ``0``, ``false``, ``no``, ``off`` or unset
(any case); anything else is an error that names the variable, rather than a silent "off". The README
lists the same variables.

Defined in Chapter 1.
"""

from __future__ import annotations

import os
from pathlib import Path

PROFILE = "T2I_PROFILE"
CACHE = "T2I_CACHE"
OFFLINE = "T2I_OFFLINE"
STATIC_WIDGETS = "T2I_STATIC_WIDGETS"
VARIABLES = (PROFILE, CACHE, OFFLINE, STATIC_WIDGETS, "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")

_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")


def text(name: str) -> str | None:
    """The variable's value, stripped; None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def flag(name: str) -> bool:
    """A yes/no variable (see the module docstring for the accepted spellings)."""
    value = (text(name) or "").lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{name}={os.environ[name]!r} is neither on ({', '.join(_ON)}) nor off "
                     f"({', '.join(v for v in _OFF if v)}, or unset); set it to 1 or 0")


def integer(name: str, default: int) -> int:
    """A whole-number variable, ``default`` when unset."""
    value = text(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number (torchrun sets it; unset it or fix it)") from None


def profile_name() -> str | None:
    """``T2I_PROFILE`` in lower case, or None; :func:`t2i_lib.profiles.get_profile` validates it."""
    value = text(PROFILE)
    return value.lower() if value else None


def cache_root() -> Path:
    """``T2I_CACHE``, or ``~/.cache/t2i-book``."""
    return Path(text(CACHE) or Path.home() / ".cache" / "t2i-book").expanduser()


def offline() -> bool:
    return flag(OFFLINE)


def static_widgets() -> bool:
    return flag(STATIC_WIDGETS)


def rank() -> int:
    """This process's global rank under ``torchrun`` (0 otherwise)."""
    return integer("RANK", 0)


def world_size() -> int:
    return integer("WORLD_SIZE", 1)


def local_rank() -> int:
    return integer("LOCAL_RANK", 0)


def local_world_size() -> int:
    return integer("LOCAL_WORLD_SIZE", world_size())
