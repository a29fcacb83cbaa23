"""Chapter 5's figures: the dVAE's annealing curves, token statistics, and token maps.

Like :mod:`t2i_lib.viz.plots`, every function returns a matplotlib ``Figure`` already closed in pyplot.

Defined in Chapter 5.
"""

from __future__ import annotations

import numpy as np
import torch

from t2i_lib.experiments.token_stats import TokenStatistics
from t2i_lib.viz.plots.base import finish_figure, new_figure, to_numpy_images


def plot_dvae_training(history, vq_history=None):
    """Three panels over training steps: the temperature tau and KL weight beta, the reconstruction MSE
    (log scale), and the perplexity of the argmax codes per batch. ``vq_history``: a VQ-VAE run on the same
    data, drawn alongside in the last two panels.

    Defined in Chapter 5.
    """
    fig = new_figure((13, 3.6))
    axes = fig.subplots(1, 3)
    s, tau = history.series("tau")
    _, beta = history.series("beta")
    ax = axes[0]
    ax.plot(s, tau, color="C0", label="temperature tau")
    ax.set_yscale("log")
    ax.set_ylabel("tau (log scale)", color="C0")
    ax.set_xlabel("step")
    ax2 = ax.twinx()
    ax2.plot(s, beta, color="C3", label="KL weight beta")
    ax2.set_ylabel("beta", color="C3")
    ax.set_title("schedules")
    for ax, key, title, logy in ((axes[1], "mse", "reconstruction MSE (training batches)", True),
                                 (axes[2], "perplexity", "code perplexity per batch", False)):
        ax.plot(*history.series(key), label="dVAE")
        if vq_history is not None:
            ax.plot(*vq_history.series(key), label="VQ-VAE")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.legend()
    return finish_figure(fig)


def plot_token_statistics(stats: TokenStatistics | dict[str, TokenStatistics], title: str | None = None):
    """Left: code frequencies sorted from most to least used (log scale), with the uniform level 1/K.
    Right: P(a token equals its right / lower neighbour) against the chance level sum_k p_k^2, and the
    neighbours' mutual information in bits. ``stats`` may be a dict {name: statistics} to compare tokenizers.

    Defined in Chapter 5.
    """
    named = stats if isinstance(stats, dict) else {"tokens": stats}
    fig = new_figure((12, 3.8))
    ax_h, ax_n = fig.subplots(1, 2)
    for i, (name, st) in enumerate(named.items()):
        p = np.sort(st.counts)[::-1] / max(st.counts.sum(), 1)
        rank = np.arange(1, len(p) + 1)
        ax_h.step(rank, np.where(p > 0, p, np.nan), where="mid", color=f"C{i}",
                  label=f"{name}: {st.usage:.0%} used, perplexity {st.perplexity:.1f}")
        ax_h.axhline(1 / st.num_codes, color=f"C{i}", ls=":", lw=1)
    ax_h.set_yscale("log")
    ax_h.set_xlabel("code rank (most used first)")
    ax_h.set_ylabel("frequency")
    ax_h.set_title("code usage, sorted (dotted: uniform 1/K)")
    ax_h.legend(fontsize=8)

    groups = ["right neighbour", "neighbour below"]
    width = 0.8 / len(named)
    for i, (name, st) in enumerate(named.items()):
        x = np.arange(2) + (i - (len(named) - 1) / 2) * width
        bars = ax_n.bar(x, [st.same_right, st.same_below], width, color=f"C{i}", label=f"{name}: P(equal)")
        ax_n.hlines(st.chance_same, x.min() - width / 2, x.max() + width / 2, colors="k", linestyles="--", lw=1)
        for b, mi in zip(bars, (st.mi_right_bits, st.mi_below_bits)):
            ax_n.annotate(f"MI {mi:.2f} bits", (b.get_x() + b.get_width() / 2, b.get_height()),
                          ha="center", va="bottom", fontsize=8)
    ax_n.set_xticks(np.arange(2), groups)
    ax_n.set_ylim(0, 1.1)
    ax_n.set_ylabel("probability")
    ax_n.set_title("neighbours (dashed: chance level sum p_k^2)")
    ax_n.legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    return finish_figure(fig)


def plot_token_maps(images, tokens, num_codes: int, n: int = 6, title: str | None = None):
    """Images (top row) and their token grids (bottom row). Code k is drawn in colour k mod 20, so with
    more than 20 codes two codes can share a colour; ``num_codes`` goes into the row label.

    Defined in Chapter 5.
    """
    imgs = to_numpy_images(images[:n])
    t = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    t = t[:n]
    n = len(imgs)
    fig = new_figure((1.6 * n, 3.4))
    axes = np.asarray(fig.subplots(2, n)).reshape(2, n)
    for j in range(n):
        axes[0, j].imshow(imgs[j], interpolation="nearest")
        axes[1, j].imshow(t[j] % 20, cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel(f"tokens (K={num_codes})")
    if title:
        fig.suptitle(title)
    return finish_figure(fig)
