"""Chapter 2's exact check of the ELBO: probabilistic PCA, where log p(x) and p(z | x) are closed-form."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from t2i_lib.experiments.bound import check_bound
from t2i_lib.models.ppca import PPCA, gaussian_kl


def random_spd(k, n=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (k, k) if n is None else (n, k, k)
    A = torch.randn(*shape, generator=g, dtype=torch.float64)
    return A @ A.transpose(-1, -2) + 0.3 * torch.eye(k, dtype=torch.float64)


def random_q(model, seed):
    g = torch.Generator().manual_seed(seed)
    m = 2 * torch.randn(model.k, generator=g, dtype=torch.float64)
    return m, random_spd(model.k, seed=seed + 1000)


def test_gaussian_kl_matches_torch_distributions():
    k, n = 4, 6
    g = torch.Generator().manual_seed(0)
    m0 = torch.randn(n, k, generator=g, dtype=torch.float64)
    m1 = torch.randn(n, k, generator=g, dtype=torch.float64)
    S0, S1 = random_spd(k, n, seed=1), random_spd(k, n, seed=2)
    ours = gaussian_kl(m0, S0, m1, S1)  # (n,)
    ref = kl_divergence(MultivariateNormal(m0, S0), MultivariateNormal(m1, S1))
    assert ours.shape == (n,)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    assert (ours > 0).all()
    torch.testing.assert_close(gaussian_kl(m0, S0, m0, S0), torch.zeros(n, dtype=torch.float64), atol=1e-10, rtol=0)


def test_gaussian_kl_rejects_wrong_covariance_shape():
    with pytest.raises(ValueError, match=r"S1 must have shape \(k, k\)"):
        gaussian_kl(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(2))


def test_log_marginal_matches_multivariate_normal():
    model = PPCA.random(d=7, k=3, s2=0.4, seed=1)
    x, _ = model.sample(20, seed=2)
    ref = MultivariateNormal(model.mu, model.marginal_cov()).log_prob(x)
    torch.testing.assert_close(model.log_marginal(x), ref, rtol=1e-12, atol=1e-10)
    assert model.log_marginal(x[0]).shape == ()


def test_posterior_is_bayes_rule():
    """log p(z|x) = log p(x|z) + log p(z) - log p(x) at arbitrary z, with the closed-form posterior."""
    model = PPCA.random(d=5, k=2, s2=0.3, seed=3)
    x = model.sample(1, seed=4)[0][0]
    mean, cov = model.posterior(x)
    z = torch.randn(10, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    log_lik = MultivariateNormal(z @ model.W.T + model.mu, model.s2 * torch.eye(5, dtype=torch.float64)).log_prob(x)
    log_prior = MultivariateNormal(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)).log_prob(z)
    bayes = log_lik + log_prior - model.log_marginal(x)
    torch.testing.assert_close(MultivariateNormal(mean, cov).log_prob(z), bayes, rtol=1e-10, atol=1e-10)


def test_elbo_never_exceeds_evidence_and_gap_is_kl_to_posterior():
    model = PPCA.random(d=6, k=3, s2=0.5, seed=6)
    xs, _ = model.sample(5, seed=7)
    for i, x in enumerate(xs):
        log_px = model.log_marginal(x)
        pm, pS = model.posterior(x)
        for j in range(10):
            m, S = random_q(model, seed=100 * i + j)
            elbo = model.elbo(x, m, S)
            assert elbo <= log_px
            gap = log_px - elbo
            kl = gaussian_kl(m, S, pm, pS)
            assert abs(float(gap - kl)) < 1e-9 * max(1.0, float(gap))
        # at the true posterior the bound is tight
        assert abs(float(model.elbo(x, pm, pS) - log_px)) < 1e-9


def test_elbo_batched_matches_single():
    model = PPCA.random(d=4, k=2, seed=8)
    xs, _ = model.sample(3, seed=9)
    m = torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    S = random_spd(2, 3, seed=10)
    batched = model.elbo(xs, m, S)
    single = torch.stack([model.elbo(xs[i], m[i], S[i]) for i in range(3)])
    torch.testing.assert_close(batched, single)


def test_monte_carlo_elbo_agrees_with_closed_form():
    model = PPCA.random(d=8, k=3, s2=0.6, seed=11)
    x = model.sample(1, seed=12)[0][0]
    for j in range(5):
        m, S = random_q(model, seed=50 + j)
        est, se = model.elbo_mc(x, m, S, n_samples=20_000, seed=j)
        assert se > 0
        assert abs(est - float(model.elbo(x, m, S))) < 4 * se
    # at the posterior every sample equals log p(x): zero variance, exact
    pm, pS = model.posterior(x)
    est, se = model.elbo_mc(x, pm, pS, n_samples=100, seed=0)
    assert se < 1e-10
    assert abs(est - float(model.log_marginal(x))) < 1e-9


def test_monte_carlo_elbo_would_catch_a_wrong_closed_form():
    """The MC check has teeth: an ELBO off by 0.05 nats is many standard errors away."""
    model = PPCA.random(d=8, k=3, s2=0.6, seed=11)
    x = model.sample(1, seed=12)[0][0]
    pm, pS = model.posterior(x)
    m, S = pm + 0.1, 0.9 * pS  # close to the posterior, so the estimator's variance is small
    est, se = model.elbo_mc(x, m, S, n_samples=20_000)
    assert abs(est - (float(model.elbo(x, m, S)) + 0.05)) > 4 * se


def test_fit_is_maximum_likelihood():
    true = PPCA.random(d=10, k=2, s2=0.2, seed=13)
    X, _ = true.sample(3000, seed=14)
    fit = PPCA.fit(X, k=2)
    best = float(fit.log_marginal(X).mean())
    g = torch.Generator().manual_seed(15)
    for _ in range(5):  # nearby parameters are worse
        W = fit.W + 0.05 * torch.randn(fit.W.shape, generator=g, dtype=torch.float64)
        assert float(PPCA(W, fit.mu, fit.s2).log_marginal(X).mean()) < best
        assert float(PPCA(fit.W, fit.mu, fit.s2 * 1.1).log_marginal(X).mean()) < best
    # and it recovers the generating model's covariance
    torch.testing.assert_close(fit.marginal_cov(), true.marginal_cov(), atol=0.25, rtol=0.1)
    with pytest.raises(ValueError, match="k must satisfy"):
        PPCA.fit(X, k=10)


def test_check_bound_rows_and_table():
    model = PPCA.random(d=5, k=2, seed=16)
    x = model.sample(1, seed=17)[0][0]
    pm, pS = model.posterior(x)
    eye = torch.eye(2, dtype=torch.float64)
    rows = check_bound(model, x, {"posterior": (pm, pS), "prior": (torch.zeros(2), eye)}, n_samples=5000)
    post, prior = rows
    assert abs(post["gap"]) < 1e-9 and math.isnan(post["z"])
    assert prior["gap"] > 0 and abs(prior["gap"] - prior["kl_post"]) < 1e-9
    from t2i_lib.viz.tables import bound_table

    table = bound_table(rows)
    assert "posterior" in str(table) and "(s.e. = 0)" in str(table)
    html = table._repr_html_()
    assert html.count("<tr>") == len(rows) + 1 and "<th style=\"text-align:right\">gap - KL</th>" in html


def test_wrong_shapes_say_what_was_expected():
    model = PPCA.random(d=5, k=2)
    with pytest.raises(ValueError, match=r"x must have shape \(d,\) or \(N, d\) with d=5"):
        model.log_marginal(torch.zeros(4))
    with pytest.raises(ValueError, match="noise variance s2 must be positive"):
        PPCA(torch.zeros(3, 1), torch.zeros(3), 0.0)
