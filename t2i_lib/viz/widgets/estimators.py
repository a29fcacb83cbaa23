"""The estimator explorer: the pathwise and score-function gradient estimates side by side, as
histograms, for a test function of z ~ N(mu, sigma^2), with sliders for mu, sigma and the sample count.

Like :func:`t2i_lib.viz.widgets.latent.latent_explorer` it comes in two forms, chosen by the same rule
(:func:`t2i_lib.viz.widgets.base.widget_mode`: ``T2I_STATIC_WIDGETS=1`` forces the static one):

- **live** (a kernel with ipywidgets): every slider move draws fresh samples and redraws the figure.
- **static** (the rendered book): every combination of a small grid of slider values is drawn once,
  the frames are packed into one sprite-sheet PNG inlined as base64, and a few lines of inline
  JavaScript show the frame the three (index) sliders point to. Frame (i_mu, i_sigma, i_n) sits at row
  ``i_mu * len(sigma_values) + i_sigma``, column ``i_n`` of the sprite.

Same CSS classes as the latent explorer: ``t2i-widget-fallback``, ``t2i-slider``, ``t2i-frame``.

Defined in Chapter 3.
"""

from __future__ import annotations

import base64
import html as _html
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from t2i_lib.experiments.estimators import PARAMS, get_case, pathwise_grad, score_function_grad
from t2i_lib.viz.widgets.base import StaticWidget, agg_figure, element_id, figure_png, png_bytes
from t2i_lib.viz.widgets.base import widget_mode

DEFAULT_MU = (-1.0, -0.5, 0.0, 0.5, 1.0)
DEFAULT_SIGMA = (0.25, 0.5, 1.0)
DEFAULT_N = (10, 100, 1000)
_COLORS = {"pathwise": "#1f77b4", "score function": "#d62728"}


def _estimates(case, mu: float, sigma: float, n: int, seed: int, param: str) -> dict[str, np.ndarray]:
    c = get_case(case)
    j = PARAMS.index(param)
    g = torch.Generator().manual_seed(seed)
    return {"pathwise": pathwise_grad(c.f, mu, sigma, n, g)[:, j].numpy(),
            "score function": score_function_grad(c.f, mu, sigma, n, g)[:, j].numpy()}


def _draw(fig, case, mu: float, sigma: float, n: int, seed: int, param: str) -> None:
    """Draw one frame into ``fig`` (cleared first): a histogram panel per estimator, sharing the x axis."""
    c = get_case(case)
    est = _estimates(c, mu, sigma, n, seed, param)
    exact = float(c.exact(mu, sigma)[PARAMS.index(param)])
    allv = np.concatenate(list(est.values()))
    lo, hi = np.quantile(allv, [0.01, 0.99])
    lo, hi = min(lo, exact), max(hi, exact)
    pad = 0.08 * (hi - lo) if hi > lo else 0.5
    lo, hi = lo - pad, hi + pad
    fig.clear()
    axes = fig.subplots(1, 2, sharex=True)
    bins = np.linspace(lo, hi, 41)
    label = "d/dmu" if param == "mu" else "d/dsigma"
    for ax, (name, v) in zip(axes, est.items()):
        ax.hist(np.clip(v, lo, hi), bins=bins, color=_COLORS[name], alpha=0.75)
        m, se = float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)))
        ax.axvline(exact, color="black", lw=1.5, label=f"exact {exact:.3f}")
        ax.axvline(m, color=_COLORS[name], ls="--", lw=1.5, label=f"mean {m:.3f} ± {se:.3f}")
        ax.set_title(f"{name}: var {float(v.var(ddof=1)):.3g}", fontsize=11)
        ax.set_xlabel(f"per-sample estimate of {label}", fontsize=10)
        ax.tick_params(labelsize=9)
        ax.legend(fontsize=9, loc="upper right", frameon=False)
        ax.set_yticks([])
    fig.suptitle(f"f(z) = {c.formula},  z ~ N({mu:.2f}, {sigma:.2f}²),  n = {n}", fontsize=11)
    fig.tight_layout()


def render_frame(case, mu: float, sigma: float, n: int, *, seed: int = 0, param: str = "mu",
                 size_in=(8.0, 2.8), dpi: int = 90) -> np.ndarray:
    """One frame of the explorer as a uint8 RGB array (H, W, 3). Same seed, same frame.
    Defined in Chapter 3."""
    fig = agg_figure(size_in, dpi)
    _draw(fig, case, mu, sigma, n, seed, param)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


