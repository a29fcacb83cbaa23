"""Two ways to differentiate an expectation: the pathwise (reparameterised) estimator and the
score-function (REINFORCE) estimator, measured against exact gradients.

The question, in one dimension: for z ~ N(mu, sigma^2) and a function f, estimate the gradient of

    L(mu, sigma) = E_z[ f(z) ]

with respect to theta = (mu, sigma) from samples. Two unbiased answers (when they apply):

- **pathwise**: write z = mu + sigma * eps with eps ~ N(0, 1), so the randomness no longer depends on
  theta, and differentiate through f:  d/dmu = f'(z),  d/dsigma = f'(z) * eps.  Needs f differentiable
  (almost everywhere is not enough, see the step function below).
- **score function**: differentiate the density instead of f:  grad = f(z) * grad log N(z; mu, sigma^2),
  with  d/dmu log N = eps / sigma  and  d/dsigma log N = (eps^2 - 1) / sigma.  Needs only f(z), never
  its derivative, and pays for that with variance. Subtracting a baseline b (any number that does not
  depend on z_i) leaves the expectation unchanged, because E[grad log N] = 0, and can cut the variance.

Each estimator returns its *per-sample* estimates, an (n, 2) tensor with columns (d/dmu, d/dsigma), so
their mean, standard error and variance can be measured (:func:`summarize`). :data:`CASES` holds test
functions whose exact gradients are known in closed form.

Defined in Chapter 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

PARAMS = ("mu", "sigma")  # the columns of every estimate tensor
BASELINES = (None, "mean", "leave_one_out")
Z99 = 2.5758293035489004  # the two-sided 99% quantile of the standard normal


def _check(mu: float, sigma: float, n: int) -> tuple[float, float, int]:
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if int(n) < 2:
        raise ValueError(f"n (samples) must be at least 2 to measure a spread, got {n}")
    return float(mu), float(sigma), int(n)


def _eps(n: int, generator: torch.Generator | None) -> torch.Tensor:
    # float64: the estimates are compared with closed forms to many digits, and n can be in the millions
    return torch.randn(n, generator=generator, dtype=torch.float64)  # (n,)


def pathwise_grad(f: Callable[[torch.Tensor], torch.Tensor], mu: float, sigma: float, n: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample pathwise estimates of d/d(mu, sigma) E_{z ~ N(mu, sigma^2)}[f(z)]: an (n, 2) tensor.

    z_i = mu + sigma * eps_i, and autograd differentiates f(z_i) with respect to a private copy of mu
    and sigma for each sample, so row i is (f'(z_i), f'(z_i) * eps_i). ``f`` maps a float64 tensor (n,)
    to (n,) elementwise, with torch operations.

    If f(z) does not depend on z through anything autograd can differentiate (a step function built
    from a comparison, say), the estimates are exactly 0. That is the estimator's honest answer and
    its failure: a step function's derivative is 0 almost everywhere, yet its expectation still moves
    with mu. Chapter 3 shows it.

    Defined in Chapter 3.
    """
    mu, sigma, n = _check(mu, sigma, n)
    eps = _eps(n, generator)
    m = torch.full((n,), mu, dtype=torch.float64, requires_grad=True)  # (n,) one copy per sample
    s = torch.full((n,), sigma, dtype=torch.float64, requires_grad=True)  # (n,)
    z = m + s * eps  # (n,)
    y = f(z)
    if y.shape != (n,):
        raise ValueError(f"f must map z of shape ({n},) to values of shape ({n},) elementwise; "
                         f"got shape {tuple(y.shape)}")
    if not y.requires_grad:  # no differentiable path from z to f(z): the pathwise gradient is 0
        return torch.zeros(n, 2, dtype=torch.float64)
    # f is elementwise, so the gradient of the sum w.r.t. sample i's copy is sample i's own gradient
    gm, gs = torch.autograd.grad(y.sum(), (m, s), allow_unused=True, materialize_grads=True)
    return torch.stack([gm, gs], dim=1).detach()  # (n, 2)


