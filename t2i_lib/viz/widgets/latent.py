"""Interactive demos, each with a static fallback for the rendered book.

:func:`latent_explorer` lets a reader walk a 2-D latent space: move two sliders, see the point on a
scatter of the data's codes, and see what the decoder makes of it.

Two ways to show it, chosen by :func:`~t2i_lib.viz.widgets.base.widget_mode`:

- **live** (a running Jupyter or Colab kernel with ipywidgets): two ``FloatSlider``s; every move
  decodes the point on the spot and updates an ``Image`` widget and the scatter's marker.
- **static** (the rendered book, which has no kernel): the decoder is run once on an n x n grid of
  points over the codes' range, the frames are packed into one sprite-sheet PNG inlined as base64,
  and a few lines of inline JavaScript move the visible frame when the (index) sliders move. The page
  stays self-contained: no external script, no server. ``make book`` sets ``T2I_STATIC_WIDGETS=1``
  to force this mode.

The static HTML carries stable CSS classes for tests and styling: the container
``t2i-widget-fallback``, the sliders ``t2i-slider`` and the frame ``t2i-frame``.

Defined in Chapter 1.
"""

from __future__ import annotations

import base64
import html as _html
import json
from dataclasses import dataclass, field

import numpy as np

from t2i_lib.viz.plots.latent import decode_numpy, latent_grid_points, latent_range
from t2i_lib.viz.widgets.base import StaticWidget, element_id, figure_png
from t2i_lib.viz.widgets.base import png_bytes, widget_mode


def _as_np(x):
    if x is None:
        return None
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:
        pass
    return np.asarray(x)


# The scatter panel is drawn with a fixed axes box so the marker can be placed by percentages.
_AX_BOX = (0.15, 0.12, 0.80, 0.72)  # left, bottom, width, height as fractions of the figure