@dataclass
class StaticEstimatorExplorer(StaticWidget):
    """The kernel-free explorer: self-contained HTML with an inline sprite sheet."""

    html: str
    mu_values: tuple
    sigma_values: tuple
    n_values: tuple
    sprite_png: bytes  # (len(mu) * len(sigma) * H, len(n) * W) RGB
    frame_shape: tuple  # (H, W, 3)
    element_id: str = field(default="")

    @property
    def n_frames(self) -> int:
        return len(self.mu_values) * len(self.sigma_values) * len(self.n_values)

    def frame_position(self, i_mu: int, i_sigma: int, i_n: int) -> tuple[int, int]:
        """(row, column) of a frame in the sprite."""
        return i_mu * len(self.sigma_values) + i_sigma, i_n


_JS = """
(function () {
  var root = document.getElementById(%(id)s);
  if (!root) { return; }
  var mus = %(mus)s, sigmas = %(sigmas)s, ns = %(ns)s, px = %(px)d, py = %(py)d;
  var s = root.querySelectorAll("input.t2i-slider");
  var frame = root.querySelector(".t2i-frame");
  var readout = root.querySelector(".t2i-coords");
  function update() {
    var a = parseInt(s[0].value, 10), b = parseInt(s[1].value, 10), c = parseInt(s[2].value, 10);
    var row = a * sigmas.length + b;
    frame.style.backgroundPosition = (-c * px) + "px " + (-row * py) + "px";
    frame.setAttribute("data-frame", String(row * ns.length + c));
    readout.textContent = "mu = " + mus[a].toFixed(2) + ", sigma = " + sigmas[b].toFixed(2) + ", n = " + ns[c];
  }
  for (var k = 0; k < s.length; k++) { s[k].addEventListener("input", update); }
  update();
})();
"""


