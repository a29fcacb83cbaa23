import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn as nn
import torchvision

from t2i_lib import metrics
from t2i_lib.experiments.fid_vs_n import fid_vs_sample_size
from t2i_lib.metrics.codebook import codebook_usage
from t2i_lib.metrics.fid import (FeatureStats, compute_fid, fid_from_features, frechet_distance,
                                 inception_feature_fn, trace_sqrt_product, random_feature_fn)
from t2i_lib.metrics.inception import FID_WEIGHTS_URL, FIDInceptionV3
from t2i_lib.metrics.likelihood import bits_per_dim
from t2i_lib.models.blocks import psnr
from t2i_lib.storage.download import DownloadError


# ---------------------------------------------------------------- streaming statistics

@pytest.mark.parametrize("chunks", [[500], [1, 499], [7, 93, 100, 300], [250, 250], [1] * 20 + [480]])
def test_streaming_stats_equal_numpy_regardless_of_chunking(chunks):
    rng = np.random.default_rng(0)
    # a large mean and a small spread: the case where E[xx^T] - mu mu^T loses digits in float32
    x = 1000.0 + rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12)) * 0.01
    s = FeatureStats()
    start = 0
    for i, c in enumerate(chunks):  # numpy arrays and (float64) torch tensors alike
        s.update(torch.from_numpy(x[start:start + c]) if i % 2 else x[start:start + c])
        start += c
    assert s.n == 500
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-15)


def test_feature_stats_merge_save_load_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 5))
    a, b = FeatureStats().update(x[:120]), FeatureStats().update(x[120:])
    a.merge(b)
    np.testing.assert_allclose(a.cov, np.cov(x, rowvar=False), rtol=1e-12)
    a.save(tmp_path / "ref.npz")
    c = FeatureStats.load(tmp_path / "ref.npz")
    assert c.n == 300
    np.testing.assert_allclose(c.cov, a.cov, rtol=1e-14)
    c.update(x[:10])  # a loaded accumulator keeps accumulating correctly
    np.testing.assert_allclose(c.cov, np.cov(np.concatenate([x, x[:10]]), rowvar=False), rtol=1e-12)
    with pytest.raises(ValueError, match=r"\(N, 5\).*\(4, 6\)"):
        a.update(np.zeros((4, 6)))
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats().update(np.zeros((1, 3))).cov


# ---------------------------------------------------------------- the Fréchet distance

def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(closed, rel=1e-10)


def test_frechet_distance_matches_closed_form_for_commuting_covariances():
    # S1 = Q diag(a) Q^T and S2 = Q diag(b) Q^T commute; then (S1 S2)^{1/2} = Q diag(sqrt(ab)) Q^T
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    a, b = rng.uniform(0.2, 4, 8), rng.uniform(0.2, 4, 8)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(closed, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_even_when_singular():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 64))  # N < D: a rank-deficient covariance
    assert abs(fid_from_features(x, x)) < 1e-4
    y = rng.normal(size=(400, 16))
    assert abs(fid_from_features(y, y)) < 1e-8


def test_trace_term_matches_scipy_sqrtm_the_pytorch_fid_way():
    # pytorch-fid: Tr(sqrtm(S1 @ S2)).real, on full-rank covariances where sqrtm needs no offset
    rng = np.random.default_rng(5)
    x1, x2 = rng.normal(size=(400, 30)), rng.normal(size=(300, 30)) @ rng.normal(size=(30, 30))
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    ref = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-10)


