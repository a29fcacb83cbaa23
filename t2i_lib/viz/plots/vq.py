"""Chapter 4's figures: nearest-code quantisation in 2-D, codebook usage over training, FID against the
number of images, and grids of decoded prior samples with the scorer's verdicts.

Like :mod:`t2i_lib.viz.plots`, every figure function returns a matplotlib ``Figure`` already closed in pyplot.
The FID-against-N experiment itself (:func:`t2i_lib.experiments.fid_vs_n.fid_vs_sample_size`) lives with the other
metrics; :func:`plot_fid_vs_n` draws it.

Defined in Chapter 4.
"""

from __future__ import annotations

import numpy as np
import torch

from t2i_lib.experiments.fid_vs_n import FIDCurve
from t2i_lib.experiments.fid_vs_n import fid_vs_sample_size
from t2i_lib.metrics.fid import random_feature_fn
from t2i_lib.viz.plots.base import finish_figure, new_figure, imshow, to_numpy_images

__all__ = ["plot_quantization_2d", "plot_codebook_curves", "random_feature_fn", "FIDCurve",
           "fid_vs_sample_size", "plot_fid_vs_n", "show_scored_samples"]


# ---------------------------------------------------------------------------------------------------
# Nearest-code quantisation, drawn in two dimensions
# ---------------------------------------------------------------------------------------------------

def plot_quantization_2d(points, codebook, ax=None, title: str | None = None):
    """Encoder outputs (N, 2) and codes (K, 2): every point joined to its nearest code, codes that no
    point chose drawn hollow (these are the dead codes that get no gradient).

    Defined in Chapter 4.
    """
    z = torch.as_tensor(points, dtype=torch.float64)
    e = torch.as_tensor(codebook, dtype=torch.float64)
    if z.dim() != 2 or z.shape[1] != 2 or e.dim() != 2 or e.shape[1] != 2:
        raise ValueError(f"plot_quantization_2d expects points (N, 2) and codebook (K, 2); received "
                         f"{tuple(z.shape)} and {tuple(e.shape)}")
    assign = torch.cdist(z, e).argmin(1).numpy()  # (N,)
    z, e = z.numpy(), e.numpy()
    used = np.bincount(assign, minlength=len(e)) > 0
    fig = None
    if ax is None:
        fig = new_figure((4.2, 4.0))
        ax = fig.add_subplot(1, 1, 1)
    for i in range(len(z)):
        ax.plot([z[i, 0], e[assign[i], 0]], [z[i, 1], e[assign[i], 1]], color="0.75", lw=0.6, zorder=1)
    ax.scatter(z[:, 0], z[:, 1], s=8, color="tab:blue", zorder=2, label="encoder outputs $z_e$")
    ax.scatter(e[used, 0], e[used, 1], s=70, marker="*", color="tab:red", zorder=3, label="codes in use")
    if (~used).any():
        ax.scatter(e[~used, 0], e[~used, 1], s=70, marker="*", facecolors="none", edgecolors="tab:red",
                   zorder=3, label="dead codes")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=7, loc="best")
    if title:
        ax.set_title(title, fontsize=9)
    return finish_figure(fig) if fig is not None else ax.figure


# ---------------------------------------------------------------------------------------------------
# Codebook usage and perplexity over training
# ---------------------------------------------------------------------------------------------------