def _static(case, mu_values, sigma_values, n_values, seed, param, size_in, dpi, title,
            init=None) -> StaticEstimatorExplorer:
    fig = agg_figure(size_in, dpi)
    rows = []
    for mu in mu_values:
        for sigma in sigma_values:
            row = []
            for n in n_values:
                _draw(fig, case, mu, sigma, n, seed, param)
                fig.canvas.draw()
                row.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())  # (H, W, 3)
            rows.append(np.concatenate(row, axis=1))
    sheet = np.concatenate(rows, axis=0)  # (rows * H, cols * W, 3)
    H, W = row[0].shape[:2]
    sprite = png_bytes(sheet)
    uid = element_id("t2i-estimators")
    init = init or (len(mu_values) // 2, len(sigma_values) // 2, len(n_values) // 2)
    r0, c0 = init[0] * len(sigma_values) + init[1], init[2]
    js = _JS % dict(id=json.dumps(uid), mus=json.dumps([float(v) for v in mu_values]),
                    sigmas=json.dumps([float(v) for v in sigma_values]), ns=json.dumps([int(v) for v in n_values]),
                    px=W, py=H)
    slider = ('<label style="display:inline-block;font-size:0.9em;margin:0.2em 1em 0.2em 0">{name} '
              '<input type="range" class="t2i-slider" data-axis="{axis}" min="0" max="{mx}" step="1" '
              'value="{v}" aria-label="{axis}" style="width:140px;vertical-align:middle"></label>')
    title_html = f'<div style="font-weight:bold;margin-bottom:0.3em">{_html.escape(title)}</div>' if title else ""
    b64 = base64.b64encode(sprite).decode("ascii")
    html = f"""<div id="{uid}" class="t2i-widget-fallback" style="font-family:sans-serif;margin:0.5em 0">
{title_html}<div class="t2i-frame" role="img" aria-label="histograms of the two estimators' per-sample gradient estimates" data-frame="{r0 * len(n_values) + c0}" style="width:{W}px;height:{H}px;max-width:none;background-image:url(data:image/png;base64,{b64});background-size:{len(n_values) * W}px {len(mu_values) * len(sigma_values) * H}px;background-position:{-c0 * W}px {-r0 * H}px;background-repeat:no-repeat;border:1px solid #999"></div>
<div>{slider.format(name="&mu;", axis="mu", mx=len(mu_values) - 1, v=init[0])}{slider.format(name="&sigma;", axis="sigma", mx=len(sigma_values) - 1, v=init[1])}{slider.format(name="samples", axis="n", mx=len(n_values) - 1, v=init[2])}</div>
<div class="t2i-coords" style="font-size:0.9em">mu = {mu_values[init[0]]:.2f}, sigma = {sigma_values[init[1]]:.2f}, n = {n_values[init[2]]}</div>
<div style="font-size:0.8em;color:#666">Static version: {len(mu_values) * len(sigma_values) * len(n_values)} frames drawn when the page was built. Run the notebook for the live widget.</div>
<script>{js}</script>
</div>"""
    return StaticEstimatorExplorer(html=html, mu_values=tuple(mu_values), sigma_values=tuple(sigma_values),
                                   n_values=tuple(n_values), sprite_png=sprite, frame_shape=(H, W, 3),
                                   element_id=uid)


class LiveEstimatorExplorer:
    """The ipywidgets explorer. ``sliders`` = (mu, sigma, n); ``image`` shows the current frame."""

    def __init__(self, case, mu_values, sigma_values, n_values, seed, param, size_in, dpi, title, init=None):
        import ipywidgets as W

        self._case, self._seed, self._param = case, seed, param
        self._fig = agg_figure(size_in, dpi)
        init = init or (len(mu_values) // 2, len(sigma_values) // 2, len(n_values) // 2)
        lay = W.Layout(width="320px")
        mlo, mhi = min(mu_values), max(mu_values)
        slo, shi = min(sigma_values), max(sigma_values)
        self.sliders = (
            W.FloatSlider(value=mu_values[init[0]], min=mlo, max=mhi, step=(mhi - mlo) / 100 or 0.01,
                          description="mu", readout_format=".2f", continuous_update=False, layout=lay),
            W.FloatSlider(value=sigma_values[init[1]], min=slo, max=shi,
                          step=(shi - slo) / 100 or 0.01, description="sigma", readout_format=".2f",
                          continuous_update=False, layout=lay),
            W.SelectionSlider(options=[int(v) for v in n_values], value=int(n_values[init[2]]),
                              description="samples", continuous_update=False, layout=lay),
        )
        self.image = W.Image(format="png")
        header = [W.HTML(f"<b>{_html.escape(title)}</b>")] if title else []
        self.widget = W.VBox(header + [self.image, *self.sliders])
        for s in self.sliders:
            s.observe(self._update, names="value")
        self._update()

    def _update(self, change=None):
        mu, sigma, n = self.sliders[0].value, self.sliders[1].value, self.sliders[2].value
        _draw(self._fig, self._case, mu, sigma, n, self._seed, self._param)
        self.image.value = figure_png(self._fig)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def estimator_explorer(case="sin", *, mu_values=DEFAULT_MU, sigma_values=DEFAULT_SIGMA, n_values=DEFAULT_N,
                       param: str = "mu", seed: int = 0, mode: str = "auto", size_in=(8.0, 2.8), dpi: int = 90,
                       title: str | None = None, start: dict | None = None):
    """Histograms of the pathwise and score-function per-sample estimates of d/dmu (or d/dsigma, with
    ``param="sigma"``) of E[f(z)], z ~ N(mu, sigma^2), with the exact gradient and each estimator's mean
    marked. ``case`` is a name in :data:`t2i_lib.experiments.estimators.CASES` or a ``GradCase``.

    The slider ranges are the given value lists (the live sliders move continuously between their
    ends; the static one steps through exactly these values). ``start`` = ``{"mu": .., "sigma": .., "n": ..}``
    picks the first frame (each value one of its list; a missing key: the middle of the list). Returns a
    :class:`LiveEstimatorExplorer` or a :class:`StaticEstimatorExplorer` (see
    :func:`t2i_lib.viz.widgets.base.widget_mode`).

    Defined in Chapter 3.
    """
    get_case(case)  # fail early on an unknown name
    if param not in PARAMS:
        raise ValueError(f"param must be one of {PARAMS}, got {param!r}")
    mu_values, sigma_values = tuple(float(v) for v in mu_values), tuple(float(v) for v in sigma_values)
    n_values = tuple(int(v) for v in n_values)
    if not (mu_values and sigma_values and n_values):
        raise ValueError("mu_values, sigma_values and n_values each need at least one value")
    if min(sigma_values) <= 0:
        raise ValueError(f"sigma_values must all be > 0, got {sigma_values}")
    if min(n_values) < 2:
        raise ValueError(f"n_values must all be >= 2 (a histogram of one sample has no spread), got {n_values}")
    init = _start_indices(start, {"mu": mu_values, "sigma": sigma_values, "n": n_values})
    if widget_mode(mode) == "live":
        return LiveEstimatorExplorer(case, mu_values, sigma_values, n_values, seed, param, size_in, dpi, title, init)
    return _static(case, mu_values, sigma_values, n_values, seed, param, size_in, dpi, title, init)


def _start_indices(start: dict | None, values: dict) -> tuple[int, int, int]:
    """The index of the first frame's value on each slider (mu, sigma, n)."""
    start = dict(start or {})
    unknown = set(start) - set(values)
    if unknown:
        raise ValueError(f"start takes the keys {sorted(values)}, not {sorted(unknown)}")
    idx = []
    for key, options in values.items():
        if key not in start:
            idx.append(len(options) // 2)
            continue
        matches = [i for i, v in enumerate(options) if abs(float(v) - float(start[key])) < 1e-12]
        if not matches:
            raise ValueError(f"start[{key!r}] = {start[key]} is not one of the {key} values {list(options)}")
        idx.append(matches[0])
    return tuple(idx)