def score_function_grad(f: Callable[[torch.Tensor], torch.Tensor], mu: float, sigma: float, n: int,
                        generator: torch.Generator | None = None,
                        baseline: str | float | None = None) -> torch.Tensor:
    """Per-sample score-function estimates of d/d(mu, sigma) E_{z ~ N(mu, sigma^2)}[f(z)]: (n, 2).

    Row i is (f(z_i) - b_i) * grad log N(z_i; mu, sigma^2) = (f(z_i) - b_i) * (eps_i / sigma,
    (eps_i^2 - 1) / sigma). ``f`` is only evaluated, never differentiated (it runs under no_grad).

    ``baseline``:

    - ``None``: b_i = 0, plain REINFORCE.
    - a number: a fixed b_i = b (unbiased; helps only if b is near the typical f).
    - ``"leave_one_out"``: b_i = the mean of f over the *other* n - 1 samples. Independent of z_i, so the
      estimator stays unbiased; the rows are then slightly correlated, so the standard error from
      :func:`summarize` is a (very good, for large n) approximation.
    - ``"mean"``: b_i = the mean of f over all n samples, including z_i. Simpler and common, but b_i now
      depends on z_i: the mean of the rows is the leave-one-out mean times (n - 1) / n, a bias of
      order 1/n.

    Defined in Chapter 3.
    """
    mu, sigma, n = _check(mu, sigma, n)
    eps = _eps(n, generator)
    with torch.no_grad():
        y = f(mu + sigma * eps)
    if y.shape != (n,):
        raise ValueError(f"f must map z of shape ({n},) to values of shape ({n},) elementwise; "
                         f"got shape {tuple(y.shape)}")
    y = y.to(torch.float64)
    if baseline is None:
        b = torch.zeros_like(y)
    elif isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        b = torch.full_like(y, float(baseline))
    elif baseline == "mean":
        b = y.mean().expand(n)
    elif baseline == "leave_one_out":
        b = (y.sum() - y) / (n - 1)
    else:
        raise ValueError(f"baseline must be one of {BASELINES} or a number, got {baseline!r}")
    score = torch.stack([eps / sigma, (eps ** 2 - 1) / sigma], dim=1)  # (n, 2): grad log N(z; mu, sigma^2)
    return (y - b)[:, None] * score  # (n, 2)


# ------------------------------------------------------------------------------------------------
# Test functions with exact gradients
# ------------------------------------------------------------------------------------------------

def _normal_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


@dataclass(frozen=True)
class GradCase:
    """A function f with E_{N(mu, sigma^2)}[f] and its gradient in closed form. Defined in Chapter 3."""

    name: str
    f: Callable[[torch.Tensor], torch.Tensor]  # elementwise, torch ops
    expectation: Callable[[float, float], float]  # (mu, sigma) -> E[f(z)]
    grad: Callable[[float, float], tuple[float, float]]  # (mu, sigma) -> (d/dmu, d/dsigma) of E[f(z)]
    smooth: bool  # differentiable everywhere: the pathwise estimator applies
    formula: str  # for tables and figure titles

    def exact(self, mu: float, sigma: float) -> torch.Tensor:
        """The exact gradient as a (2,) float64 tensor (d/dmu, d/dsigma)."""
        return torch.tensor(self.grad(float(mu), float(sigma)), dtype=torch.float64)


def _step(z: torch.Tensor) -> torch.Tensor:
    return (z > 0).to(z.dtype)  # a comparison: autograd sees no path from z


#: The test functions, by name, with their exact gradients.
CASES: dict[str, GradCase] = {
    # E[z^2] = mu^2 + sigma^2
    "square": GradCase("square", lambda z: z ** 2, lambda m, s: m * m + s * s,
                       lambda m, s: (2 * m, 2 * s), True, "z^2"),
    # E[sin z] = sin(mu) exp(-sigma^2 / 2) (the imaginary part of the characteristic function)
    "sin": GradCase("sin", torch.sin, lambda m, s: math.sin(m) * math.exp(-s * s / 2),
                    lambda m, s: (math.cos(m) * math.exp(-s * s / 2), -s * math.sin(m) * math.exp(-s * s / 2)),
                    True, "sin(z)"),
    # E[exp z] = exp(mu + sigma^2 / 2), the log-normal mean
    "exp": GradCase("exp", torch.exp, lambda m, s: math.exp(m + s * s / 2),
                    lambda m, s: (math.exp(m + s * s / 2), s * math.exp(m + s * s / 2)), True, "exp(z)"),
    # E[1[z > 0]] = Phi(mu / sigma): d/dmu = N(0; mu, sigma^2), d/dsigma = -(mu / sigma) N(0; mu, sigma^2)
    "step": GradCase("step", _step, lambda m, s: 0.5 * (1 + math.erf(m / (s * math.sqrt(2)))),
                     lambda m, s: (_normal_pdf(m / s) / s, -(m / s) * _normal_pdf(m / s) / s), False, "1[z>0]"),
}


def get_case(case: str | GradCase) -> GradCase:
    """A :class:`GradCase` by name (or passed through). Defined in Chapter 3."""
    if isinstance(case, GradCase):
        return case
    if case not in CASES:
        raise ValueError(f"unknown test function {case!r}; known: {', '.join(CASES)}")
    return CASES[case]


# ------------------------------------------------------------------------------------------------
# Measuring an estimator
# ------------------------------------------------------------------------------------------------

