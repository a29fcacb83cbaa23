"""Probabilistic PCA: a latent-variable model whose evidence and posterior are exact, for checking the ELBO.

The model (Tipping & Bishop, 1999)::

    z ~ N(0, I_k)                         the prior over a k-dimensional latent
    x | z ~ N(W z + mu, s2 I_d)           a linear-Gaussian decoder with isotropic noise

is a VAE whose decoder is linear and whose likelihood is Gaussian. Everything a VAE can only bound or
estimate is closed-form here, which makes it the place to *check* the bound rather than believe it:

- the evidence: x ~ N(mu, W W^T + s2 I_d), so log p(x) is a Gaussian log-density (:meth:`PPCA.log_marginal`);
- the true posterior: p(z | x) = N(M^-1 W^T (x - mu), s2 M^-1) with M = W^T W + s2 I_k
  (:meth:`PPCA.posterior`);
- the ELBO of any Gaussian q(z) = N(m, S), in closed form (:meth:`PPCA.elbo`) and by Monte Carlo
  with its standard error (:meth:`PPCA.elbo_mc`);
- the KL divergence between two Gaussians (:func:`gaussian_kl`), so that the identity
  log p(x) - ELBO(q) = KL(q || p(z | x)) can be verified to rounding error.

All computations are in float64: the identity is checked to ~1e-9, and float32's 7 digits would blur it.
Shapes: x is (d,) or (N, d); q's mean m is (k,) or (N, k) and its covariance S (k, k) or (N, k, k).

Defined in Chapter 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


_LOG_2PI = math.log(2 * math.pi)


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def _check_cov(S: torch.Tensor, k: int, name: str = "covariance") -> torch.Tensor:
    if S.dim() < 2 or S.shape[-2:] != (k, k):
        raise ValueError(f"{name} must have shape (k, k) or (N, k, k) with k={k}; got shape {tuple(S.shape)}")
    return S


def gaussian_kl(m0, S0, m1, S1) -> torch.Tensor:
    """KL( N(m0, S0) || N(m1, S1) ) in nats, for full covariances; batched over leading dimensions.

        KL = 1/2 [ tr(S1^-1 S0) + (m1 - m0)^T S1^-1 (m1 - m0) - k + log det S1 - log det S0 ]

    m0, m1: (..., k); S0, S1: (..., k, k), symmetric positive definite. Computed with Cholesky factors
    (no explicit inverse), in float64.

    Defined in Chapter 2.
    """
    m0, S0, m1, S1 = _f64(m0), _f64(S0), _f64(m1), _f64(S1)
    k = m0.shape[-1]
    _check_cov(S0, k, "S0")
    _check_cov(S1, k, "S1")
    L1 = torch.linalg.cholesky(S1)  # (..., k, k)
    L0 = torch.linalg.cholesky(S0)
    # tr(S1^-1 S0) = || L1^-1 L0 ||_F^2
    A = torch.linalg.solve_triangular(L1, L0, upper=False)  # (..., k, k)
    trace = (A ** 2).sum(dim=(-2, -1))
    diff = torch.linalg.solve_triangular(L1, (m1 - m0).unsqueeze(-1), upper=False).squeeze(-1)  # (..., k)
    maha = (diff ** 2).sum(-1)
    logdet1 = 2 * torch.log(torch.diagonal(L1, dim1=-2, dim2=-1)).sum(-1)
    logdet0 = 2 * torch.log(torch.diagonal(L0, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (trace + maha - k + logdet1 - logdet0)


@dataclass
class PPCA:
    """Probabilistic PCA with parameters W (d, k), mu (d,) and noise variance s2 > 0.

    Build one by hand (``PPCA(W, mu, s2)``), at random (:meth:`random`), or fit it to data by maximum
    likelihood (:meth:`fit`, closed form). Defined in Chapter 2.
    """

    W: torch.Tensor  # (d, k) the linear decoder: columns are the directions each latent moves x along
    mu: torch.Tensor  # (d,) the data mean
    s2: float  # the variance of the isotropic observation noise

    def __post_init__(self):
        self.W = _f64(self.W)
        self.mu = _f64(self.mu).reshape(-1)
        if self.W.dim() != 2:
            raise ValueError(f"W must be a (d, k) matrix; got shape {tuple(self.W.shape)}")
        if self.mu.numel() != self.W.shape[0]:
            raise ValueError(f"mu must have d={self.W.shape[0]} entries to match W {tuple(self.W.shape)}; "
                             f"got {self.mu.numel()}")
        self.s2 = float(self.s2)
        if not self.s2 > 0:
            raise ValueError(f"the noise variance s2 must be positive, got {self.s2}")

    @property
    def d(self) -> int:
        return self.W.shape[0]

    @property
    def k(self) -> int:
        return self.W.shape[1]

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(cls, d: int, k: int, s2: float = 0.5, seed: int = 0) -> "PPCA":
        """A random model: W and mu with standard normal entries."""
        g = torch.Generator().manual_seed(seed)
        return cls(torch.randn(d, k, generator=g, dtype=torch.float64),
                   torch.randn(d, generator=g, dtype=torch.float64), s2)

    @classmethod
    def fit(cls, X, k: int) -> "PPCA":
        """Maximum-likelihood PPCA of the rows of X (N, d), in closed form (Tipping & Bishop, 1999):
        mu is the data mean, s2 the mean of the d - k smallest covariance eigenvalues (the variance PCA
        throws away), and W = U_k (Lambda_k - s2 I)^(1/2), U_k the top-k eigenvectors."""
        X = _f64(X.reshape(X.shape[0], -1) if isinstance(X, torch.Tensor) else X)
        N, d = X.shape
        if not 1 <= k < d:
            raise ValueError(f"k must satisfy 1 <= k < d = {d} (PPCA needs discarded directions to estimate "
                             f"the noise), got {k}")
        mu = X.mean(0)
        C = (X - mu).T @ (X - mu) / N  # (d, d) the maximum-likelihood covariance
        evals, evecs = torch.linalg.eigh(C)  # ascending
        evals, evecs = evals.flip(0), evecs.flip(1)  # largest first
        s2 = float(evals[k:].mean().clamp_min(1e-12))
        W = evecs[:, :k] * (evals[:k] - s2).clamp_min(0).sqrt()  # (d, k)
        return cls(W, mu, s2)

    def sample(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw (x (n, d), z (n, k)) from the model."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.k, generator=g, dtype=torch.float64)
        x = z @ self.W.T + self.mu + math.sqrt(self.s2) * torch.randn(n, self.d, generator=g, dtype=torch.float64)
        return x, z

    # ------------------------------------------------------------------ exact quantities
    def _x(self, x) -> torch.Tensor:
        x = _f64(x)
        if x.shape[-1] != self.d:
            raise ValueError(f"x must have shape (d,) or (N, d) with d={self.d}; got shape {tuple(x.shape)}")
        return x

    def marginal_cov(self) -> torch.Tensor:
        """Cov[x] = W W^T + s2 I_d, shape (d, d)."""
        return self.W @ self.W.T + self.s2 * torch.eye(self.d, dtype=torch.float64)

    def log_marginal(self, x) -> torch.Tensor:
        """The exact evidence log p(x) in nats: x (d,) -> scalar, (N, d) -> (N,)."""
        x = self._x(x)
        L = torch.linalg.cholesky(self.marginal_cov())  # (d, d)
        r = torch.linalg.solve_triangular(L, (x - self.mu).unsqueeze(-1), upper=False).squeeze(-1)  # (..., d)
        logdet = 2 * torch.log(torch.diagonal(L)).sum()
        return -0.5 * (self.d * _LOG_2PI + logdet + (r ** 2).sum(-1))

    def posterior(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact posterior p(z | x) = N(mean, cov): mean (k,) or (N, k), cov (k, k) (the same for every x)."""
        x = self._x(x)
        M = self.W.T @ self.W + self.s2 * torch.eye(self.k, dtype=torch.float64)  # (k, k)
        mean = torch.linalg.solve(M, self.W.T @ (x - self.mu).unsqueeze(-1)).squeeze(-1)  # (..., k)
        cov = self.s2 * torch.linalg.inv(M)
        return mean, 0.5 * (cov + cov.T)

    # ------------------------------------------------------------------ the bound
    def expected_log_likelihood(self, x, m, S) -> torch.Tensor:
        """E_q[log p(x | z)] for q = N(m, S), exactly:
        -d/2 log(2 pi s2) - ( ||x - W m - mu||^2 + tr(W^T W S) ) / (2 s2)."""
        x, m, S = self._x(x), _f64(m), _check_cov(_f64(S), self.k, "S")
        resid = x - m @ self.W.T - self.mu  # (..., d)
        tr = torch.einsum("ij,...ji->...", self.W.T @ self.W, S)
        return -0.5 * self.d * math.log(2 * math.pi * self.s2) - ((resid ** 2).sum(-1) + tr) / (2 * self.s2)

    def kl_to_prior(self, m, S) -> torch.Tensor:
        """KL( N(m, S) || N(0, I) ) = 1/2 ( tr S + ||m||^2 - k - log det S )."""
        m, S = _f64(m), _check_cov(_f64(S), self.k, "S")
        eye = torch.eye(self.k, dtype=torch.float64)
        return gaussian_kl(m, S, torch.zeros_like(m), eye.expand_as(S))

    def elbo(self, x, m, S) -> torch.Tensor:
        """The ELBO of q(z) = N(m, S) for the observation x, in closed form (nats):
        E_q[log p(x | z)] - KL(q || p(z)). Never above :meth:`log_marginal`; equal to it at the posterior."""
        return self.expected_log_likelihood(x, m, S) - self.kl_to_prior(m, S)

    def elbo_mc(self, x, m, S, n_samples: int = 10_000, seed: int = 0) -> tuple[float, float]:
        """A Monte Carlo estimate of the ELBO for a single x (d,) and q = N(m (k,), S (k, k)).

        Draws z_i = m + L eps_i (L L^T = S, the reparameterisation), averages
        log p(x | z_i) + log p(z_i) - log q(z_i), and returns (estimate, standard error), where the standard
        error is the sample standard deviation over sqrt(n_samples).
        """
        x, m, S = self._x(x), _f64(m), _check_cov(_f64(S), self.k, "S")
        if x.dim() != 1 or m.dim() != 1 or S.dim() != 2:
            raise ValueError(f"elbo_mc takes one observation: x (d,), m (k,), S (k, k); got shapes "
                             f"{tuple(x.shape)}, {tuple(m.shape)}, {tuple(S.shape)}")
        g = torch.Generator().manual_seed(seed)
        L = torch.linalg.cholesky(S)
        eps = torch.randn(n_samples, self.k, generator=g, dtype=torch.float64)
        z = m + eps @ L.T  # (n, k)
        mean_x = z @ self.W.T + self.mu  # (n, d)
        log_lik = -0.5 * (self.d * math.log(2 * math.pi * self.s2) + ((x - mean_x) ** 2).sum(-1) / self.s2)
        log_prior = -0.5 * (self.k * _LOG_2PI + (z ** 2).sum(-1))
        logdet_S = 2 * torch.log(torch.diagonal(L)).sum()
        log_q = -0.5 * (self.k * _LOG_2PI + logdet_S + (eps ** 2).sum(-1))  # (z - m)^T S^-1 (z - m) = |eps|^2
        terms = log_lik + log_prior - log_q  # (n,)
        return float(terms.mean()), float(terms.std(unbiased=True) / math.sqrt(n_samples))
