"""The codebook explorer: pick a code of a trained image tokenizer and see what it stands for.

It takes any image tokenizer (:mod:`t2i_lib.models.tokenizer`: the VQ-VAEs of Chapter 4, the dVAEs of
Chapter 5) and uses only its ``encode``, ``decode`` and ``num_codes``.

Each frame shows, left to right: what the decoder makes of a code map filled with that one code (the
code's "picture" when it is everywhere at once), then a few images with the cells of their code maps
that chose the code left bright and outlined, and every other cell dimmed. A background code lights up
the black areas; a code of the edge of a red object lights up exactly those edges.

Like :func:`t2i_lib.viz.widgets.latent.latent_explorer` it comes in two forms, chosen by the same rule
(:func:`t2i_lib.viz.widgets.base.widget_mode`; ``T2I_STATIC_WIDGETS=1`` forces the static one):

- **live** (a kernel with ipywidgets): a slider over every code 0 .. K-1; each move draws the frame.
- **static** (the rendered book): the frames of a list of offered codes (by default the most used ones)
  are drawn once, stacked into one sprite-sheet PNG inlined as base64 (frame ``i`` is row ``i``), and a
  few lines of inline JavaScript show the frame the (index) slider points to.

Same CSS classes as the other explorers: ``t2i-widget-fallback``, ``t2i-slider``, ``t2i-frame``.

Defined in Chapter 4.
"""

from __future__ import annotations

import base64
import html as _html
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from t2i_lib.models.checks import check_code, check_images, check_token_values, check_tokens
from t2i_lib.viz.widgets.base import StaticWidget, element_id
from t2i_lib.viz.widgets.base import png_bytes, widget_mode

__all__ = ["code_masks", "render_code_frame", "codebook_explorer", "StaticCodebookExplorer",
           "LiveCodebookExplorer"]

HIGHLIGHT = np.array([1.0, 0.85, 0.0], dtype=np.float32)  # outline of the cells that chose the code
DIM = 0.25  # brightness of the cells that did not


def code_masks(indices: torch.Tensor, code: int, num_codes: int) -> np.ndarray:
    """Where ``code`` occurs in code maps ``indices`` (B, h, w): a bool array (B, h, w).

    Defined in Chapter 4.
    """
    c = check_code(code, num_codes, "code_masks")
    check_tokens(indices, num_codes, None, "code_masks")
    return (indices == c).cpu().numpy()


def _images_hwc(images: torch.Tensor) -> np.ndarray:
    x = images.detach().float().cpu().clamp(0, 1).numpy().transpose(0, 2, 3, 1)  # (B, S, S, C)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


@torch.no_grad()
def _filled_image(tokenizer, code: int, grid: tuple[int, int]) -> np.ndarray:
    img = tokenizer.decode(torch.full((1, *grid), code, dtype=torch.long))
    return _images_hwc(img)[0]  # (S, S, 3)


def _highlight(img: np.ndarray, mask: np.ndarray, scale: int) -> np.ndarray:
    """img (S, S, 3), mask (h, w) -> (S*scale, S*scale, 3): unchosen cells dimmed, chosen ones outlined."""
    s = img.shape[0]
    cell = s // mask.shape[0]
    big = np.repeat(np.repeat(img, scale, 0), scale, 1)  # (S*scale, S*scale, 3)
    pix = np.repeat(np.repeat(mask, cell * scale, 0), cell * scale, 1)  # (S*scale, S*scale)
    out = np.where(pix[..., None], big, big * DIM)
    c = cell * scale
    for i, j in zip(*np.nonzero(mask)):  # a one-pixel outline along each chosen cell's border
        y0, x0 = i * c, j * c
        out[y0, x0:x0 + c] = out[y0 + c - 1, x0:x0 + c] = HIGHLIGHT
        out[y0:y0 + c, x0] = out[y0:y0 + c, x0 + c - 1] = HIGHLIGHT
    return out


