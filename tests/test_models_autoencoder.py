"""Chapter 1's models: PCA, the linear autoencoder that learns PCA's subspace, the report's conv
autoencoder, and the chapter's recipes."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from t2i_lib.models import (AEConfig, ConvAutoencoder, LinearAutoencoder, encode_latents, pca,
                            pca_subspace_angles)
from t2i_lib.profiles import get_profile, seed_everything
from t2i_lib.train.trainer import TrainConfig, train

CPU = get_profile("quick", device="cpu")


def low_rank_data(n_samples=2000, n=20, stds=(3.0, 2.0, 1.5), noise=0.1, seed=0):
    """Points near a 3-D subspace of R^20 (clear gap between the 3rd and 4th variances), off-centre."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(n, len(stds), generator=g))  # (n, 3) orthonormal
    coords = torch.randn(n_samples, len(stds), generator=g) * torch.tensor(stds)
    mean = torch.randn(n, generator=g) * 2
    return coords @ basis.T + noise * torch.randn(n_samples, n, generator=g) + mean  # (N, n)


# ---------------------------------------------------------------------------------------------------
# PCA
# ---------------------------------------------------------------------------------------------------

def test_pca_matches_scikit_learn():
    from sklearn.decomposition import PCA

    X = low_rank_data().double().numpy()
    ours = pca(X, 3)
    ref = PCA(n_components=3, svd_solver="full").fit(X.astype(np.float64))
    # Same directions up to sign, same mean, same variances (sklearn divides by N-1, we by N).
    cos = np.abs(np.sum(ours.components * ref.components_, axis=1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-8)
    np.testing.assert_allclose(ours.mean, ref.mean_, atol=1e-10)
    N = len(X)
    np.testing.assert_allclose(ours.explained_variance, ref.explained_variance_ * (N - 1) / N, rtol=1e-8)
    # Reconstruction error of the projection = the discarded variance, per entry.
    discarded = ours.spectrum[3:].sum() / X.shape[1]
    assert ours.reconstruction_mse(X) == pytest.approx(discarded, rel=1e-8)


def test_pca_both_routes_agree():
    """Covariance route (N >= 2n) and SVD route (N < 2n) give the same answer."""
    X = low_rank_data(n_samples=60).double().numpy()  # 60 x 20: covariance route
    a, b = pca(X, 3), pca(X[:39], 3)  # 39 < 40: SVD route
    b_cov = pca(np.concatenate([X[:39], X[:39]]), 3)  # the same rows twice: same PCA, covariance route
    np.testing.assert_allclose(np.abs(np.sum(b.components * b_cov.components, axis=1)), 1.0, atol=1e-9)
    np.testing.assert_allclose(b.spectrum[:3], b_cov.spectrum[:3], rtol=1e-9)
    assert a.spectrum.shape == (20,) and b.spectrum.shape == (20,)


def test_pca_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be between 1 and"):
        pca(np.zeros((5, 3)), 4)


# ---------------------------------------------------------------------------------------------------
# The linear autoencoder learns PCA's subspace
# ---------------------------------------------------------------------------------------------------

def test_linear_autoencoder_spans_the_pca_subspace():
    X = low_rank_data()
    ref = pca(X, 3)
    seed_everything(0)
    model = LinearAutoencoder(20, 3, mean=X.mean(0))
    before = pca_subspace_angles(model, pca_result=ref).max()
    ds = torch.utils.data.TensorDataset(X, torch.zeros(len(X)))
    train(model, ds, TrainConfig(steps=600, batch_size=128, lr=1e-2, schedule="cosine"), profile=CPU,
          progress=False)
    angles = pca_subspace_angles(model, X)  # degrees, largest first
    assert before > 30, "a random decoder should be far from the PCA subspace (else the test proves nothing)"
    assert angles.max() < 5.0, f"principal angles to the PCA subspace: {angles}"
    with torch.no_grad():
        mse = model.loss((X, None))[0].item()
    # PCA's error is the least any rank-3 linear map can reach; the autoencoder gets within 0.1% of the
    # data's variance of it (the errors are small: the noise is all that is left).
    pca_mse, per_entry_var = ref.reconstruction_mse(X.numpy()), ref.total_variance / X.shape[1]
    assert pca_mse * (1 - 1e-4) <= mse < pca_mse + 1e-3 * per_entry_var
    # The subspace is PCA's, but the decoder's columns are not the orthonormal principal axes.
    W = model.decoder.weight.detach().double().numpy()  # (n, k)
    assert not np.allclose(W.T @ W, np.eye(3), atol=0.05)


def test_pca_subspace_angles_checks_sizes():
    model = LinearAutoencoder(20, 3)
    with pytest.raises(ValueError, match=r"expected \(3, 20\)"):
        pca_subspace_angles(model, pca_result=pca(low_rank_data(), 2))


def test_linear_autoencoder_shapes_and_errors():
    model = LinearAutoencoder(64, 4)
    assert model.encode(torch.rand(5, 1, 8, 8)).shape == (5, 4)
    assert model.encode(torch.rand(5, 64)).shape == (5, 4)
    assert model.decode(torch.rand(5, 4)).shape == (5, 64)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 64\).*got shape \(5, 1, 28, 28\)"):
        model.encode(torch.rand(5, 1, 28, 28))
    with pytest.raises(ValueError, match=r"latents of shape \(B, 4\); got shape \(5, 3\)"):
        model.decode(torch.rand(5, 3))
    x = torch.rand(5, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the trainer's mixed precision is switched off inside
        loss, _ = model.loss((x, None))
    assert loss.dtype == torch.float32 and loss.item() == model.loss((x, None))[0].item()
    with pytest.raises(ValueError, match="mean must have n_in=64"):
        LinearAutoencoder(64, 4, mean=torch.zeros(10))


# ---------------------------------------------------------------------------------------------------
# The convolutional autoencoder
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg, shape", [
    (AEConfig(), (1, 28, 28)),
    (AEConfig(latent_dim=2), (1, 28, 28)),
    (AEConfig(in_channels=3, image_size=32, latent_dim=8), (3, 32, 32)),
    (AEConfig(image_size=32, widths=(8, 16, 32)), (1, 32, 32)),
])
def test_conv_autoencoder_shapes(cfg, shape):
    model = ConvAutoencoder(cfg)
    x = torch.rand(3, *shape)
    z = model.encode(x)
    assert z.shape == (3, cfg.latent_dim)
    y = model.decode(z)
    assert y.shape == (3, *shape) and 0 <= y.min() and y.max() <= 1
    loss, metrics = model.loss((x, torch.zeros(3)))
    assert loss.shape == () and loss.requires_grad and set(metrics) == {"mse"}


