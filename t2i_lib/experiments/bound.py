"""Chapter 2's exact check of the bound: ELBO <= log p(x) on probabilistic PCA, where both are exact.

Defined in Chapter 2."""

from __future__ import annotations

from t2i_lib.models.ppca import PPCA, gaussian_kl


def check_bound(model: PPCA, x, qs: dict, n_samples: int = 20_000, seed: int = 0) -> list[dict]:
    """For one observation x (d,) and named Gaussians ``qs = {name: (m, S)}``, compare each ELBO with the
    exact evidence. One dict per q: log_px, elbo (closed form), gap = log_px - elbo, kl_post =
    KL(q || p(z|x)), elbo_mc and its standard error mc_se, and z = (elbo_mc - elbo) / mc_se.

    Defined in Chapter 2.
    """
    log_px = float(model.log_marginal(x))
    pm, pS = model.posterior(x)
    rows = []
    for i, (name, (m, S)) in enumerate(qs.items()):
        elbo = float(model.elbo(x, m, S))
        mc, se = model.elbo_mc(x, m, S, n_samples=n_samples, seed=seed + i)
        rows.append(dict(q=name, log_px=log_px, elbo=elbo, gap=log_px - elbo,
                         kl_post=float(gaussian_kl(m, S, pm, pS)), elbo_mc=mc, mc_se=se,
                         # At the true posterior every sample of log p(x, z) - log q(z) equals log p(x): the
                         # estimator has zero variance, and the ratio below is 0/0.
                         z=(mc - elbo) / se if se > 1e-12 * max(1.0, abs(elbo)) else float("nan")))
    return rows


# The columns of the bound check, shared by t2i_lib.viz.tables.bound_table (HTML in the book, aligned text elsewhere).
#: The column names of the bound table, one per cell of :func:`bound_cells`.
BOUND_COLUMNS = ("q(z)", "ELBO", "log p(x)", "gap", "KL(q||post)", "gap - KL", "MC ELBO", "MC s.e.", "(MC-ELBO)/se")


def bound_cells(r: dict) -> list[str]:
    """One row of :func:`check_bound`, formatted: a cell for each of :data:`BOUND_COLUMNS`. Defined in Chapter 2."""
    return [r["q"], f"{r['elbo']:.4f}", f"{r['log_px']:.4f}", f"{r['gap']:.3e}", f"{r['kl_post']:.3e}",
            f"{r['gap'] - r['kl_post']:.1e}", f"{r['elbo_mc']:.4f}", f"{r['mc_se']:.4f}",
            f"{r['z']:.2f}" if r["z"] == r["z"] else "(s.e. = 0)"]

