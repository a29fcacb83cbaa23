"""Chapter 3: the pathwise and score-function estimators, the score-function VAE, the estimator explorer."""

from __future__ import annotations

import base64
import io
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from t2i_lib.experiments import estimators as E
from t2i_lib.viz.widgets import base as widgets
from t2i_lib.models.vae_sf import (ScoreFunctionVAE, ScoreFunctionVAEConfig, encoder_gradient_samples,
                                   gaussian_log_prob)
from t2i_lib.viz.widgets.estimators import (LiveEstimatorExplorer, StaticEstimatorExplorer,
                                            estimator_explorer, render_frame)

SMOOTH = ["square", "sin", "exp"]
MU, SIGMA = 1.0, 0.3  # the setting the variance claim is asserted at (the chapter shows where it fails)


# ---------------------------------------------------------------------------------------------------
# Exact gradients and the estimators
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(E.CASES))
def test_closed_form_gradients_match_finite_differences(name):
    c = E.CASES[name]
    h = 1e-5
    for mu, s in [(0.3, 0.7), (-1.2, 1.5)]:
        gm = (c.expectation(mu + h, s) - c.expectation(mu - h, s)) / (2 * h)
        gs = (c.expectation(mu, s + h) - c.expectation(mu, s - h)) / (2 * h)
        np.testing.assert_allclose(c.exact(mu, s).numpy(), [gm, gs], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", SMOOTH)
def test_both_estimators_are_unbiased_for_smooth_functions(name):
    c = E.CASES[name]
    g = torch.Generator().manual_seed(1)
    n = 200_000
    rows = E.summarize({"pathwise": E.pathwise_grad(c.f, MU, SIGMA, n, g),
                        "sf": E.score_function_grad(c.f, MU, SIGMA, n, g),
                        "sf-loo": E.score_function_grad(c.f, MU, SIGMA, n, g, baseline="leave_one_out")},
                       c.exact(MU, SIGMA))
    for r in rows:
        assert r.covers, f"{name} {r.estimator} d/d{r.param}: exact {r.exact} outside [{r.lo}, {r.hi}]"
        assert r.se < 0.05 * max(1.0, abs(r.exact)), "the interval must be narrow enough to mean something"


def test_pathwise_per_sample_values_are_the_derivative():
    g = torch.Generator().manual_seed(0)
    est = E.pathwise_grad(lambda z: z ** 3, 0.5, 2.0, 1000, g)  # d/dmu = 3 z^2, d/dsigma = 3 z^2 eps
    z = 0.5 + 2.0 * torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = (z - 0.5) / 2.0
    torch.testing.assert_close(est, torch.stack([3 * z ** 2, 3 * z ** 2 * eps], 1))


@pytest.mark.parametrize("name", SMOOTH)
def test_pathwise_variance_is_at_least_ten_times_lower(name):
    c = E.CASES[name]
    g = torch.Generator().manual_seed(2)
    pw = E.pathwise_grad(c.f, MU, SIGMA, 100_000, g).var(0)
    sf = E.score_function_grad(c.f, MU, SIGMA, 100_000, g).var(0)
    ratio = sf / pw
    assert (ratio >= 10).all(), f"{name}: variance ratio score-function / pathwise = {ratio.tolist()}"


@pytest.mark.parametrize("name", SMOOTH)
def test_baseline_reduces_score_function_variance(name):
    c = E.CASES[name]
    g = torch.Generator().manual_seed(3)
    plain = E.score_function_grad(c.f, MU, SIGMA, 100_000, g).var(0)
    for b in ("leave_one_out", "mean"):
        with_b = E.score_function_grad(c.f, MU, SIGMA, 100_000, g, baseline=b).var(0)
        assert (with_b < 0.7 * plain).all(), f"{name} {b}: {with_b.tolist()} vs {plain.tolist()}"


def test_mean_baseline_has_the_predicted_small_bias():
    # With b = mean of all n values, the row mean equals (n - 1) / n times the leave-one-out row mean.
    c = E.CASES["exp"]
    n = 20
    a = E.score_function_grad(c.f, 0.2, 0.5, n, torch.Generator().manual_seed(5), baseline="mean").mean(0)
    b = E.score_function_grad(c.f, 0.2, 0.5, n, torch.Generator().manual_seed(5), baseline="leave_one_out").mean(0)
    torch.testing.assert_close(a, b * (n - 1) / n)


def test_pathwise_fails_on_the_step_function_and_the_score_function_does_not():
    c = E.CASES["step"]
    mu, sigma = 0.5, 1.0
    g = torch.Generator().manual_seed(4)
    pw = E.pathwise_grad(c.f, mu, sigma, 10_000, g)
    assert torch.count_nonzero(pw) == 0, "the step's derivative is 0 wherever it exists"
    exact = c.exact(mu, sigma)
    assert exact[0] == pytest.approx(math.exp(-0.125) / math.sqrt(2 * math.pi))  # N(0; 0.5, 1)
    rows = E.summarize({"pathwise": pw, "sf": E.score_function_grad(c.f, mu, sigma, 200_000, g,
                                                                    baseline="leave_one_out")}, exact)
    by = {(r.estimator, r.param): r for r in rows}
    assert not by["pathwise", "mu"].covers and by["pathwise", "mu"].se == 0
    assert by["sf", "mu"].covers and by["sf", "sigma"].covers


def test_summary_and_errors():
    rows = E.compare_estimators("square", 1.0, 0.5, 5000, seed=0)
    assert [(r.estimator, r.param) for r in rows][:2] == [("pathwise", "mu"), ("pathwise", "sigma")]
    r = rows[0]
    assert r.lo < r.mean < r.hi and r.hi - r.lo == pytest.approx(2 * E.Z99 * r.se)
    assert r.se == pytest.approx(math.sqrt(r.variance / r.n))
    ratios = E.variance_ratios(rows)
    assert ratios["score function", "mu"] > 1
    from t2i_lib.viz.tables import estimator_table

    assert "exact in 99%?" in str(estimator_table(rows))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        E.pathwise_grad(torch.sin, 0.0, 0.0, 10)
    with pytest.raises(ValueError, match="baseline must be one of"):
        E.score_function_grad(torch.sin, 0.0, 1.0, 10, baseline="median")
    with pytest.raises(ValueError, match="unknown test function 'cos'; known: square"):
        E.get_case("cos")
    with pytest.raises(ValueError, match=r"elementwise; got shape \(\)"):
        E.pathwise_grad(lambda z: z.sum(), 0.0, 1.0, 10)
    with pytest.raises(ValueError, match=r"shape \(n >= 2, 2\)"):
        E.summarize({"x": torch.zeros(5, 3)})


# ---------------------------------------------------------------------------------------------------
# The score-function VAE
# ---------------------------------------------------------------------------------------------------

def _tiny_vae(**kw):
    torch.manual_seed(0)
    return ScoreFunctionVAE(ScoreFunctionVAEConfig(image_size=8, widths=(4, 8), latent_dim=2, **kw))


def test_gaussian_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    z, mu, lv = (torch.randn(5, 3, generator=g) for _ in range(3))
    ref = torch.distributions.Normal(mu, torch.exp(0.5 * lv)).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(z, mu, lv), ref)


