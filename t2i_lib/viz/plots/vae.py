"""Chapter 2's figures: the ELBO against the exact evidence, and KL per latent dimension (collapse).

Like :mod:`t2i_lib.viz.plots`, every function returns a matplotlib ``Figure`` already closed in pyplot.

Defined in Chapter 2.
"""

from __future__ import annotations

import numpy as np
import torch

from t2i_lib.models.ppca import PPCA, gaussian_kl
from t2i_lib.viz.plots.base import finish_figure, new_figure


def plot_bound_slices(model: PPCA, x, shifts=None, scales=None):
    """Two slices through the family of Gaussians q(z): the evidence log p(x) (flat), the ELBO(q), and
    their gap, which is KL(q || p(z | x)).

    Left: q = N(m* + t v, S*), moving the mean a distance t along a unit direction v away from the true
    posterior mean m*. Right: q = N(m*, c S*), scaling the posterior covariance by c (log axis).

    Defined in Chapter 2.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    shifts = np.linspace(-2, 2, 81) if shifts is None else np.asarray(shifts)
    scales = np.logspace(-1.5, 1.5, 81) if scales is None else np.asarray(scales)
    pm, pS = model.posterior(x)
    log_px = float(model.log_marginal(x))
    v = torch.ones(model.k, dtype=torch.float64) / model.k ** 0.5
    ms = pm + torch.as_tensor(shifts)[:, None] * v  # (T, k)
    Ss = torch.as_tensor(scales)[:, None, None] * pS  # (C, k, k)
    panels = [
        (shifts, model.elbo(x, ms, pS.expand(len(ms), -1, -1)), gaussian_kl(ms, pS, pm, pS),
         "shift t of the mean of q along v", False),
        (scales, model.elbo(x, pm.expand(len(Ss), -1), Ss), gaussian_kl(pm, Ss, pm, pS),
         "scale c of the covariance of q", True),
    ]
    fig = new_figure((10, 3.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (t, elbo, kl, label, logx) in zip(axes, panels):
        elbo, kl = elbo.numpy(), kl.numpy()
        ax.axhline(log_px, color="k", lw=1.5, label="log p(x) (exact)")
        ax.plot(t, elbo, color="C0", lw=2, label="ELBO(q)")
        ax.plot(t, log_px - kl, "--", color="C1", lw=1.2, label="log p(x) - KL(q || p(z|x))")
        ax.fill_between(t, elbo, log_px, color="C0", alpha=0.12)
        ax.axvline(1.0 if logx else 0.0, color="grey", lw=0.8, ls=":")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("nats")
    lo = min(float(p[1].min()) for p in panels)
    axes[0].set_ylim(max(lo, log_px - 6), log_px + 0.6)
    axes[0].legend(loc="lower left", fontsize=7.5)
    fig.suptitle("the ELBO touches log p(x) only at the true posterior (dotted line)", fontsize=11)
    return finish_figure(fig)


def plot_kl_per_dim(runs: dict, free_bits: float | None = None, ncols: int | None = None, logy: bool = True,
                    floor: float = 1e-4):
    """One panel per run: the KL of each latent dimension (nats, averaged over the data), sorted from
    largest to smallest, active units in colour and inactive ones in grey; the title gives the count.

    ``runs``: ``{name: LatentStats}`` or ``{name: (LatentStats, note)}``, where ``note`` (e.g. the test
    ELBO) is added to the title. ``free_bits``: draw the allowance as a dashed line. ``logy``: a log
    axis (values below ``floor`` are drawn at the floor), so that nearly-collapsed dimensions stay visible.

    Defined in Chapter 2.
    """
    names = list(runs)
    ncols = ncols or len(names)
    nrows = -(-len(names) // ncols)
    fig = new_figure((3.0 * ncols, 2.7 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        entry = runs[name]
        stats, note = entry if isinstance(entry, tuple) else (entry, None)
        kl = stats.kl_per_dim.numpy()
        if logy:
            kl = np.maximum(kl, floor)
        order = np.argsort(-kl)
        active = stats.active.numpy()[order]
        colors = np.where(active, "C0", "lightgrey")
        ax.bar(np.arange(len(kl)), kl[order], color=colors, width=0.85)
        if free_bits:
            ax.axhline(free_bits, color="C3", ls="--", lw=1)
        title = f"{name}\n{stats.n_active} of {len(kl)} units active"
        if note:
            title += f"\n{note}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("latent dimension (sorted)", fontsize=8)
        ax.set_xticks([])
        ax.grid(alpha=0.3, axis="y")
        if logy:
            ax.set_yscale("log")
            ax.set_ylim(bottom=floor)
    for ax in axes[len(names):]:
        ax.axis("off")
    axes[0].set_ylabel("KL(q(z_i|x) || N(0,1)), nats")
    return finish_figure(fig)
