"""Figures the chapters share: image grids, reconstructions, latent scatters, decoded latent grids and
interpolation strips.

Every function returns a matplotlib ``Figure``, already closed in pyplot: a notebook shows it once, as
the cell's value (assign it and it is not shown), and a script can ``fig.savefig(...)``. Images may be torch tensors or NumPy arrays, in
[0, 1], shaped (N, C, H, W), (N, H, W) or flat (N, H*W) when ``image_shape`` is given.

Defined in Chapter 1 (used by every chapter after it).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def new_figure(figsize):
    # Made through pyplot, so that the notebook's inline backend is loaded and knows how to draw a
    # Figure that a cell returns; see finish_figure for why it is closed again before it is returned.
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def finish_figure(fig):
    """Lay out, then detach from pyplot: a figure still open at the end of a cell is drawn by the
    inline backend AND again as the cell's value. A closed one is drawn once, as the value."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    plt.close(fig)
    return fig


def to_numpy_images(images, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Any batch of images -> float array (N, H, W, C) clipped to [0, 1].

    Accepts (N, C, H, W) (torch layout), (N, H, W), a single (H, W) image, or flat (N, D) rows
    together with ``image_shape`` = (H, W) or (C, H, W).

    Defined in Chapter 1.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    x = np.asarray(images, dtype=np.float32)
    if image_shape is not None:
        x = x.reshape((-1, *image_shape))
    if x.ndim == 2:  # one (H, W) image
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W); a single (C, H, W) image needs img[None]
    if x.ndim != 4:
        raise ValueError(f"expected images shaped (N, C, H, W), (N, H, W) or (N, D) with image_shape; "
                         f"got shape {np.shape(images)}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels in (N, C, H, W), got shape {x.shape}; "
                         "flat rows need image_shape=(H, W)")
    return np.clip(x.transpose(0, 2, 3, 1), 0.0, 1.0)


def image_grid(images, nrow: int | None = None, pad: int = 1, pad_value: float = 1.0,
               image_shape=None) -> np.ndarray:
    """Tile images into one array (rows*H + pads, cols*W + pads, C); ``nrow`` images per row."""
    return tile_images(to_numpy_images(images, image_shape), nrow, pad, pad_value)


def tile_images(x: np.ndarray, nrow: int | None, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    n, h, w, c = x.shape  # (N, H, W, C)
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    ncol_rows = int(math.ceil(n / nrow))
    grid = np.full((ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad, c), pad_value, dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, nrow)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        grid[y0:y0 + h, x0:x0 + w] = x[i]
    return grid


def imshow(ax, img: np.ndarray):
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(img, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def show_images(images, nrow: int | None = None, title: str | None = None, labels=None,
                scale: float = 0.8, image_shape=None):
    """A grid of images, ``nrow`` per row, with optional per-image ``labels`` drawn above each.

    Defined in Chapter 1.
    """
    x = to_numpy_images(images, image_shape)
    n = len(x)
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / nrow))
    if labels is None:
        fig = new_figure((scale * nrow, scale * rows + (0.4 if title else 0)))
        ax = fig.add_subplot(1, 1, 1)
        imshow(ax, tile_images(x, nrow))
        for s in ax.spines.values():
            s.set_visible(False)
    else:
        fig = new_figure((scale * nrow, (scale + 0.25) * rows + (0.4 if title else 0)))
        axes = fig.subplots(rows, nrow, squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i < n:
                imshow(ax, x[i])
                ax.set_title(str(labels[i]), fontsize=8, pad=2)
            else:
                ax.axis("off")
    if title:
        fig.suptitle(title)
    return finish_figure(fig)


def show_reconstructions(originals, reconstructions, n: int | None = None, title: str | None = None,
                         scale: float = 0.9, image_shape=None):
    """Two rows: originals on top, their reconstructions below (the first ``n``, default all).

    Defined in Chapter 1.
    """
    a = to_numpy_images(originals, image_shape)[:n]
    b = to_numpy_images(reconstructions, image_shape)[:n]
    if a.shape != b.shape:
        raise ValueError(f"originals {a.shape} and reconstructions {b.shape} differ in shape")
    fig = new_figure((scale * len(a) + 1.2, 2 * scale + (0.4 if title else 0.1)))
    axes = fig.subplots(2, len(a), squeeze=False)
    for i in range(len(a)):
        imshow(axes[0, i], a[i])
        imshow(axes[1, i], b[i])
    axes[0, 0].set_ylabel("input", fontsize=9)
    axes[1, 0].set_ylabel("output", fontsize=9)
    if title:
        fig.suptitle(title)
    return finish_figure(fig)