def test_conv_autoencoder_follows_the_report_architecture():
    model = ConvAutoencoder(AEConfig(latent_dim=16))
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(32, (3, 3), (2, 2)), (64, (3, 3), (2, 2))]
    tconvs = [m for m in model.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.kernel_size, c.stride) for c in tconvs] == [((3, 3), (2, 2))] * 2
    assert isinstance(model.decoder[-1], torch.nn.Conv2d) and model.decoder[-1].out_channels == 1


def test_conv_autoencoder_shape_errors_say_expected_and_received():
    model = ConvAutoencoder(AEConfig(latent_dim=4))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\); got shape \(2, 3, 28, 28\).*in_channels=1"):
        model.encode(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 32, 32\).*image_size=28"):
        model.encode(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"got shape \(1, 28, 28\).*unsqueeze\(0\)"):
        model.encode(torch.rand(1, 28, 28))
    with pytest.raises(ValueError, match=r"latents of shape \(B, 4\); got shape \(2, 16\)"):
        model.decode(torch.rand(2, 16))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\); got shape \(2, 784\)"):
        model.loss((torch.rand(2, 784), None))  # flat rows: the conv model needs images
    with pytest.raises(ValueError, match="divisible by 2\\*\\*len\\(widths\\) = 4"):
        AEConfig(image_size=30)
    with pytest.raises(ValueError, match="recon must be one of"):
        AEConfig(recon="l1")


def test_recon_losses():
    torch.manual_seed(0)
    model = ConvAutoencoder(AEConfig(latent_dim=4, recon="mse"))
    x = torch.rand(4, 1, 28, 28)
    loss, m = model.loss((x, None))
    assert loss.item() == pytest.approx(torch.mean((model(x) - x) ** 2).item(), rel=1e-5)
    assert m["mse"].item() == pytest.approx(loss.item())
    model.cfg.recon = "bce"
    loss, _ = model.loss((x, None))
    xh = model(x).double()
    ref = -(x * xh.log() + (1 - x) * (1 - xh).log()).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-4)
    # BCE from logits is allowed (and finite) under autocast, where F.binary_cross_entropy is not.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model.loss((x, None))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_conv_autoencoder_learns_digits():
    """A few hundred steps on Digits: test-set MSE well below the mean-image baseline (~0.047)."""
    from t2i_lib.data import get_dataset

    train_set, test_set = get_dataset("digits", profile=CPU), get_dataset("digits", "test", profile=CPU)
    baseline = torch.mean((test_set.images - train_set.images.mean(0)) ** 2).item()
    seed_everything(0)
    model = ConvAutoencoder(AEConfig(latent_dim=16))
    hist = train(model, train_set, TrainConfig(steps=200, batch_size=32, lr=3e-3, schedule="cosine", warmup_steps=20),
                 profile=CPU, eval_dataset=test_set, progress=False)
    first, last = hist.series("mse")[1][0], hist.last("mse", "eval")
    assert last < 0.015 and last < baseline / 3, f"eval MSE {last:.4f} (mean-image baseline {baseline:.4f})"
    assert last < first / 3
    z, y = encode_latents(model, test_set)
    assert z.shape == (len(test_set), 16) and y.shape == (len(test_set),)
