"""What every widget shares."""

from __future__ import annotations

import io

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
    """float (H, W, C) in [0, 1] -> PNG bytes, upscaled by pixel repetition (no blur)."""
    from PIL import Image

    a = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    if scale > 1:
        a = a.repeat(scale, axis=0).repeat(scale, axis=1)
    pil = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)  # uint8 (H, W) -> "L", (H, W, 3) -> "RGB"
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
