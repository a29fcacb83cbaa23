"""Chapter 4's codebook explorer: the static fallback's frames, the highlighted cells, the live widget."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from t2i_lib.data.shapes.dataset import ShapesDataset
from t2i_lib.models.vqvae import VQVAE, VQVAEConfig
from t2i_lib.viz.widgets.codebook import (DIM, LiveCodebookExplorer, StaticCodebookExplorer, code_masks,
                                          codebook_explorer, render_code_frame)

pytestmark = pytest.mark.usefixtures("one_thread")

SCALE = 2


@pytest.fixture(scope="module")
def vq_and_images():
    torch.manual_seed(0)
    vq = VQVAE(VQVAEConfig.small(num_hiddens=16, num_residual_hiddens=8, embedding_dim=8, num_codes=16,
                                 kmeans_init=True))
    ds = ShapesDataset(image_size=32, length=4, seed=3)
    images = torch.stack([ds[i]["image"] for i in range(4)])  # (4, 3, 32, 32)
    with torch.no_grad():
        vq.train()(images)  # one training-mode pass: k-means puts the codes among these images' vectors
    return vq.eval(), images


def sprite_of(html: str) -> np.ndarray:
    m = re.search(r'class="t2i-frame"[^>]*background-image:url\(data:image/png;base64,([A-Za-z0-9+/=]+)\)', html)
    assert m, "no inline sprite on the frame element"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(m.group(1)))).convert("RGB"))


def test_static_fallback_has_one_frame_per_offered_code(vq_and_images):
    vq, images = vq_and_images
    idx = vq.encode(images)
    offered = sorted(set(idx.reshape(-1).tolist()))[:3] + [15]  # three codes in use and possibly one unused
    ex = codebook_explorer(vq, images, codes=offered, mode="static", scale=SCALE)
    assert isinstance(ex, StaticCodebookExplorer) and ex.codes == tuple(offered)
    sheet = sprite_of(ex.html)
    H, W, _ = ex.frame_shape
    assert sheet.shape == (len(offered) * H, W, 3)
    assert (H, W) == (32 * SCALE, 5 * 32 * SCALE + 4 * 6)  # the filled-code panel + 4 images, 6 px gaps
    for i, c in enumerate(offered):  # frame i of the sprite is exactly the frame of code i
        np.testing.assert_array_equal(sheet[i * H:(i + 1) * H], render_code_frame(vq, images, idx, c, scale=SCALE))
    # the page elements the book's browser test drives
    assert 'class="t2i-widget-fallback"' in ex.html and 'class="t2i-slider"' in ex.html
    assert f'max="{len(offered) - 1}"' in ex.html and "<script>" in ex.html and "http" not in ex.html


def test_highlighted_cells_are_where_encode_returns_the_code(vq_and_images):
    vq, images = vq_and_images
    idx = vq.encode(images)  # (4, 8, 8)
    code = int(torch.mode(idx.reshape(-1)).values)  # the most used code: some cells on, some off
    ex = codebook_explorer(vq, images, codes=[code], mode="static", scale=SCALE)
    np.testing.assert_array_equal(ex.masks[0], (idx == code).numpy())
    assert ex.counts[0] == int((idx == code).sum())
    assert 0 < ex.counts[0] < idx.numel()
    # In the picture: inside a chosen cell (away from its outline) the pixels are the image's own; inside
    # any other cell they are dimmed.
    frame = render_code_frame(vq, images, idx, code, scale=SCALE).astype(np.float32) / 255.0
    cell = 4 * SCALE  # 32 px / 8 cells, upscaled
    panel = 32 * SCALE
    for b in range(len(images)):
        x0 = (b + 1) * (panel + 6)
        img = images[b].permute(1, 2, 0).numpy().repeat(SCALE, 0).repeat(SCALE, 1)
        for i in range(8):
            for j in range(8):
                inner = (slice(i * cell + 1, (i + 1) * cell - 1), slice(x0 + j * cell + 1, x0 + (j + 1) * cell - 1))
                want = img[inner[0], slice(j * cell + 1, (j + 1) * cell - 1)]
                if not bool(idx[b, i, j] == code):
                    want = want * DIM
                np.testing.assert_allclose(frame[inner], want, atol=1 / 255 + 1e-6)


def test_default_codes_are_the_most_used(vq_and_images):
    vq, images = vq_and_images
    idx = vq.encode(images)
    ex = codebook_explorer(vq, images, n_codes=3, mode="static", scale=1)
    counts = torch.bincount(idx.reshape(-1), minlength=16)
    assert [int(counts[c]) for c in ex.codes] == sorted(counts.tolist(), reverse=True)[:3]


def test_bad_code_index_raises_a_clear_error(vq_and_images):
    vq, images = vq_and_images
    with pytest.raises(ValueError, match=r"code 16 is out of range: the codebook has 16 codes, indices 0 to 15"):
        codebook_explorer(vq, images, codes=[0, 16], mode="static")
    with pytest.raises(ValueError, match="out of range"):
        code_masks(vq.encode(images), -1, 16)
    with pytest.raises(TypeError, match="integer"):
        codebook_explorer(vq, images, codes=[1.5], mode="static")
    with pytest.raises(ValueError, match=r"\(B, C, S, S\)"):
        codebook_explorer(vq, images[0], mode="static")


def test_static_fallback_in_a_browser(vq_and_images, static_page):
    vq, images = vq_and_images
    ex = codebook_explorer(vq, images, n_codes=3, mode="static", scale=1)
    page, errors = static_page(ex.html)
    page.locator("input.t2i-slider").fill("2")
    frame = page.locator(".t2i-frame")
    assert frame.evaluate("e => e.style.backgroundPosition") == f"0px {-2 * ex.frame_shape[0]}px"
    assert frame.get_attribute("data-frame") == "2"
    assert page.locator(".t2i-coords").inner_text().startswith(f"code {ex.codes[2]}:")
    assert not errors, errors


def test_live_explorer_redraws_for_the_chosen_code(vq_and_images):
    pytest.importorskip("ipywidgets")
    vq, images = vq_and_images
    ex = codebook_explorer(vq, images, mode="live", scale=SCALE)
    assert isinstance(ex, LiveCodebookExplorer) and ex.slider.max == 15
    idx = vq.encode(images)
    other = int(idx.reshape(-1)[0]) if int(idx.reshape(-1)[0]) != ex.slider.value else (ex.slider.value + 1) % 16
    before = ex.image.value
    ex.slider.value = other
    shown = np.asarray(Image.open(io.BytesIO(ex.image.value)).convert("RGB"))
    assert ex.image.value != before
    np.testing.assert_array_equal(shown, render_code_frame(vq, images, idx, other, scale=SCALE))
    assert ex.readout.value.startswith(f"code {other}:")
