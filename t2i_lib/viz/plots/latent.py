"""Latent spaces: scatter plots, the decoded manifold, interpolation.

Defined in Chapter 1."""

from __future__ import annotations

import numpy as np
import torch

from t2i_lib.viz.plots.base import finish_figure, imshow, new_figure, tile_images, to_numpy_images


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
        fig = new_figure((5.2, 4.6))
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
    return finish_figure(fig) if own else fig


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
                         quantile: float = 0.01, title: str | None = None, scale: float = 0.55, device=None,
                         gap: int = 2):
    """Decode an n x n grid of points of a 2-D latent space and tile the images where they decode.

    The range comes from ``latents`` (the codes of real data, via :func:`latent_range`) unless given.
    z_2 grows upwards, as in a scatter plot, so the two figures can be laid side by side. Tiles are
    separated by ``gap`` pixels of mid grey, so that neighbouring dark images do not merge into stripes.

    Defined in Chapter 1.
    """
    if x_range is None or y_range is None:
        if latents is None:
            raise ValueError("pass the latents of the data (N, 2) or both x_range and y_range")
        x_range, y_range = latent_range(latents, quantile)
    pts = latent_grid_points(x_range, y_range, n)
    imgs = decode_numpy(decode_fn, pts, device)  # (n*n, H, W, C), row k // n has y index k // n
    imgs = imgs.reshape(n, n, *imgs.shape[1:])[::-1].reshape(n * n, *imgs.shape[1:])  # top row = largest z_2
    if gap < 0:
        raise ValueError(f"gap must be a number of pixels >= 0, got {gap}")
    grid = tile_images(imgs, n, pad=gap, pad_value=0.5)
    fig = new_figure((scale * n + 0.8, scale * n + 0.7))
    ax = fig.add_subplot(1, 1, 1)
    extent = (x_range[0], x_range[1], y_range[0], y_range[1])
    if grid.shape[-1] == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=1, extent=extent, aspect="auto", interpolation="nearest")
    else:
        ax.imshow(grid, extent=extent, aspect="auto", interpolation="nearest")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title)
    return finish_figure(fig)


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
    fig = new_figure((scale * cols, scale + (0.55 if title else 0.35)))
    axes = fig.subplots(1, cols, squeeze=False)[0]
    offset = 0
    if endpoints is not None:
        ends = to_numpy_images(endpoints)
        for ax, img, name in ((axes[0], ends[0], "A"), (axes[-1], ends[1], "B")):
            imshow(ax, img)
            ax.set_xlabel(f"input {name}", fontsize=7)
            for s in ax.spines.values():
                s.set_edgecolor("tab:red")
                s.set_linewidth(1.5)
        offset = 1
    ts = np.linspace(0, 1, steps)
    for i in range(steps):
        ax = axes[offset + i]
        imshow(ax, imgs[i])
        ax.set_xlabel(f"t={ts[i]:.2f}", fontsize=7)
    if title:
        fig.suptitle(title)
    return finish_figure(fig)
