"""What every widget shares: the live-or-static choice, the static widget's base, PNG encoding.

Every demo of the book comes in two forms. *Live*: ipywidgets, redrawn by the kernel as a slider moves
(Jupyter, Colab). *Static*: one self-contained HTML fragment with every frame pre-rendered into an inline
sprite sheet and a few lines of JavaScript that slide it, so the rendered book (no kernel) still responds.
:func:`widget_mode` picks one; a static widget subclasses :class:`StaticWidget`; frames and figures become
PNG bytes through :func:`png_bytes` and :func:`figure_png`.

Defined in Chapter 1.
"""

from __future__ import annotations

import io
import uuid

import numpy as np

from t2i_lib import env


STATIC_ENV = env.STATIC_WIDGETS


MODES = ("auto", "live", "static")


def kernel_has_widgets() -> bool:
    """True inside a running IPython kernel (Jupyter, Colab) where ipywidgets imports."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None or getattr(ip, "kernel", None) is None:
        return False  # a plain terminal IPython cannot show widgets
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def widget_mode(mode: str = "auto") -> str:
    """Resolve ``"auto"`` to ``"live"`` or ``"static"``.

    ``$T2I_STATIC_WIDGETS=1`` -> static (the book build); else live when a kernel with ipywidgets is
    running; else static. ``"live"`` or ``"static"`` are returned as given.

    Defined in Chapter 1.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    if env.static_widgets():
        return "static"
    return "live" if kernel_has_widgets() else "static"


def png_bytes(img: np.ndarray, scale: int = 1) -> bytes:
    """An image as PNG bytes, upscaled by pixel repetition (no blur).

    ``img``: (H, W, C) with C in (1, 3), either float in [0, 1] or uint8 in 0-255.
    """
    from PIL import Image

    img = np.asarray(img)
    a = img if img.dtype == np.uint8 else np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    if scale > 1:
        a = a.repeat(scale, axis=0).repeat(scale, axis=1)
    pil = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)  # uint8 (H, W) -> "L", (H, W, 3) -> "RGB"
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def agg_figure(size_in, dpi: int):
    """A matplotlib Figure on the Agg canvas, outside pyplot (nothing is shown or kept by pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size_in, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig) -> bytes:
    """A matplotlib Figure rendered to PNG bytes."""
    buf = io.BytesIO()
    fig.canvas.print_png(buf)
    return buf.getvalue()


def element_id(prefix: str) -> str:
    """A fresh HTML id for one static widget, so several on a page do not drive each other."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class StaticWidget:
    """Base of the static fallbacks: a notebook or the book displays ``html`` (through ``_repr_html_``).

    Subclasses are dataclasses whose fields include ``html`` and ``element_id``, plus what tests read
    back (the frames' order, the sprite sheet)."""

    html: str
    element_id: str

    def _repr_html_(self) -> str:
        return self.html
