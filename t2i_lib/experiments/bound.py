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


def format_bound_table(rows: list[dict]) -> str:
    """The rows of :func:`check_bound` as a fixed-width text table. Defined in Chapter 2."""
    head = (f"{'q(z)':<26}{'ELBO':>11}{'log p(x)':>11}{'gap':>12}{'KL(q||post)':>13}{'gap - KL':>11}"
            f"{'MC ELBO':>11}{'MC s.e.':>9}{'(MC-ELBO)/se':>14}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['q']:<26}{r['elbo']:>11.4f}{r['log_px']:>11.4f}{r['gap']:>12.3e}{r['kl_post']:>13.3e}"
                     f"{r['gap'] - r['kl_post']:>11.1e}{r['elbo_mc']:>11.4f}{r['mc_se']:>9.4f}"
                     + (f"{r['z']:>14.2f}" if r['z'] == r['z'] else f"{'(s.e. = 0)':>14}"))
    return "\n".join(lines)
