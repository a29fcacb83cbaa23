"""The latent explorer (live ipywidgets and the static HTML fallback) and the figures of Chapter 1."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from t2i_lib.viz import plots
from t2i_lib.viz.widgets import base as widgets
from t2i_lib.viz.widgets.base import widget_mode
from t2i_lib.viz.widgets.latent import LiveExplorer, StaticExplorer, latent_explorer

H = W = 12
_g = torch.Generator().manual_seed(0)
_A, _B = torch.randn(H, W, generator=_g), torch.randn(H, W, generator=_g)


def decode_fn(z: torch.Tensor) -> torch.Tensor:
    """A decoder whose every latent point gives a visibly different image: (N, 2) -> (N, 1, H, W)."""
    return torch.sigmoid(z[:, :1, None, None] * _A + z[:, 1:2, None, None] * _B)  # (N, 1, H, W)


def codes(n=400, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g) * torch.tensor([1.0, 2.0]) + torch.tensor([0.5, -1.0])
    return z, torch.randint(0, 10, (n,), generator=g)


def sprite_of(html: str) -> np.ndarray:
    m = re.search(r'class="t2i-frame"[^>]*background-image:url\(data:image/png;base64,([A-Za-z0-9+/=]+)\)', html)
    assert m, "no inline sprite on the frame element"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(m.group(1)))))


# ---------------------------------------------------------------------------------------------------
# Static fallback
# ---------------------------------------------------------------------------------------------------

def test_static_explorer_frames_match_the_decoder():
    z, y = codes()
    n = 7
    ex = latent_explorer(decode_fn, z, y, n=n, mode="static")
    assert isinstance(ex, StaticExplorer) and ex.n == n
    sprite = sprite_of(ex.html)
    assert sprite.shape == (n * H, n * W), "the sprite holds n x n frames of the decoder's size"
    assert ex.grid_points.shape == (n * n, 2)
    expected = decode_fn(torch.as_tensor(ex.grid_points, dtype=torch.float32))[:, 0].numpy()  # (n*n, H, W)
    for k in range(n * n):
        r, c = divmod(k, n)
        frame = sprite[r * H:(r + 1) * H, c * W:(c + 1) * W] / 255.0
        np.testing.assert_allclose(frame, expected[k], atol=0.5 / 255 + 1e-6, err_msg=f"frame {k}")
    # The frames really differ, so the comparison above identifies each one.
    assert np.abs(expected[0] - expected[1]).max() > 0.05 and np.abs(expected[0] - expected[n]).max() > 0.05
    # Grid: z_1 along a row, z_2 down the rows, over the codes' 1%-99% range.
    lo, hi = np.quantile(z.numpy(), 0.01, axis=0), np.quantile(z.numpy(), 0.99, axis=0)
    np.testing.assert_allclose(ex.x_values, np.linspace(lo[0], hi[0], n), rtol=1e-6)
    np.testing.assert_allclose(ex.y_values, np.linspace(lo[1], hi[1], n), rtol=1e-6)
    np.testing.assert_allclose(ex.grid_points[n + 2], [ex.x_values[2], ex.y_values[1]])


def test_static_explorer_html_is_self_contained():
    z, y = codes()
    ex = latent_explorer(decode_fn, z, y, n=5, mode="static")
    html = ex.html
    assert html.count('class="t2i-widget-fallback"') == 1 and html.count('class="t2i-frame"') == 1
    sliders = re.findall(r'<input type="range" class="t2i-slider"[^>]*>', html)
    assert len(sliders) == 2
    for s in sliders:
        assert 'min="0"' in s and 'max="4"' in s and 'step="1"' in s and 'value="2"' in s
    assert "<script>" in html and "<script src" not in html and "http" not in html
    assert 'addEventListener("input"' in html
    # Every call gets its own element id (two explorers on one page must not steer each other).
    other = latent_explorer(decode_fn, z, y, n=5, mode="static")
    assert ex.element_id != other.element_id and f'id="{ex.element_id}"' in html


def test_static_explorer_in_a_browser(static_page):
    """The inline script moves the sprite to frame (row j, column i) when the sliders move."""
    z, y = codes()
    n, scale = 5, 3
    ex = latent_explorer(decode_fn, z, y, n=n, mode="static", scale=scale)
    page, errors = static_page(ex.html)
    frame = page.locator(".t2i-frame")
    sliders = page.locator("input.t2i-slider")
    sliders.nth(0).fill("4")
    sliders.nth(1).fill("1")
    px = W * scale
    assert frame.evaluate("e => e.style.backgroundPosition") == f"{-4 * px}px {-1 * H * scale}px"
    assert frame.get_attribute("data-frame") == str(1 * n + 4)
    assert page.locator(".t2i-coords").inner_text() == f"z = ({ex.x_values[4]:.2f}, {ex.y_values[1]:.2f})"
    assert not errors, errors


def test_explorer_rejects_wide_latents():
    with pytest.raises(ValueError, match=r"shape \(N, 2\); got shape \(10, 3\)"):
        latent_explorer(decode_fn, torch.zeros(10, 3), mode="static")
    with pytest.raises(ValueError, match="differ in length"):
        latent_explorer(decode_fn, torch.zeros(10, 2), torch.zeros(9), mode="static")


# ---------------------------------------------------------------------------------------------------
# Live widget and the mode switch
# ---------------------------------------------------------------------------------------------------

def test_live_explorer_updates_the_image_when_a_slider_moves():
    pytest.importorskip("ipywidgets")
    z, y = codes()
    ex = latent_explorer(decode_fn, z, y, mode="live", scale=2)
    assert isinstance(ex, LiveExplorer)
    before_img, before_scatter = ex.image.value, ex.scatter.value
    ex.sliders[0].value = ex.sliders[0].max
    ex.sliders[1].value = ex.sliders[1].min
    assert ex.image.value != before_img and ex.scatter.value != before_scatter
    shown = np.asarray(Image.open(io.BytesIO(ex.image.value)))[::2, ::2] / 255.0  # undo the 2x zoom
    point = torch.tensor([[ex.sliders[0].value, ex.sliders[1].value]], dtype=torch.float32)
    np.testing.assert_allclose(shown, decode_fn(point)[0, 0].numpy(), atol=0.5 / 255 + 1e-6)
    assert "widget-view" in str(ex._repr_mimebundle_())


def test_widget_mode(monkeypatch):
    monkeypatch.setenv("T2I_STATIC_WIDGETS", "1")
    monkeypatch.setattr(widgets, "kernel_has_widgets", lambda: True)
    assert widget_mode() == "static"
    assert widget_mode("live") == "live"
    monkeypatch.delenv("T2I_STATIC_WIDGETS")
    assert widget_mode() == "live"
    monkeypatch.setattr(widgets, "kernel_has_widgets", lambda: False)
    assert widget_mode() == "static"
    with pytest.raises(ValueError, match="mode must be one of"):
        widget_mode("interactive")


def test_no_kernel_here_means_static(monkeypatch):
    monkeypatch.delenv("T2I_STATIC_WIDGETS", raising=False)
    assert not widgets.kernel_has_widgets()  # pytest is no IPython kernel
    z, y = codes()
    assert isinstance(latent_explorer(decode_fn, z, y, n=3), StaticExplorer)


# ---------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------

def test_latent_manifold_puts_large_z2_on_top():
    z, _ = codes()
    n = 4
    fig = plots.plot_latent_manifold(decode_fn, x_range=(-1, 1), y_range=(-2, 2), n=n, gap=0)
    img = fig.axes[0].images[0].get_array()  # (n*H, n*W)
    top_left = decode_fn(torch.tensor([[-1.0, 2.0]]))[0, 0].numpy()
    bottom_right = decode_fn(torch.tensor([[1.0, -2.0]]))[0, 0].numpy()
    np.testing.assert_allclose(img[:H, :W], top_left, atol=1e-6)
    np.testing.assert_allclose(img[-H:, -W:], bottom_right, atol=1e-6)


def test_latent_manifold_separates_the_tiles_with_grey_gaps():
    n, gap = 3, 2
    fig = plots.plot_latent_manifold(decode_fn, x_range=(-1, 1), y_range=(-2, 2), n=n)  # the default gap
    img = np.asarray(fig.axes[0].images[0].get_array())
    assert img.shape == (n * (H + gap) + gap, n * (W + gap) + gap)
    top_left = decode_fn(torch.tensor([[-1.0, 2.0]]))[0, 0].numpy()
    np.testing.assert_allclose(img[gap:gap + H, gap:gap + W], top_left, atol=1e-6)
    assert np.all(img[:gap] == 0.5) and np.all(img[:, gap + W:2 * gap + W] == 0.5)  # the border and a gap
    with pytest.raises(ValueError, match="gap must be"):
        plots.plot_latent_manifold(decode_fn, x_range=(-1, 1), y_range=(-2, 2), n=n, gap=-1)


def test_image_grid_and_figures():
    imgs = torch.rand(5, 1, H, W)
    grid = plots.image_grid(imgs, nrow=3, pad=1)
    assert grid.shape == (2 * (H + 1) + 1, 3 * (W + 1) + 1, 1)
    np.testing.assert_allclose(grid[1:1 + H, 1 + (W + 1):1 + (W + 1) + W, 0], imgs[1, 0].numpy())
    assert grid[-1 - H:-1, -1 - W:-1].min() == 1.0  # the sixth cell is empty padding
    for fig in (plots.show_images(imgs), plots.show_images(imgs, labels=list("abcde")),
                plots.show_reconstructions(imgs, imgs.flip(0)),
                plots.plot_latent_scatter(*codes()),
                plots.plot_latent_scatter(torch.randn(50, 5), torch.arange(50) % 3),
                plots.show_interpolation(decode_fn, [0, 0], [1, 1], steps=4, endpoints=imgs[:2])):
        assert len(fig.axes) >= 1
    lat = plots.interpolate_latents(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]), steps=3)
    np.testing.assert_allclose(lat.numpy(), [[0, 2], [0.5, 1], [1, 0]])
    with pytest.raises(ValueError, match="differ in shape"):
        plots.show_reconstructions(imgs, imgs[:, :, :-1])