def test_score_function_encoder_gradient_matches_pathwise_on_average():
    """Same expectation, different variance: averaged over many draws, the two encoder gradients agree."""
    model = _tiny_vae(n_samples=4)
    model.beta = 0.0  # the KL gradient is exact in both: leave it out so only the estimators are compared
    x = torch.bernoulli(torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    reps, chunks = 2000, 8
    xr = x.repeat(reps, 1, 1, 1)  # the loss is a batch mean: one backward = the mean over reps draws
    grads = {}
    for est in ("pathwise", "score_function"):
        # chunks of independent draws: their spread gives the standard error of the average
        grads[est] = encoder_gradient_samples(model, xr, est, repeats=chunks, seed=7)  # (chunks, P)
    pw, sf = grads["pathwise"].mean(0), grads["score_function"].mean(0)
    se = (grads["score_function"].var(0) / chunks + grads["pathwise"].var(0) / chunks).sqrt()
    live = se > 0  # weights fed by a ReLU feature that is 0 for both images get no gradient from either
    assert live.sum() >= len(se) // 4 and (sf[~live] == 0).all() and (pw[~live] == 0).all()
    z = (sf - pw)[live] / se[live]
    assert z.abs().max() < 5, f"largest disagreement {z.abs().max():.2f} standard errors"
    cos = torch.nn.functional.cosine_similarity(pw, sf, dim=0)
    assert cos > 0.95, f"cosine similarity of the averaged gradients {cos:.3f}"


def test_score_function_vae_trains_decoder_by_backprop_and_reports_the_true_elbo():
    model = _tiny_vae(n_samples=3)
    x = torch.bernoulli(torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    loss, m = model.loss((x, torch.zeros(4)))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert m["elbo"] == pytest.approx(-(m["recon"] + m["kl"]))
    with pytest.raises(ValueError, match="estimator must be one of"):
        ScoreFunctionVAEConfig(estimator="reinforce")
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        ScoreFunctionVAEConfig(n_samples=0)


def test_encoder_gradient_samples_leaves_the_model_as_it_was():
    model = _tiny_vae()
    x = torch.bernoulli(torch.full((3, 1, 8, 8), 0.5), generator=torch.Generator().manual_seed(2))
    state = torch.get_rng_state()
    g = encoder_gradient_samples(model, x, "pathwise", repeats=5)
    assert g.shape == (5, model.fc_mu.weight.numel())
    assert model.estimator == "score_function" and model.training
    assert torch.equal(state, torch.get_rng_state())


# ---------------------------------------------------------------------------------------------------
# The estimator explorer
# ---------------------------------------------------------------------------------------------------

def _sprite(html):
    m = re.search(r'class="t2i-frame"[^>]*background-image:url\(data:image/png;base64,([A-Za-z0-9+/=]+)\)', html)
    assert m, "no inline sprite on the frame element"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(m.group(1)))))


