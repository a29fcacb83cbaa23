"""The widget base: the live-or-static rule, PNG encoding that round-trips, a static widget's display."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pytest

from t2i_lib.viz.widgets.base import StaticWidget, agg_figure, element_id, figure_png, png_bytes, widget_mode


def _decode(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)))


def test_png_bytes_round_trips_float_and_uint8_and_upscales_without_blur():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_decode(png_bytes(u8)), u8)
    np.testing.assert_array_equal(_decode(png_bytes(u8.astype(np.float32) / 255)), u8)
    big = _decode(png_bytes(u8, scale=3))
    assert big.shape == (15, 21, 3)
    np.testing.assert_array_equal(big[::3, ::3], u8)  # every pixel repeated, no interpolation
    np.testing.assert_array_equal(big[2::3, 2::3], u8)
    grey = _decode(png_bytes(np.full((4, 4, 1), 0.5, dtype=np.float32)))
    assert grey.shape == (4, 4) and (grey == 128).all()


def test_figures_render_off_pyplot():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = agg_figure((2, 1), dpi=50)
    fig.add_subplot().plot([0, 1], [1, 0])
    img = _decode(figure_png(fig))
    assert img.shape[:2] == (50, 100) and plt.get_fignums() == before


def test_a_static_widget_displays_its_html_through_ipython():
    from IPython.core.formatters import DisplayFormatter

    @dataclass
    class Demo(StaticWidget):
        html: str
        element_id: str = field(default="")

    w = Demo(html='<div id="x">frame</div>', element_id="x")
    bundle, _ = DisplayFormatter().format(w)
    assert bundle["text/html"] == '<div id="x">frame</div>'


def test_element_ids_are_fresh_and_html_safe():
    ids = {element_id("t2i-demo") for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("t2i-demo-") and i.replace("-", "").isalnum() for i in ids)


def test_widget_mode_rule(monkeypatch):
    monkeypatch.setenv("T2I_STATIC_WIDGETS", "1")
    assert widget_mode() == "static" and widget_mode("live") == "live"
    monkeypatch.setenv("T2I_STATIC_WIDGETS", "0")
    assert widget_mode() == "static"  # pytest is no kernel with widgets
    with pytest.raises(ValueError, match="mode must be one of"):
        widget_mode("sometimes")
