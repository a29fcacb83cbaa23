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


def _figure(figsize):
    # Made through pyplot, so that the notebook's inline backend is loaded and knows how to draw a
    # Figure that a cell returns; see _done for why it is closed again before it is returned.
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def _done(fig):
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
    return _tile(to_numpy_images(images, image_shape), nrow, pad, pad_value)


def _tile(x: np.ndarray, nrow: int | None, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    n, h, w, c = x.shape  # (N, H, W, C)
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    ncol_rows = int(math.ceil(n / nrow))
    grid = np.full((ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad, c), pad_value, dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, nrow)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        grid[y0:y0 + h, x0:x0 + w] = x[i]
    return grid


def _imshow(ax, img: np.ndarray):
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
        fig = _figure((scale * nrow, scale * rows + (0.4 if title else 0)))
        ax = fig.add_subplot(1, 1, 1)
        _imshow(ax, _tile(x, nrow))
        for s in ax.spines.values():
            s.set_visible(False)
    else:
        fig = _figure((scale * nrow, (scale + 0.25) * rows + (0.4 if title else 0)))
        axes = fig.subplots(rows, nrow, squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i < n:
                _imshow(ax, x[i])
                ax.set_title(str(labels[i]), fontsize=8, pad=2)
            else:
                ax.axis("off")
    if title:
        fig.suptitle(title)
    return _done(fig)


def show_reconstructions(originals, reconstructions, n: int | None = None, title: str | None = None,
                         scale: float = 0.9, image_shape=None):
    """Two rows: originals on top, their reconstructions below (the first ``n``, default all).

    Defined in Chapter 1.
    """
    a = to_numpy_images(originals, image_shape)[:n]
    b = to_numpy_images(reconstructions, image_shape)[:n]
    if a.shape != b.shape:
        raise ValueError(f"originals {a.shape} and reconstructions {b.shape} differ in shape")
    fig = _figure((scale * len(a) + 1.2, 2 * scale + (0.4 if title else 0.1)))
    axes = fig.subplots(2, len(a), squeeze=False)
    for i in range(len(a)):
        _imshow(axes[0, i], a[i])
        _imshow(axes[1, i], b[i])
    axes[0, 0].set_ylabel("input", fontsize=9)
    axes[1, 0].set_ylabel("output", fontsize=9)
    if title:
        fig.suptitle(title)
    return _done(fig)


def _to_2d(latents) -> tuple[np.ndarray, tuple[str, str]]:
    z = latents.detach().float().cpu().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents, float)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"expected latents of shape (N, d) with d >= 2, got shape {z.shape}")
    if z.shape[1] == 2:
        return z, ("$z_1$", "$z_2$")
    # More than two dimensions: show the plane of the two largest principal components.
    zc = z - z.mean(0)
    _, _, vt = np.linalg.svd(zc, full_matrices=False)
    return zc @ vt[:2].T, ("PC 1 of z", "PC 2 of z")


def plot_latent_scatter(latents, labels=None, ax=None, title: str | None = None, s: float = 6,
                        legend: bool = True):
    """Scatter of latent codes coloured by label (10 classes: the 'tab10' colours).

    A 2-D latent is drawn as is; a wider one is projected on its two largest principal components
    (the axis labels say so). Returns the figure.

    Defined in Chapter 1.
    """
    z, (xl, yl) = _to_2d(latents)
    own = ax is None
    if own:
        fig = _figure((5.2, 4.6))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=s, alpha=0.7, linewidths=0)
    else:
        y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        classes = np.unique(y)
        import matplotlib

        cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
        for i, c in enumerate(classes):
            m = y == c
            ax.scatter(z[m, 0], z[m, 1], s=s, alpha=0.75, linewidths=0, color=cmap(i % cmap.N), label=str(c))
        if legend:
            ax.legend(markerscale=2.5, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    if title:
        ax.set_title(title)
    return _done(fig) if own else fig


def latent_range(latents, quantile: float = 0.01) -> tuple[tuple[float, float], tuple[float, float]]:
    """Per-axis (low, high) of 2-D latents between the ``quantile`` and ``1 - quantile`` quantiles
    (a few outliers would otherwise stretch a grid over empty space).

    Defined in Chapter 1.
    """
    z = latents.detach().float().cpu().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents, float)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"expected 2-D latents of shape (N, 2), got shape {z.shape}")
    lo = np.quantile(z, quantile, axis=0)
    hi = np.quantile(z, 1 - quantile, axis=0)
    hi = np.where(hi > lo, hi, lo + 1e-3)  # a degenerate axis still gets a (tiny) range
    return (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))


