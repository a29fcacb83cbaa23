"""The chapters' exercises: each one a change the learner makes, and a check that says whether the result
is what the chapter's reasoning predicts.

A chapter states an exercise in words, leaves a cell with the value to change (``answer = None``) and calls
``check_exercise("1.1", answer, ...)``, which recomputes the reference with the library and prints whether
the answer is right, or what is still off. The hidden solution sits in a dropdown below it.
``tests/test_experiments_exercises.py`` runs every check on its intended answer, so every exercise can be
done, and on wrong answers, so no check passes everything.

Defined in Chapter 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["EXERCISES", "Exercise", "Verdict", "check_exercise"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ``passed``, and what to tell the learner. Defined in Chapter 1."""

    exercise: str
    passed: bool
    message: str

    def __str__(self) -> str:
        return f"Exercise {self.exercise}: {'correct' if self.passed else 'not yet'}. {self.message}"

    def __bool__(self) -> bool:
        return self.passed


@dataclass(frozen=True)
class Exercise:
    """``check(answer, **context) -> (passed, message)``; ``context`` names what the chapter passes in."""

    title: str
    check: Callable[..., tuple[bool, str]]
    context: tuple[str, ...] = ()


def _number(answer, what: str) -> float:
    if answer is None:
        raise _NotAnswered(f"set {what} in the cell above, then run it again")
    if isinstance(answer, torch.Tensor):
        if answer.numel() != 1:
            raise _NotAnswered(f"{what} should be one number, got a tensor of shape {tuple(answer.shape)}")
        answer = answer.item()
    try:
        return float(answer)
    except (TypeError, ValueError):
        raise _NotAnswered(f"{what} should be a number, got {type(answer).__name__}") from None


class _NotAnswered(Exception):
    pass


# --- Chapter 1 ---------------------------------------------------------------------------------------------

def _pca_components(answer, X_train) -> tuple[bool, str]:
    from t2i_lib.models import pca

    k = int(_number(answer, "k_needed"))
    spectrum = pca(X_train, 1).spectrum  # every variance, largest first
    n = X_train[0].numel()
    # On the training set, keeping the top j directions leaves exactly the variance of the others:
    # the MSE per pixel is their sum over n (pca divides the covariance by N).
    mse = {j: float(spectrum[j:].sum() / n) for j in range(1, len(spectrum) + 1)}
    want = min(j for j, m in mse.items() if m < 0.005)
    if k == want:
        return True, f"{k} components reconstruct the training images with MSE {mse[k]:.5f} < 0.005."
    if k not in mse:
        return False, f"k_needed = {k} is out of range: this PCA has 1 to {len(spectrum)} components."
    return False, f"with {k} components the MSE is {mse[k]:.5f}; look for the smallest k whose MSE is below 0.005."


def _explained_variance(answer, pca_result) -> tuple[bool, str]:
    frac = _number(answer, "explained")
    want = float(pca_result.explained_variance.sum() / pca_result.total_variance)
    if abs(frac - want) < 1e-6:
        return True, f"the {len(pca_result.explained_variance)} components keep {want:.1%} of the variance."
    hint = " (a fraction, not a percentage)" if abs(frac / 100 - want) < 1e-6 else ""
    return False, f"{frac:.4g} is not it{hint}: divide the variance along the kept components by the total."


# --- Chapter 2 ---------------------------------------------------------------------------------------------

def _elbo_gap(answer, model, x) -> tuple[bool, str]:
    from t2i_lib.models.ppca import gaussian_kl

    gap = _number(answer, "gap")
    post_mean, post_cov = model.posterior(x)
    m, S = post_mean + 0.2, 2 * post_cov
    kl = float(gaussian_kl(m, S, post_mean, post_cov))
    if abs(gap - kl) < 1e-8 * max(1.0, abs(kl)):
        return True, f"log p(x) - ELBO(q) = {gap:.6f} nats = KL(q || p(z|x)), as (elbo-identity) says."
    return False, (f"{gap:.6f} is not the gap for q = N(posterior mean + 0.2, 2 x posterior covariance); "
                   "compute model.log_marginal(x) - model.elbo(x, m, S)")


def _bits_per_dim(answer, elbo, dims) -> tuple[bool, str]:
    bpd = _number(answer, "bpd")
    want = -float(elbo) / (int(dims) * math.log(2))
    if abs(bpd - want) < 1e-6:
        return True, f"{bpd:.4f} bits per dimension: the ELBO in nats, negated, over {dims} dimensions times ln 2."
    if abs(bpd + want) < 1e-6:
        return False, "the sign: a higher ELBO means fewer bits, so bits = -ELBO / (D ln 2)."
    return False, f"{bpd:.4g} is not it: convert nats to bits (divide by ln 2) and share them over the {dims} pixels."


# --- Chapter 3 ---------------------------------------------------------------------------------------------

def _variances(mu, sigma, n=100_000, baseline=None):
    from t2i_lib.experiments.estimators import get_case, pathwise_grad, score_function_grad

    c = get_case("sin")
    g = torch.Generator().manual_seed(0)
    pw = pathwise_grad(c.f, mu, sigma, n, g)[:, 0].var().item()
    sf = score_function_grad(c.f, mu, sigma, n, g, baseline=baseline)[:, 0].var().item()
    return pw, sf