def render_code_frame(tokenizer, images: torch.Tensor, indices: torch.Tensor, code: int, *, scale: int = 3,
                      gap: int = 6) -> np.ndarray:
    """One frame of the explorer as a uint8 RGB array (S*scale, (B+1)*S*scale + B*gap, 3): the decoded
    map filled with ``code`` (``tokenizer.decode``), then each of the images (B, C, S, S) with the cells of
    its code map ``indices`` (B, h, w) that chose ``code`` bright and outlined.

    Defined in Chapter 4.
    """
    k = int(tokenizer.num_codes)
    masks = code_masks(indices, code, k)  # (B, h, w)
    imgs = _images_hwc(images)
    if len(imgs) != len(masks):
        raise ValueError(f"{len(imgs)} images but {len(masks)} code maps")
    grid = (int(indices.shape[1]), int(indices.shape[2]))
    panels = [np.repeat(np.repeat(_filled_image(tokenizer, int(code), grid), scale, 0), scale, 1)]
    panels += [_highlight(img, m, scale) for img, m in zip(imgs, masks)]
    h = panels[0].shape[0]
    spacer = np.ones((h, gap, 3), dtype=np.float32)
    row = [panels[0]]
    for p in panels[1:]:
        row += [spacer, p]
    return np.clip(np.round(np.concatenate(row, axis=1) * 255), 0, 255).astype(np.uint8)


@dataclass
class StaticCodebookExplorer(StaticWidget):
    """The kernel-free explorer: self-contained HTML with an inline sprite sheet (frame i = row i).
    Defined in Chapter 4."""

    html: str
    codes: tuple  # the offered code indices, in slider order
    masks: np.ndarray  # (len(codes), B, h, w) bool: the highlighted cells of each frame
    counts: np.ndarray  # (len(codes),) how many cells of the shown images chose each code
    sprite_png: bytes  # (len(codes) * H, W, 3) RGB
    frame_shape: tuple  # (H, W, 3)
    element_id: str = field(default="")


_JS = """
(function () {
  var root = document.getElementById(%(id)s);
  if (!root) { return; }
  var codes = %(codes)s, labels = %(labels)s, py = %(py)d;
  var s = root.querySelector("input.t2i-slider");
  var frame = root.querySelector(".t2i-frame");
  var readout = root.querySelector(".t2i-coords");
  function update() {
    var i = parseInt(s.value, 10);
    frame.style.backgroundPosition = "0px " + (-i * py) + "px";
    frame.setAttribute("data-frame", String(i));
    readout.textContent = labels[i];
  }
  s.addEventListener("input", update);
  update();
})();
"""


def _label(code: int, count: int, total: int, freq: float | None) -> str:
    text = f"code {code}: {count} of {total} cells in these images"
    if freq is not None:
        text += f"; {100 * freq:.1f}% of all cells in the sample"
    return text


def _static(tokenizer, images, indices, codes, freqs, scale, title) -> StaticCodebookExplorer:
    k = int(tokenizer.num_codes)
    frames = [render_code_frame(tokenizer, images, indices, c, scale=scale) for c in codes]
    H, W, _ = frames[0].shape
    sheet = np.concatenate(frames, axis=0)  # (n * H, W, 3)
    sprite = png_bytes(sheet.astype(np.float32) / 255.0)
    masks = np.stack([code_masks(indices, c, k) for c in codes])  # (n, B, h, w)
    counts = masks.reshape(len(codes), -1).sum(1)
    total = int(np.prod(indices.shape))
    labels = [_label(c, int(n), total, None if freqs is None else float(freqs[c])) for c, n in zip(codes, counts)]
    uid = element_id("t2i-codebook")
    js = _JS % dict(id=json.dumps(uid), codes=json.dumps([int(c) for c in codes]), labels=json.dumps(labels), py=H)
    b64 = base64.b64encode(sprite).decode("ascii")
    title_html = f'<div style="font-weight:bold;margin-bottom:0.3em">{_html.escape(title)}</div>' if title else ""
    html = f"""<div id="{uid}" class="t2i-widget-fallback" data-n="{len(codes)}" style="font-family:sans-serif;margin:0.5em 0">
{title_html}<div class="t2i-frame" role="img" aria-label="the chosen code decoded on its own, and the cells of several images that chose it" data-frame="0" style="width:{W}px;height:{H}px;max-width:none;background-image:url(data:image/png;base64,{b64});background-size:{W}px {len(codes) * H}px;background-position:0px 0px;background-repeat:no-repeat;image-rendering:pixelated;border:1px solid #999"></div>
<label style="display:block;font-size:0.9em;margin:0.3em 0">code (most used first) <input type="range" class="t2i-slider" data-axis="code" min="0" max="{len(codes) - 1}" step="1" value="0" aria-label="code" style="width:260px;vertical-align:middle"></label>
<div class="t2i-coords" style="font-size:0.9em">{_html.escape(labels[0])}</div>
<div style="font-size:0.8em;color:#666">Left: a code map filled with this one code, decoded. Right: images with the cells that chose it outlined. Static version: {len(codes)} codes drawn when the page was built; run the notebook to explore all {k}.</div>
<script>{js}</script>
</div>"""
    return StaticCodebookExplorer(html=html, codes=tuple(int(c) for c in codes), masks=masks, counts=counts,
                                  sprite_png=sprite, frame_shape=(H, W, 3), element_id=uid)