@dataclass
class EstimatorRow:
    """Summary of n per-sample estimates of one gradient component. Defined in Chapter 3."""

    estimator: str
    param: str  # "mu" or "sigma"
    n: int
    mean: float  # the n-sample estimate of the gradient
    se: float  # its standard error, sqrt(variance / n)
    lo: float  # 99% confidence interval of the mean: mean -/+ 2.576 se
    hi: float
    variance: float  # variance of ONE per-sample estimate (what a single-sample training step sees)
    exact: float | None = None

    @property
    def covers(self) -> bool | None:
        """Whether the exact gradient lies inside the 99% interval (None if no exact value)."""
        return None if self.exact is None else bool(self.lo <= self.exact <= self.hi)

    @property
    def z_score(self) -> float | None:
        """(mean - exact) / se: for an unbiased estimator, a draw from (about) N(0, 1)."""
        if self.exact is None:
            return None
        if self.se == 0:
            return 0.0 if self.mean == self.exact else math.copysign(math.inf, self.mean - self.exact)
        return (self.mean - self.exact) / self.se


def summarize(estimates: dict[str, torch.Tensor], exact=None) -> list[EstimatorRow]:
    """Mean, standard error, 99% interval and variance of each estimator's per-sample estimates.

    ``estimates`` maps an estimator's name to its (n, 2) tensor; ``exact`` is the true gradient
    (d/dmu, d/dsigma) or None. One row per (estimator, parameter).

    Defined in Chapter 3.
    """
    ex = None if exact is None else [float(v) for v in exact]
    rows = []
    for name, g in estimates.items():
        g = torch.as_tensor(g, dtype=torch.float64)
        if g.dim() != 2 or g.shape[1] != 2 or g.shape[0] < 2:
            raise ValueError(f"estimates[{name!r}] must have shape (n >= 2, 2), columns (d/dmu, d/dsigma); "
                             f"got shape {tuple(g.shape)}")
        n = g.shape[0]
        mean, var = g.mean(0), g.var(0, unbiased=True)
        se = (var / n).sqrt()
        for j, p in enumerate(PARAMS):
            m, s = float(mean[j]), float(se[j])
            rows.append(EstimatorRow(name, p, n, m, s, m - Z99 * s, m + Z99 * s, float(var[j]),
                                     None if ex is None else ex[j]))
    return rows


def compare_estimators(case: str | GradCase, mu: float, sigma: float, n: int, seed: int = 0,
                       baseline: str | float | None = "leave_one_out") -> list[EstimatorRow]:
    """Run the pathwise, the score-function and (if ``baseline``) the score-function-with-baseline
    estimators on one test function, each on its own ``n`` draws from ``seed``, and :func:`summarize`.

    Defined in Chapter 3.
    """
    c = get_case(case)
    g = torch.Generator().manual_seed(seed)
    est = {"pathwise": pathwise_grad(c.f, mu, sigma, n, g),
           "score function": score_function_grad(c.f, mu, sigma, n, g)}
    if baseline is not None:
        est[f"score fn + {baseline} baseline"] = score_function_grad(c.f, mu, sigma, n, g, baseline=baseline)
    return summarize(est, c.exact(mu, sigma))


def variance_ratios(rows: list[EstimatorRow], reference: str = "pathwise") -> dict[tuple[str, str], float]:
    """{(estimator, param): its per-sample variance / the reference's} for every other estimator.
    Infinite where the reference has zero variance. Defined in Chapter 3."""
    ref = {r.param: r.variance for r in rows if r.estimator == reference}
    if not ref:
        raise ValueError(f"no rows for the reference estimator {reference!r}")
    return {(r.estimator, r.param): (r.variance / ref[r.param] if ref[r.param] > 0 else math.inf)
            for r in rows if r.estimator != reference}


# The columns of an estimator summary, for t2i_lib.viz.tables.estimator_table (HTML in the book, aligned text elsewhere).
#: The column names of an estimator table, one per cell of :func:`estimator_cells`.
ESTIMATOR_COLUMNS = ("estimator", "grad", "exact", "mean", "std err", "99% interval", "variance", "exact in 99%?")


def estimator_cells(r: EstimatorRow) -> list[str]:
    """One :func:`summarize` row, formatted: a cell for each of :data:`ESTIMATOR_COLUMNS`. Defined in Chapter 3."""
    return [r.estimator, "d/d" + ("mu" if r.param == "mu" else "sd"), "" if r.exact is None else f"{r.exact:.4f}",
            f"{r.mean:.4f}", f"{r.se:.4f}", f"[{r.lo:.4f}, {r.hi:.4f}]", f"{r.variance:.4g}",
            "" if r.covers is None else ("yes" if r.covers else "NO")]