def test_static_explorer_frames_sliders_and_sprite():
    mus, sigmas, ns = (-0.5, 0.5), (0.5, 1.0, 2.0), (20, 200)
    ex = estimator_explorer("sin", mu_values=mus, sigma_values=sigmas, n_values=ns, mode="static", dpi=30)
    assert isinstance(ex, StaticEstimatorExplorer) and ex.n_frames == 12
    H, W, _ = ex.frame_shape
    sprite = _sprite(ex.html)
    assert sprite.shape == (len(mus) * len(sigmas) * H, len(ns) * W, 3)
    sliders = re.findall(r'<input type="range" class="t2i-slider"[^>]*>', ex.html)
    assert [re.search(r'max="(\d+)"', s).group(1) for s in sliders] == ["1", "2", "1"]
    assert all('min="0"' in s and 'step="1"' in s for s in sliders)
    assert ex.html.count('class="t2i-widget-fallback"') == 1 and "<script src" not in ex.html
    # The frame at (mu=0.5, sigma=2.0, n=20) is exactly what render_frame draws for those values.
    r, c = ex.frame_position(1, 2, 0)
    frame = sprite[r * H:(r + 1) * H, c * W:(c + 1) * W]
    np.testing.assert_array_equal(frame, render_frame("sin", 0.5, 2.0, 20, dpi=30))
    assert not np.array_equal(frame, render_frame("sin", 0.5, 2.0, 200, dpi=30)), "frames must differ"


def test_explorer_mode_rule_and_errors(monkeypatch):
    monkeypatch.setenv("T2I_STATIC_WIDGETS", "1")
    monkeypatch.setattr(widgets, "kernel_has_widgets", lambda: True)
    ex = estimator_explorer("square", mu_values=(0.0,), sigma_values=(1.0,), n_values=(10,), dpi=20)
    assert isinstance(ex, StaticEstimatorExplorer)
    with pytest.raises(ValueError, match="sigma_values must all be > 0"):
        estimator_explorer("sin", sigma_values=(0.0, 1.0), mode="static")
    with pytest.raises(ValueError, match="unknown test function"):
        estimator_explorer("tanh", mode="static")


def test_live_explorer_redraws_when_a_slider_moves():
    pytest.importorskip("ipywidgets")
    ex = estimator_explorer("exp", mode="live", dpi=30)
    assert isinstance(ex, LiveEstimatorExplorer)
    before = ex.image.value
    ex.sliders[2].value = ex.sliders[2].options[-1]
    after_n = ex.image.value
    ex.sliders[0].value = ex.sliders[0].max
    assert before != after_n != ex.image.value
    assert ex.sliders[0].min == -1.0 and ex.sliders[0].max == 1.0 and ex.sliders[1].min == 0.25


def test_explorer_opens_on_the_frame_it_is_asked_for():
    mus, sigmas, ns = (-0.5, 0.5), (0.3, 1.0, 2.0), (20, 200)
    ex = estimator_explorer("sin", mu_values=mus, sigma_values=sigmas, n_values=ns, mode="static", dpi=30,
                            start={"mu": 0.5, "sigma": 0.3})
    values = [int(re.search(r'value="(\d+)"', s).group(1))
              for s in re.findall(r'<input type="range" class="t2i-slider"[^>]*>', ex.html)]
    assert values == [1, 0, 1]  # mu = 0.5, sigma = 0.3, and n at the middle of its list (the default)
    assert "mu = 0.50, sigma = 0.30, n = 200" in ex.html
    H, W, _ = ex.frame_shape
    r, c = ex.frame_position(1, 0, 1)
    assert f"background-position:{-c * W}px {-r * H}px" in ex.html
    with pytest.raises(ValueError, match="is not one of the sigma values"):
        estimator_explorer("sin", sigma_values=sigmas, mode="static", start={"sigma": 0.5})
    with pytest.raises(ValueError, match="start takes the keys"):
        estimator_explorer("sin", mode="static", start={"tau": 1.0})