class LiveCodebookExplorer:
    """The ipywidgets explorer: ``slider`` (any code 0 .. K-1), ``image`` (the frame), ``readout``.
    Defined in Chapter 4."""

    def __init__(self, tokenizer, images, indices, first: int, freqs, scale, title):
        import ipywidgets as W

        self._tok, self._images, self._indices, self._freqs, self._scale = tokenizer, images, indices, freqs, scale
        k = int(tokenizer.num_codes)
        self.slider = W.IntSlider(value=first, min=0, max=k - 1, description="code", continuous_update=False,
                                  layout=W.Layout(width="360px"))
        self.image = W.Image(format="png")
        self.readout = W.HTML()
        header = [W.HTML(f"<b>{_html.escape(title)}</b>")] if title else []
        self.widget = W.VBox(header + [self.image, self.slider, self.readout])
        self.slider.observe(self._update, names="value")
        self._update()

    def _update(self, change=None):
        c = self.slider.value
        frame = render_code_frame(self._tok, self._images, self._indices, c, scale=self._scale)
        self.image.value = png_bytes(frame.astype(np.float32) / 255.0)
        n = int((self._indices == c).sum())
        self.readout.value = _html.escape(_label(c, n, int(np.prod(self._indices.shape)),
                                                 None if self._freqs is None else float(self._freqs[c])))

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


@torch.no_grad()
def codebook_explorer(tokenizer, images: torch.Tensor, *, codes=None, n_codes: int = 12, code_maps=None,
                      scale: int = 3, mode: str = "auto", title: str | None = None):
    """Explore a trained tokenizer's codebook: pick a code, see it decoded on its own and see which cells of
    ``images`` (B, C, S, S) in [0, 1] chose it (their code maps come from ``tokenizer.encode``).

    ``tokenizer``: any image tokenizer (a VQ-VAE, a dVAE, OpenAI's dVAE); only ``encode``, ``decode``
    and ``num_codes`` are used.

    ``codes``: the codes the static version offers (default: the ``n_codes`` most used in ``code_maps``,
    most used first). ``code_maps`` (N, h, w): a larger sample of code maps for the usage percentages
    and the default choice (default: the images' own maps). The live version offers every code.

    Returns a :class:`LiveCodebookExplorer` or a :class:`StaticCodebookExplorer`.

    Defined in Chapter 4.
    """
    k = int(tokenizer.num_codes)
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"codebook_explorer expects images (B, C, S, S) as a tensor; received {type(images).__name__}")
    check_images(images, None, None, "codebook_explorer")
    indices = tokenizer.encode(images).cpu()  # (B, h, w)
    check_tokens(indices, k, None, f"codebook_explorer (what {type(tokenizer).__name__}.encode returned)")
    maps = indices if code_maps is None else torch.as_tensor(code_maps).cpu()
    if code_maps is not None:
        check_token_values(maps, k, "codebook_explorer (code_maps)")
    hist = torch.bincount(maps.reshape(-1).long(), minlength=k).double()
    freqs = (hist / hist.sum()).numpy()
    if codes is None:
        order = torch.argsort(hist, descending=True, stable=True)
        codes = [int(c) for c in order[: min(n_codes, int((hist > 0).sum()))]]
    else:
        codes = [check_code(c, k, "codebook_explorer") for c in codes]
    if not codes:
        raise ValueError("codebook_explorer needs at least one code to offer")
    if widget_mode(mode) == "live":
        return LiveCodebookExplorer(tokenizer, images.cpu(), indices, codes[0], freqs, scale, title)
    return _static(tokenizer, images.cpu(), indices, codes, freqs, scale, title)
