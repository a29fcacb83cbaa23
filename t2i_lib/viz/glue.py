"""Numbers for the prose: a chapter's text quotes what its own run measured, never a number typed in.

``glue("usage_pct", 0.62)`` in a code cell records the value in the cell's output (myst-nb's glue), and
``{glue:text}`usage_pct:.0%``` in the markdown pastes it when the book is built, so the text and the run
cannot disagree. Values are turned into plain Python numbers first (myst-nb formats the text form of the
value, and ``np.float64(0.5)`` is not a number it can read back). Without myst-nb installed (Colab) the
value is only returned: nobody renders the prose there.

Defined in Chapter 4.
"""

from __future__ import annotations

import numbers

__all__ = ["glue", "plain_number"]


def plain_number(value):
    """A Python ``int``/``float`` for any numeric scalar (a numpy scalar, a 0-d tensor); other values as they are.

    Defined in Chapter 4.
    """
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def glue(name: str, value) -> None:
    """Record ``value`` under ``name`` for ``{glue:text}`name:fmt``` in the chapter's markdown.

    Returns None, so a ``glue(...)`` on a cell's last line shows nothing.

    Defined in Chapter 4.
    """
    value = plain_number(value)
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # Colab: no book is built there
        return
    myst_glue(name, value, display=False)