def _scatter_figure(latents, labels, xlim, ylim, size_in=(3.6, 3.4), dpi=90):
    """A bare Agg figure (never shown by pyplot) with the codes' scatter and a marker artist."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size_in, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes(_AX_BOX)
    if labels is None:
        ax.scatter(latents[:, 0], latents[:, 1], s=4, alpha=0.6, linewidths=0)
    else:
        classes = np.unique(labels)
        cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
        for i, c in enumerate(classes):
            m = labels == c
            ax.scatter(latents[m, 0], latents[m, 1], s=4, alpha=0.7, linewidths=0, color=cmap(i % cmap.N),
                       label=str(c))
        ax.legend(markerscale=2, fontsize=6, ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  frameon=False, handletextpad=0.1, columnspacing=0.6)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("$z_1$", fontsize=8, labelpad=1)
    ax.set_ylabel("$z_2$", fontsize=8, labelpad=1)
    ax.tick_params(labelsize=7)
    (marker,) = ax.plot([], [], marker="o", markersize=11, markerfacecolor=(1, 1, 1, 0.6), markeredgecolor="black",
                        markeredgewidth=2, linestyle="none")  # the same ring the static version draws
    return fig, marker


def _padded(lo_hi, frac=0.06):
    lo, hi = lo_hi
    pad = (hi - lo) * frac
    return lo - pad, hi + pad


@dataclass
class StaticExplorer(StaticWidget):
    """The kernel-free latent explorer: self-contained HTML with an inline sprite sheet.

    ``grid_points[k]`` is the latent decoded into frame ``k``; frame k sits at row ``k // n``,
    column ``k % n`` of the sprite (z_1 along a row, z_2 down the rows).
    """

    html: str  # the whole widget: <div class="t2i-widget-fallback"> ... <script> ... </script></div>
    n: int  # frames per axis: n*n frames in all
    grid_points: np.ndarray  # (n*n, 2) latent of each frame
    x_values: np.ndarray  # (n,) the z_1 value of each slider-1 position
    y_values: np.ndarray  # (n,) the z_2 value of each slider-2 position
    sprite_png: bytes  # the sprite sheet (n*H, n*W) as PNG
    frame_shape: tuple  # (H, W, C) of one decoded frame
    element_id: str = field(default="")


class LiveExplorer:
    """The ipywidgets latent explorer. Display it as a cell's value; ``sliders``, ``image`` and
    ``scatter`` are the widgets (tests drive ``sliders[i].value``)."""

    def __init__(self, decode_fn, latents, labels, x_range, y_range, scale, device, title):
        import ipywidgets as W

        self._decode_fn, self._device, self._scale = decode_fn, device, scale
        xlim, ylim = _padded(x_range), _padded(y_range)
        self._fig, self._marker = _scatter_figure(latents, labels, xlim, ylim)
        mid = [(x_range[0] + x_range[1]) / 2, (y_range[0] + y_range[1]) / 2]
        layout = W.Layout(width="300px")
        self.sliders = [
            W.FloatSlider(value=mid[a], min=r[0], max=r[1], step=(r[1] - r[0]) / 200, description=f"z{a + 1}",
                          readout_format=".2f", continuous_update=True, layout=layout)
            for a, r in enumerate((x_range, y_range))]
        self.image = W.Image(format="png")
        self.scatter = W.Image(format="png")
        self.readout = W.HTML()
        header = [W.HTML(f"<b>{_html.escape(title)}</b>")] if title else []
        self.widget = W.VBox(header + [W.HBox([self.scatter, W.VBox([self.image, *self.sliders, self.readout])])])
        for s in self.sliders:
            s.observe(self._update, names="value")
        self._update()

    def point(self) -> np.ndarray:
        return np.array([[self.sliders[0].value, self.sliders[1].value]], dtype=np.float32)  # (1, 2)

    def _update(self, change=None):
        z = self.point()
        frame = decode_numpy(self._decode_fn, z, self._device)[0]  # (H, W, C)
        self.image.value = png_bytes(frame, self._scale)
        self._marker.set_data([z[0, 0]], [z[0, 1]])
        self.scatter.value = figure_png(self._fig)
        self.readout.value = f"z = ({z[0, 0]:.2f}, {z[0, 1]:.2f})"

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


_JS = """
(function () {
  var root = document.getElementById(%(id)s);
  if (!root) { return; }
  var n = %(n)d, px = %(px)d, py = %(py)d, xs = %(xs)s, ys = %(ys)s, box = %(box)s, lim = %(lim)s;
  var s = root.querySelectorAll("input.t2i-slider");
  var frame = root.querySelector(".t2i-frame");
  var coords = root.querySelector(".t2i-coords");
  var marker = root.querySelector(".t2i-marker");
  function update() {
    var i = parseInt(s[0].value, 10), j = parseInt(s[1].value, 10);
    frame.style.backgroundPosition = (-i * px) + "px " + (-j * py) + "px";
    frame.setAttribute("data-frame", String(j * n + i));
    coords.textContent = "z = (" + xs[i].toFixed(2) + ", " + ys[j].toFixed(2) + ")";
    var fx = box[0] + box[2] * (xs[i] - lim[0]) / (lim[1] - lim[0]);
    var fy = box[1] + box[3] * (ys[j] - lim[2]) / (lim[3] - lim[2]);
    marker.style.left = (100 * fx) + "%%";
    marker.style.top = (100 * (1 - fy)) + "%%";
  }
  s[0].addEventListener("input", update);
  s[1].addEventListener("input", update);
  update();
})();
"""


def _static_explorer(decode_fn, latents, labels, x_range, y_range, n, scale, device, title) -> StaticExplorer:
    pts = latent_grid_points(x_range, y_range, n)  # (n*n, 2): k -> (xs[k % n], ys[k // n])
    frames = decode_numpy(decode_fn, pts, device)  # (n*n, H, W, C)
    H, W, C = frames.shape[1:]
    sheet = frames.reshape(n, n, H, W, C).transpose(0, 2, 1, 3, 4).reshape(n * H, n * W, C)  # row j, col i
    sprite = png_bytes(sheet)
    xs, ys = pts[:n, 0], pts[::n, 1]

    xlim, ylim = _padded(x_range), _padded(y_range)
    fig, _ = _scatter_figure(latents, labels, xlim, ylim)
    scatter_png = figure_png(fig)

    uid = element_id("t2i-explorer")
    fw, fh = W * scale, H * scale  # displayed frame size in CSS px
    i0 = j0 = n // 2
    b64 = base64.b64encode(sprite).decode("ascii")
    s64 = base64.b64encode(scatter_png).decode("ascii")
    js = _JS % dict(id=json.dumps(uid), n=n, px=fw, py=fh, xs=json.dumps([round(float(v), 6) for v in xs]),
                    ys=json.dumps([round(float(v), 6) for v in ys]), box=json.dumps(list(_AX_BOX)),
                    lim=json.dumps([float(xlim[0]), float(xlim[1]), float(ylim[0]), float(ylim[1])]))
    slider = ('<label style="display:block;font-size:0.9em;margin:0.2em 0">{name} '
              '<input type="range" class="t2i-slider" data-axis="{axis}" min="0" max="{mx}" step="1" '
              'value="{v}" aria-label="{name}" style="width:220px;vertical-align:middle"></label>')
    title_html = f'<div style="font-weight:bold;margin-bottom:0.3em">{_html.escape(title)}</div>' if title else ""
    html = f"""<div id="{uid}" class="t2i-widget-fallback" data-n="{n}" style="font-family:sans-serif;margin:0.5em 0">
{title_html}<div style="display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start">
<div class="t2i-scatter" style="position:relative;display:inline-block;line-height:0">
<img src="data:image/png;base64,{s64}" alt="latent codes of the data, coloured by label" style="max-width:none">
<div class="t2i-marker" style="position:absolute;width:12px;height:12px;margin:-8px 0 0 -8px;border:2px solid #000;border-radius:50%;background:rgba(255,255,255,0.6);pointer-events:none"></div>
</div>
<div>
<div class="t2i-frame" role="img" aria-label="decoded image at the chosen latent point" data-frame="{j0 * n + i0}" style="width:{fw}px;height:{fh}px;background-image:url(data:image/png;base64,{b64});background-size:{n * fw}px {n * fh}px;background-position:{-i0 * fw}px {-j0 * fh}px;background-repeat:no-repeat;image-rendering:pixelated;border:1px solid #999"></div>
{slider.format(name="z<sub>1</sub>", axis=1, mx=n - 1, v=i0)}
{slider.format(name="z<sub>2</sub>", axis=2, mx=n - 1, v=j0)}
<div class="t2i-coords" style="font-size:0.9em">z = ({xs[i0]:.2f}, {ys[j0]:.2f})</div>
<div style="font-size:0.8em;color:#666;max-width:260px">Static version: {n}&times;{n} frames decoded when the page was built. Run the notebook for the live widget.</div>
</div></div>
<script>{js}</script>
</div>"""
    return StaticExplorer(html=html, n=n, grid_points=pts, x_values=xs, y_values=ys, sprite_png=sprite,
                          frame_shape=(H, W, C), element_id=uid)


def latent_explorer(decode_fn, latents, labels=None, *, n: int = 15, quantile: float = 0.01,
                    mode: str = "auto", scale: int = 5, device=None, title: str | None = None):
    """Explore a 2-D latent space: pick a point with two sliders, see its place among the data's
    codes and the image the decoder makes of it.

    ``decode_fn`` maps a float tensor (N, 2) to images (N, C, H, W) or (N, H, W) in [0, 1], e.g. a
    trained model's ``decode``. ``latents`` (N, 2) are the codes of real data (their range, from the
    ``quantile`` to the ``1 - quantile`` quantile, bounds the sliders) and ``labels`` (N,) colour them.
    ``n`` is the static version's frames per axis, ``scale`` the pixel magnification.

    Returns a :class:`LiveExplorer` or a :class:`StaticExplorer` (see :func:`~t2i_lib.viz.widgets.base.widget_mode`); either
    displays itself as a notebook cell's value.

    Defined in Chapter 1.
    """
    z = _as_np(latents).astype(np.float64)  # (N, 2)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"latent_explorer needs 2-D latents of shape (N, 2); got shape {z.shape}. "
                         "Train a model with latent_dim=2 (or project the codes to 2-D first).")
    y = _as_np(labels)
    if y is not None and len(y) != len(z):
        raise ValueError(f"labels ({len(y)}) and latents ({len(z)}) differ in length")
    if n < 2:
        raise ValueError(f"n (frames per axis) must be at least 2, got {n}")
    x_range, y_range = latent_range(z, quantile)
    if widget_mode(mode) == "live":
        return LiveExplorer(decode_fn, z, y, x_range, y_range, scale, device, title)
    return _static_explorer(decode_fn, z, y, x_range, y_range, n, scale, device, title)