def test_singular_covariances_are_exact_without_any_offset():
    # N < D: S = Xc^T Xc / (N - 1) has rank N - 1. The nonzero eigenvalues of S1 S2 are the squared singular
    # values of C = X2c X1c^T / (N - 1), so Tr((S1 S2)^{1/2}) is C's nuclear norm: an independent reference.
    rng = np.random.default_rng(6)
    n, d = 20, 64
    x1, x2 = rng.normal(size=(n, d)), rng.normal(size=(n, d)) + 0.3
    c1, c2 = x1 - x1.mean(0), x2 - x2.mean(0)
    s1, s2 = c1.T @ c1 / (n - 1), c2.T @ c2 / (n - 1)
    nuclear = np.linalg.svd(c2 @ c1.T / (n - 1), compute_uv=False).sum()
    assert trace_sqrt_product(s1, s2) == pytest.approx(nuclear, rel=1e-9)
    # and the FID built on it, against the definition with that reference trace
    fid = np.sum((x1.mean(0) - x2.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * nuclear
    assert fid_from_features(x1, x2) == pytest.approx(fid, rel=1e-9)


def test_inputs_that_are_not_covariances_and_bad_shapes_raise():
    s_bad = np.diag([-1.0, 1.0])  # a negative variance: not a covariance matrix
    with pytest.raises(ValueError, match="positive semi-definite"):
        frechet_distance(np.zeros(2), s_bad, np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="positive semi-definite"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), s_bad)
    with pytest.raises(ValueError, match="symmetric"):
        frechet_distance(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(np.zeros(2), np.array([[1.0, np.nan], [np.nan, 1.0]]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))


# ---------------------------------------------------------------- end to end, with a fixed random conv net

def _random_feature_net(seed=0, dim=32):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(16, dim, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval().requires_grad_(False)
    return lambda x: net(x)


def _image_batches(n, batch, shift, seed):
    g = torch.Generator().manual_seed(seed)
    for i in range(0, n, batch):
        b = min(batch, n - i)
        img = (torch.rand(b, 3, 16, 16, generator=g) * 0.5 + shift).clamp(0, 1)
        yield (img, torch.zeros(b, dtype=torch.long))  # (images, labels) like a DataLoader


def test_compute_fid_end_to_end_with_fixed_random_net():
    fn = _random_feature_net()
    same = compute_fid(_image_batches(300, 64, 0.0, 1), _image_batches(300, 64, 0.0, 2), fn)
    shifted = compute_fid(_image_batches(300, 64, 0.0, 1), _image_batches(300, 64, 0.3, 2), fn)
    assert 0 <= same < 0.1 * shifted
    # streaming in batches gives the same number as stacking all features at once
    feats = lambda it: torch.cat([fn(x) for x, _ in it])  # noqa: E731
    ref = fid_from_features(feats(_image_batches(300, 300, 0.0, 1)), feats(_image_batches(300, 300, 0.3, 2)))
    assert shifted == pytest.approx(ref, rel=1e-6)
    # dict batches, a cached real FeatureStats and max_items
    real = metrics.feature_stats(_image_batches(300, 64, 0.0, 1), fn)
    dicts = ({"image": x, "caption": "c"} for x, _ in _image_batches(300, 64, 0.3, 2))
    assert compute_fid(real, dicts, fn) == pytest.approx(shifted, rel=1e-9)
    capped = metrics.feature_stats(_image_batches(300, 64, 0.0, 1), fn, max_items=100)
    assert capped.n == 100


def test_small_n_covariance_is_rank_deficient_and_fid_is_biased_upwards():
    rng = np.random.default_rng(6)
    d = 32
    a = rng.normal(size=(d, d)) / math.sqrt(d)
    draw = lambda n: rng.normal(size=(n, d)) @ a  # noqa: E731  (one fixed distribution)
    small = FeatureStats().update(draw(16))
    assert np.linalg.matrix_rank(small.cov) == 15  # N - 1 < D: the covariance cannot be full rank
    assert np.linalg.matrix_rank(FeatureStats().update(draw(500)).cov) == d
    fid_small = np.mean([fid_from_features(draw(16), draw(16)) for _ in range(10)])
    fid_large = np.mean([fid_from_features(draw(2000), draw(2000)) for _ in range(10)])
    # both compare a distribution with itself (true FID 0); the small-N estimate is far from it
    assert fid_small > 10 * fid_large


# ---------------------------------------------------------------- the Inception network and its weights

def test_inception_weights_missing_offline_says_what_to_fetch_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("T2I_CACHE", str(tmp_path))
    monkeypatch.setenv("T2I_OFFLINE", "1")
    with pytest.raises(DownloadError) as e:
        inception_feature_fn("cpu", download=True)
    msg = str(e.value)
    assert FID_WEIGHTS_URL in msg
    assert str(tmp_path / "weights" / "pt_inception-2015-12-05-6726825d.pth") in msg
    assert "by hand" in msg
    monkeypatch.delenv("T2I_OFFLINE")
    with pytest.raises(DownloadError, match="allow_download=False"):
        inception_feature_fn("cpu", download=False)
    monkeypatch.setenv("T2I_PROFILE", "quick")
    with pytest.raises(DownloadError, match="allow_download=False"):
        inception_feature_fn("cpu")  # download=None: the quick profile never downloads


def test_fid_inception_matches_the_published_state_dict_layout_and_runs(tmp_path):
    torch.manual_seed(0)
    model = FIDInceptionV3()
    sd = model.state_dict()
    # 94 conv+BN units x 6 entries (weight, BN weight/bias/running mean/var/num_batches_tracked) + fc:
    # the 566 entries recorded for the pytorch-fid file
    assert len(sd) == 566
    assert sd["fc.weight"].shape == (1008, 2048) and sd["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    # the same names and shapes as torchvision's Inception3, whose state dict the pytorch-fid file is
    tv = torchvision.models.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    tv.load_state_dict(sd, strict=True)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    fn = inception_feature_fn("cpu", weights_path=path, batch_size=2)
    f = fn(torch.rand(2, 1, 28, 28))  # grey images are repeated to RGB; any size is resized to 299
    assert f.shape == (2, 2048) and f.dtype == torch.float32 and torch.isfinite(f).all()
    assert (f >= 0).all() and not torch.allclose(f[0], f[1])  # post-ReLU averages, image-dependent
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not the FID Inception"):
        inception_feature_fn("cpu", weights_path=tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*\(2, 4, 8, 8\)"):
        model(torch.rand(2, 4, 8, 8))


# ---------------------------------------------------------------- small metrics

def test_psnr_matches_hand_computation():
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 -> 20 dB
    y[1, 0, 0, 0] = 1.0  # MSE 1/16 -> 10 log10(16) dB
    per = psnr(y, x, reduction="none")
    assert per.tolist() == pytest.approx([20.0, 10 * math.log10(16)], rel=1e-6)
    assert psnr(y, x).item() == pytest.approx((20.0 + 10 * math.log10(16)) / 2, rel=1e-6)
    assert psnr(255 * y, 255 * x, data_range=255.0).item() == pytest.approx(psnr(y, x).item(), rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:1])


def test_codebook_usage_and_bits_per_dim():
    idx = torch.tensor([[0, 0, 0], [1, 3, 3], [3, 3, 0]])  # histogram [4, 1, 0, 4]
    u = codebook_usage(idx, 4)
    p = np.array([4, 1, 4]) / 9
    assert u["perplexity"] == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-6)
    assert u["usage"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        codebook_usage(torch.tensor([4]), 4)
    # 784 dims at exactly 1 bit each = 784 ln 2 nats
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert torch.allclose(bits_per_dim(torch.tensor([0.0, 3072 * math.log(2) * 3.5]), 3072),
                          torch.tensor([0.0, 3.5]))


def test_fid_vs_sample_size_is_biased_at_small_n_and_rank_deficient_below_d():
    rng = np.random.default_rng(0)
    d = 16
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    a, b = rng.normal(size=(3000, d)) @ mix, rng.normal(size=(3000, d)) @ mix  # one distribution, two samples
    ns = [8, 16, 64, 512, 3000]
    curve = fid_vs_sample_size(a, b, ns, repeats=4, seed=0)
    assert curve.ns == ns and curve.dim == d
    # the true FID is 0: the estimate falls steadily with N, and by a lot
    assert np.all(np.diff(curve.mean) < 0)
    assert curve.mean[0] > 20 * curve.mean[-1]
    # the covariance of N samples has rank N - 1 until N exceeds D
    np.testing.assert_array_equal(curve.rank, [7, 15, 16, 16, 16])
    # at the full size every repeat uses every row: the number is the plain FID of the two sets
    assert curve.mean[-1] == pytest.approx(fid_from_features(a, b), rel=1e-9) and curve.std[-1] < 1e-9
    assert len(curve.rows()) == len(ns) and "rank" in curve.rows()[0]
    with pytest.raises(ValueError, match="sample sizes must be in"):
        fid_vs_sample_size(a, b, [1, 10])
    with pytest.raises(ValueError, match="same D"):
        fid_vs_sample_size(a, b[:, :3], [10])


def test_random_feature_fn_is_fixed_and_leaves_the_global_rng_alone():
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    f1, f2, f3 = random_feature_fn(dim=24, seed=0), random_feature_fn(dim=24, seed=0), random_feature_fn(dim=24, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert f1(x).shape == (5, 24)
    torch.testing.assert_close(f1(x), f2(x))
    assert not torch.allclose(f1(x), f3(x))
    # it separates different image distributions: brighter images are far from darker ones
    dark, bright = torch.rand(200, 3, 32, 32) * 0.5, torch.rand(200, 3, 32, 32) * 0.5 + 0.5
    dark2 = torch.rand(200, 3, 32, 32) * 0.5
    assert fid_from_features(f1(dark), f1(bright)) > 10 * fid_from_features(f1(dark), f1(dark2))
