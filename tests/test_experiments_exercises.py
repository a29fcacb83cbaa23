"""Every exercise can be done: its check passes on the intended answer, computed here the way its hidden
solution computes it, and fails on wrong or missing answers, with a message that says what is off."""

from __future__ import annotations

import math

import pytest
import torch

from t2i_lib.data import get_dataset
from t2i_lib.experiments.exercises import EXERCISES, check_exercise
from t2i_lib.models import VectorQuantizer, pca, stack_dataset
from t2i_lib.models.ppca import PPCA
from t2i_lib.models.quantize import codebook_stats

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def digits():
    X, _ = stack_dataset(get_dataset("digits", "train", profile="quick"))
    return X


def clusters():  # Chapter 4's three clusters of 2-D "encoder outputs"
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return centres[torch.randint(0, 3, (300,), generator=g)] + 0.35 * torch.randn(300, 2, generator=g)


def test_1_1_smallest_k_below_the_bound(digits):
    spectrum = pca(digits, 1).spectrum
    k = next(j for j in range(1, 785) if spectrum[j:].sum() / 784 < 0.005)  # the solution's search
    assert pca(digits, k).reconstruction_mse(digits) < 0.005 <= pca(digits, k - 1).reconstruction_mse(digits)
    assert check_exercise("1.1", k, X_train=digits)
    assert not check_exercise("1.1", k - 1, X_train=digits)
    assert not check_exercise("1.1", None, X_train=digits)


def test_1_2_fraction_of_variance(digits):
    r = pca(digits, 10)
    frac = float(r.explained_variance.sum() / r.total_variance)
    assert check_exercise("1.2", frac, pca_result=r)
    wrong = check_exercise("1.2", 100 * frac, pca_result=r)
    assert not wrong and "a fraction, not a percentage" in wrong.message


def test_2_1_gap_equals_kl():
    X = get_dataset("digits", "train", profile="quick", image_size=8).images.flatten(1).double()
    model = PPCA.fit(X, k=4)
    x = X[0]
    m, S = model.posterior(x)
    gap = float(model.log_marginal(x) - model.elbo(x, m + 0.2, 2 * S))
    assert check_exercise("2.1", gap, model=model, x=x)
    assert not check_exercise("2.1", float(model.log_marginal(x) - model.elbo(x, m + 0.2, S)), model=model, x=x)


def test_2_2_bits_per_dimension():
    assert check_exercise("2.2", 284.6 / (784 * math.log(2)), elbo=-284.6, dims=784)
    assert "the sign" in check_exercise("2.2", -284.6 / (784 * math.log(2)), elbo=-284.6, dims=784).message


def test_3_1_and_3_2_estimators():
    assert check_exercise("3.1", 2.0) and not check_exercise("3.1", 0.3)
    b = math.sin(1.0) * math.exp(-0.3 ** 2 / 2)  # E[sin z] for z ~ N(1, 0.3^2): the solution's baseline
    assert check_exercise("3.2", b) and not check_exercise("3.2", 0.0)


def test_4_1_three_codes_and_4_2_perplexity():
    z = clusters()
    torch.manual_seed(0)
    q = VectorQuantizer(num_codes=3, dim=2, channels_last=True, kmeans_init=True)
    out = q(z[None])  # training mode: k-means on this first call
    err = (out.quantized - z[None]).pow(2).sum(-1).mean().item()
    assert check_exercise("4.1", err)
    plain = VectorQuantizer(num_codes=3, dim=2, channels_last=True).eval()
    assert not check_exercise("4.1", (plain(z[None]).quantized - z[None]).pow(2).sum(-1).mean().item())
    counts = torch.bincount(out.indices.flatten(), minlength=3)
    p = counts.double() / counts.sum()
    ppl = float(torch.exp(-(p * p.log()).sum()))
    assert abs(ppl - float(codebook_stats(counts)["perplexity"])) < 1e-5
    assert check_exercise("4.2", ppl, counts=counts) and not check_exercise("4.2", 3.0, counts=counts)


def test_5_1_and_5_2():
    logits = torch.tensor([2.0, 0.5, -1.0, 0.0, 1.0])
    assert check_exercise("5.1", 4.0, logits=logits) and not check_exercise("5.1", 1.0, logits=logits)
    assert check_exercise("5.2", 64 * 64 * 3 * 8 / (16 * 16 * math.log2(1024)))
    assert not check_exercise("5.2", 192)


def test_every_exercise_is_tested_and_bad_calls_say_what_to_do():
    tested = {"1.1", "1.2", "2.1", "2.2", "3.1", "3.2", "4.1", "4.2", "5.1", "5.2"}
    assert set(EXERCISES) == tested
    with pytest.raises(KeyError, match="exercises: 1.1"):
        check_exercise("9.9", 1)
    with pytest.raises(TypeError, match=r"needs X_train: check_exercise\('1.1', answer, X_train=...\)"):
        check_exercise("1.1", 3)
    assert "should be a number" in check_exercise("3.1", "wide").message
