"""Chapter 4's figures and the FID-against-N experiment behind one of them."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from t2i_lib.experiments.fid_vs_n import FIDCurve
from t2i_lib.train.trainer import History
from t2i_lib.viz.plots.vq import (plot_codebook_curves, plot_fid_vs_n, plot_quantization_2d,
                                  show_scored_samples)

matplotlib.use("Agg")
pytestmark = pytest.mark.usefixtures("one_thread")


def _history(usage, perplexity, mse):
    h = History()
    for i, (u, p, m) in enumerate(zip(usage, perplexity, mse)):
        h.log(10 * (i + 1), "train", loss=m, lr=1e-3, usage=u, perplexity=p, mse=m)
    return h


def test_codebook_curves_one_panel_per_metric_one_line_per_run():
    runs = {"plain": _history([0.3, 0.35], [10, 12], [0.02, 0.01]),
            "fixed": _history([0.9, 1.0], [40, 50], [0.02, 0.01])}
    fig = plot_codebook_curves(runs, num_codes=64)
    assert len(fig.axes) == 3
    usage_ax = fig.axes[0]
    assert [l.get_label() for l in usage_ax.get_lines()] == ["plain", "fixed"]
    np.testing.assert_allclose(usage_ax.get_lines()[1].get_ydata(), [0.9, 1.0])
    with pytest.raises(ValueError, match="logged no"):
        plot_codebook_curves({"x": _history([1], [1], [1])}, num_codes=4, keys=("usage", "dead_codes"))


def test_quantization_2d_marks_dead_codes():
    pts = torch.tensor([[0.0, 0.0], [0.1, 0.0], [2.0, 2.0]])
    book = torch.tensor([[0.0, 0.1], [2.0, 1.9], [9.0, 9.0]])  # the third code is nobody's nearest
    fig = plot_quantization_2d(pts, book, title="t")
    ax = fig.axes[0]
    labels = [c.get_label() for c in ax.collections]
    assert labels == ["encoder outputs $z_e$", "codes in use", "dead codes"]
    assert len(ax.collections[1].get_offsets()) == 2 and len(ax.collections[2].get_offsets()) == 1
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot_quantization_2d(torch.zeros(3, 3), book)


def test_scored_samples_frame_colours_follow_the_verdicts():
    imgs = torch.rand(5, 3, 32, 32)
    fig = show_scored_samples(imgs, [True, False, True, True, False], labels=list("abcde"), ncols=3)
    axes = fig.axes
    green, red = matplotlib.colors.to_rgba("tab:green"), matplotlib.colors.to_rgba("tab:red")
    assert [axes[i].spines["left"].get_edgecolor() for i in range(5)] == [green, red, green, green, red]
    assert not axes[5].axison  # the empty sixth cell
    with pytest.raises(ValueError, match="5 images but 4 verdicts"):
        show_scored_samples(imgs, [True] * 4)


def test_fid_curve_rows_format():
    c = FIDCurve([10, 100], np.array([5.0, 0.5]), np.array([1.0, 0.1]), np.array([9, 32]), 32)
    assert c.rows()[1] == "N =    100: FID        0.5 +- 0.1        covariance rank   32 of 32"
    fig = plot_fid_vs_n(c, title="t")
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