def _wide_sigma(answer) -> tuple[bool, str]:
    sigma = _number(answer, "sigma")
    if sigma <= 0:
        return False, "sigma must be > 0."
    pw, sf = _variances(1.0, sigma)
    if sf < pw:
        return True, (f"at sigma = {sigma:g} the score function's variance ({sf:.3g}) is below the pathwise "
                      f"one ({pw:.3g}): the pathwise advantage is not a law.")
    return False, f"at sigma = {sigma:g} the score function is still noisier ({sf:.3g} vs {pw:.3g}): widen q."


def _fixed_baseline(answer) -> tuple[bool, str]:
    b = _number(answer, "b")
    _, plain = _variances(1.0, 0.3)
    _, based = _variances(1.0, 0.3, baseline=b)
    cut = plain / based
    if cut >= 10:
        return True, f"b = {b:.3g} cuts the score-function variance {cut:.0f} times: it sits near the typical f."
    return False, f"b = {b:.3g} cuts the variance only {cut:.1f} times: choose b near E[sin z] for z ~ N(1, 0.3^2)."


# --- Chapter 4 ---------------------------------------------------------------------------------------------

def _three_codes(answer) -> tuple[bool, str]:
    err = _number(answer, "err3")
    if 0.18 <= err <= 0.32:
        return True, (f"{err:.3f}: with one code per cluster, the error is about the clusters' own spread, "
                      "2 x 0.35^2 = 0.245.")
    if err < 0.18:
        return False, f"{err:.3f} is below what three codes can reach on these clusters: was K = 3?"
    return False, f"{err:.3f} is too large: did k-means initialisation run (a training-mode first call)?"


def _perplexity(answer, counts) -> tuple[bool, str]:
    from t2i_lib.models.quantize import codebook_stats

    ppl = _number(answer, "ppl")
    want = float(codebook_stats(torch.as_tensor(counts))["perplexity"])
    if abs(ppl - want) < 1e-3 * max(1.0, want):
        return True, f"perplexity {ppl:.3f}: exp of the entropy of the code histogram."
    return False, f"{ppl:.4g} is not it: normalise the counts to p_k, then exp(-sum p_k log p_k) (0 log 0 = 0)."


# --- Chapter 5 ---------------------------------------------------------------------------------------------

def _gumbel_tau(answer, logits) -> tuple[bool, str]:
    from t2i_lib.models.dvae import gumbel_softmax

    tau = _number(answer, "tau")
    if tau <= 0:
        return False, "tau must be > 0."
    logits = torch.as_tensor(logits, dtype=torch.float32)
    n = 100_000
    y = gumbel_softmax(logits.expand(n, -1), tau, dim=1, generator=torch.Generator().manual_seed(0))
    largest = y.max(1).values.mean().item()
    freq = torch.bincount(y.argmax(1), minlength=len(logits)).float() / n
    tv = 0.5 * (freq - torch.softmax(logits, 0)).abs().sum().item()
    if largest < 0.5 and tv < 0.01:
        return True, (f"at tau = {tau:g} the samples are far from one-hot (mean largest entry {largest:.2f}), "
                      f"yet their argmax is still distributed as softmax(logits) (total variation {tv:.3f}).")
    return False, f"at tau = {tau:g} the mean largest entry is {largest:.2f}: raise tau until it is below 0.5."


def _token_ratio(answer) -> tuple[bool, str]:
    ratio = _number(answer, "ratio")
    want = (64 * 64 * 3 * 8) / (16 * 16 * math.log2(1024))
    if abs(ratio - want) < 1e-6:
        return True, f"{ratio:g} times fewer bits: 98,304 bits of pixels against 2,560 bits of tokens."
    return False, f"{ratio:.4g} is not it: pixel bits (64 x 64 x 3 x 8) over token bits (16 x 16 x log2 1024)."


EXERCISES: dict[str, Exercise] = {
    "1.1": Exercise("how many principal components?", _pca_components, ("X_train",)),
    "1.2": Exercise("the variance PCA keeps", _explained_variance, ("pca_result",)),
    "2.1": Exercise("the gap is a KL divergence", _elbo_gap, ("model", "x")),
    "2.2": Exercise("bits per dimension", _bits_per_dim, ("elbo", "dims")),
    "3.1": Exercise("where the score function wins", _wide_sigma),
    "3.2": Exercise("a fixed baseline", _fixed_baseline),
    "4.1": Exercise("three codes for three clusters", _three_codes),
    "4.2": Exercise("perplexity by hand", _perplexity, ("counts",)),
    "5.1": Exercise("a hot Gumbel-softmax", _gumbel_tau, ("logits",)),
    "5.2": Exercise("how much a token grid saves", _token_ratio),
}


def check_exercise(name: str, answer, **context) -> Verdict:
    """Check the learner's ``answer`` to exercise ``name`` (e.g. ``"1.1"``), print the verdict and return it.

    Defined in Chapter 1.
    """
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; exercises: {', '.join(EXERCISES)}")
    ex = EXERCISES[name]
    missing = [k for k in ex.context if k not in context]
    if missing:
        raise TypeError(f"exercise {name} needs {', '.join(missing)}: check_exercise({name!r}, answer, "
                        + ", ".join(f"{k}=..." for k in ex.context) + ")")
    try:
        passed, message = ex.check(answer, **{k: context[k] for k in ex.context})
    except _NotAnswered as e:
        passed, message = False, str(e)
    verdict = Verdict(name, bool(passed), message)
    print(verdict)
    return verdict