def plot_codebook_curves(histories: dict, num_codes: int, keys=("usage", "perplexity", "mse"), logy_mse=True):
    """One panel per logged metric (``usage``: fraction of codes chosen in a training batch;
    ``perplexity``: exp of the entropy of the batch's code histogram; ``mse``), one line per run.

    ``histories``: run label -> :class:`t2i_lib.train.history.History` of a VQ-VAE (its ``loss`` logs these).

    Defined in Chapter 4.
    """
    if not histories:
        raise ValueError("plot_codebook_curves needs at least one History")
    for label, h in histories.items():
        missing = [k for k in keys if k not in h.keys()]
        if missing:
            raise ValueError(f"run {label!r} logged no {missing}; it logged {h.keys()}")
    fig = new_figure((3.6 * len(keys), 3.0))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for label, h in histories.items():
        for ax, k in zip(axes, keys):
            steps, vals = h.series(k)
            ax.plot(steps, vals, label=label)
    for ax, k in zip(axes, keys):
        ax.set_xlabel("update")
        if k == "usage":
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("fraction of codes used in a batch")
        elif k == "perplexity":
            ax.axhline(num_codes, color="0.5", ls=":", lw=1)
            ax.set_ylabel(f"perplexity (at most K = {num_codes})")
        elif k == "mse" and logy_mse:
            ax.set_yscale("log")
            ax.set_ylabel("reconstruction MSE")
        else:
            ax.set_ylabel(k)
        ax.set_title(k, fontsize=9)
    # the perplexity panel's upper left is empty (perplexities stay well below K in practice)
    axes[1 if len(axes) > 1 else 0].legend(fontsize=8, loc="upper left")
    return finish_figure(fig)


# ---------------------------------------------------------------------------------------------------
# FID against the number of images
# ---------------------------------------------------------------------------------------------------

def plot_fid_vs_n(curve: FIDCurve, title: str | None = None):
    """Left: FID of two samples of one distribution against N (log-log), with the feature dimension
    marked. Right: the rank of the estimated covariance against N.

    Defined in Chapter 4.
    """
    fig = new_figure((9.0, 3.2))
    ax, ax2 = fig.subplots(1, 2)
    ns = np.array(curve.ns)
    ax.errorbar(ns, curve.mean, yerr=curve.std, marker="o", ms=4, capsize=2, label="same distribution, disjoint sets")
    if curve.reference is not None:
        ax.axhline(curve.reference, color="tab:red", ls="--", lw=1, label="real vs reconstructions, largest N")
    ax.axvline(curve.dim, color="0.5", ls=":", lw=1, label=f"N = D = {curve.dim}")
    ax.set(xscale="log", yscale="log", xlabel="images per set, N", ylabel="FID (true value: 0)")
    ax.legend(fontsize=7)
    ax2.plot(ns, curve.rank, marker="o", ms=4, label="rank of the N-sample covariance")
    ax2.plot(ns, np.minimum(ns - 1, curve.dim), color="0.5", ls=":", lw=1, label="min(N - 1, D)")
    ax2.set(xscale="log", xlabel="images per set, N", ylabel="rank")
    ax2.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return finish_figure(fig)


# ---------------------------------------------------------------------------------------------------
# Decoded prior samples with the scorer's verdicts
# ---------------------------------------------------------------------------------------------------

def show_scored_samples(images, valid, labels=None, ncols: int = 6, scale: float = 1.6, title: str | None = None,
                        fontsize: float = 8):
    """A grid of images framed green (the scorer accepts it) or red (it does not), each captioned with
    ``labels[i]`` (e.g. what the scorer read) when given.

    Defined in Chapter 4.
    """
    x = to_numpy_images(images)
    valid = [bool(v) for v in valid]
    if len(valid) != len(x) or (labels is not None and len(labels) != len(x)):
        raise ValueError(f"{len(x)} images but {len(valid)} verdicts"
                         + ("" if labels is None else f" and {len(labels)} labels"))
    rows = int(np.ceil(len(x) / ncols))
    label_h = 0.45 * fontsize / 5.5 if labels is not None else 0.05  # room for three lines of caption
    fig = new_figure((scale * ncols, (scale + label_h) * rows + (0.4 if title else 0)))
    axes = fig.subplots(rows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(x):
            ax.axis("off")
            continue
        imshow(ax, x[i])
        colour = "tab:green" if valid[i] else "tab:red"
        for s in ax.spines.values():
            s.set_color(colour)
            s.set_linewidth(3)
        if labels is not None:
            ax.set_title(_wrap(labels[i]), fontsize=fontsize, pad=2, color="black" if valid[i] else "tab:red")
    if title:
        fig.suptitle(title, fontsize=10)
    return finish_figure(fig)


def _wrap(text: str, width: int = 24) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    return "\n".join(lines[:3])