@torch.no_grad()
def decode_numpy(decode_fn, z, device=None) -> np.ndarray:
    """Call ``decode_fn`` on latents ``z`` (N, d) and return images as float (N, H, W, C) in [0, 1].

    ``decode_fn`` takes a float32 tensor; it is put on ``device`` if given, else on the device of the
    model when ``decode_fn`` is a bound method of an ``nn.Module`` (``model.decode``), else the CPU.
    The model is switched to eval mode for the call and restored after.

    Defined in Chapter 1.
    """
    owner = getattr(decode_fn, "__self__", None)
    if device is None and isinstance(owner, torch.nn.Module):
        p = next(owner.parameters(), None)
        device = p.device if p is not None else None
    zt = torch.as_tensor(np.asarray(z, dtype=np.float32) if not isinstance(z, torch.Tensor) else z,
                         dtype=torch.float32)
    if device is not None:
        zt = zt.to(device)
    was_training = owner.training if isinstance(owner, torch.nn.Module) else None
    if was_training:
        owner.eval()
    try:
        out = decode_fn(zt)
    finally:
        if was_training:
            owner.train(True)
    return to_numpy_images(out)


def latent_grid_points(x_range, y_range, n: int = 15) -> np.ndarray:
    """Grid points (n*n, 2), row-major with z_2 as the row and z_1 as the column: point k is
    (xs[k % n], ys[k // n]) with xs, ys = linspace over the two ranges.

    Defined in Chapter 1.
    """
    xs = np.linspace(x_range[0], x_range[1], n)
    ys = np.linspace(y_range[0], y_range[1], n)
    gx, gy = np.meshgrid(xs, ys)  # (n, n) each; row = y index
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def plot_latent_manifold(decode_fn, latents=None, x_range=None, y_range=None, n: int = 15,
                         quantile: float = 0.01, title: str | None = None, scale: float = 0.45, device=None):
    """Decode an n x n grid of points of a 2-D latent space and tile the images where they decode.

    The range comes from ``latents`` (the codes of real data, via :func:`latent_range`) unless given.
    z_2 grows upwards, as in a scatter plot, so the two figures can be laid side by side.

    Defined in Chapter 1.
    """
    if x_range is None or y_range is None:
        if latents is None:
            raise ValueError("pass the latents of the data (N, 2) or both x_range and y_range")
        x_range, y_range = latent_range(latents, quantile)
    pts = latent_grid_points(x_range, y_range, n)
    imgs = decode_numpy(decode_fn, pts, device)  # (n*n, H, W, C), row k // n has y index k // n
    imgs = imgs.reshape(n, n, *imgs.shape[1:])[::-1].reshape(n * n, *imgs.shape[1:])  # top row = largest z_2
    grid = _tile(imgs, n, pad=0)
    fig = _figure((scale * n + 0.8, scale * n + 0.7))
    ax = fig.add_subplot(1, 1, 1)
    extent = (x_range[0], x_range[1], y_range[0], y_range[1])
    if grid.shape[-1] == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=1, extent=extent, aspect="auto")
    else:
        ax.imshow(grid, extent=extent, aspect="auto")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title)
    return _done(fig)


def interpolate_latents(z_a, z_b, steps: int = 10) -> torch.Tensor:
    """Points on the straight line from ``z_a`` to ``z_b`` (both (d,)), endpoints included: (steps, d).

    Defined in Chapter 1.
    """
    z_a = torch.as_tensor(z_a, dtype=torch.float32).flatten()
    z_b = torch.as_tensor(z_b, dtype=torch.float32).flatten()
    if z_a.shape != z_b.shape:
        raise ValueError(f"the two latents differ in shape: {tuple(z_a.shape)} vs {tuple(z_b.shape)}")
    t = torch.linspace(0, 1, steps)[:, None]  # (steps, 1)
    return (1 - t) * z_a + t * z_b  # (steps, d)


def show_interpolation(decode_fn, z_a, z_b, steps: int = 10, title: str | None = None, scale: float = 0.9,
                       device=None, endpoints=None):
    """A strip of images decoded along the line from ``z_a`` to ``z_b``.

    ``endpoints`` (two images) adds the original inputs at both ends, framed, for comparison.

    Defined in Chapter 1.
    """
    imgs = decode_numpy(decode_fn, interpolate_latents(z_a, z_b, steps), device)  # (steps, H, W, C)
    cols = steps + (2 if endpoints is not None else 0)
    fig = _figure((scale * cols, scale + (0.55 if title else 0.35)))
    axes = fig.subplots(1, cols, squeeze=False)[0]
    offset = 0
    if endpoints is not None:
        ends = to_numpy_images(endpoints)
        for ax, img, name in ((axes[0], ends[0], "A"), (axes[-1], ends[1], "B")):
            _imshow(ax, img)
            ax.set_xlabel(f"input {name}", fontsize=7)
            for s in ax.spines.values():
                s.set_edgecolor("tab:red")
                s.set_linewidth(1.5)
        offset = 1
    ts = np.linspace(0, 1, steps)
    for i in range(steps):
        ax = axes[offset + i]
        _imshow(ax, imgs[i])
        ax.set_xlabel(f"t={ts[i]:.2f}", fontsize=7)
    if title:
        fig.suptitle(title)
    return _done(fig)
