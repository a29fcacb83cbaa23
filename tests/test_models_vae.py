"""Chapter 2's VAEs: the report's MNIST VAE, the ResNet-50 VAE, the ELBO's pieces against torch's
distributions, beta / free bits / KL warm-up, and the active-unit count."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence

from t2i_lib.data import get_dataset
from t2i_lib.models.blocks import psnr
from t2i_lib.models.vae import (ConvVAE, KLWarmup, ResNetVAE, SpatialVAE, VAEConfig, active_units,
                                kl_standard_normal, latent_stats)
from t2i_lib.profiles import get_profile
from t2i_lib.train.trainer import TrainConfig, evaluate, train

CPU = get_profile("quick", device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def images(n=8, size=28, seed=0):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------
# The ELBO's pieces
# ---------------------------------------------------------------------------------------------------

def test_kl_standard_normal_matches_torch():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros(()), torch.ones(())))
    torch.testing.assert_close(kl_standard_normal(mu, logvar), ref)
    assert kl_standard_normal(torch.zeros(3), torch.zeros(3)).abs().max() == 0


def test_convvae_shapes_and_metrics():
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(latent_dim=5))
    x = images(4)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (4, 5)
    assert vae.decode(mu).shape == (4, 1, 28, 28)
    assert vae(x).min() >= 0 and vae(x).max() <= 1
    assert vae.sample(3).shape == (3, 1, 28, 28)
    loss, m = vae.loss((x, torch.zeros(4)))
    assert loss.shape == ()
    assert {"recon", "kl", "elbo", "bpd", "beta", "kl0", "kl4"} <= set(m)
    assert "kl5" not in m
    torch.testing.assert_close(m["elbo"], -(m["recon"] + m["kl"]))
    torch.testing.assert_close(m["bpd"], -m["elbo"] / (784 * math.log(2)))
    torch.testing.assert_close(sum(m[f"kl{i}"] for i in range(5)), m["kl"])
    torch.testing.assert_close(loss.detach(), m["recon"] + m["kl"])  # beta = 1, no free bits: loss = -ELBO


def test_follows_the_report_architecture():
    vae = ConvVAE(VAEConfig(latent_dim=16))
    convs = [m for m in vae.encoder if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(32, (3, 3), (2, 2)), (64, (3, 3), (2, 2))]
    deconvs = [m for m in vae.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert [(d.out_channels, d.stride) for d in deconvs] == [(32, (2, 2)), (1, (2, 2))]
    assert vae.fc_mu.in_features == vae.fc_logvar.in_features == 64 * 7 * 7


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_recon_is_the_negative_log_likelihood(likelihood):
    torch.manual_seed(1)
    vae = ConvVAE(latent_dim=3, likelihood=likelihood, gaussian_std=0.2)
    x = (images(4) > 0.5).float()
    logits = torch.randn(4, 1, 28, 28)
    ours = vae.neg_log_likelihood(logits, x)
    if likelihood == "bernoulli":
        ref = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    else:
        ref = -Normal(torch.sigmoid(logits), 0.2).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(ours, ref)


def test_beta_and_free_bits_change_the_loss_not_the_elbo():
    x = images(6)
    vae = ConvVAE(latent_dim=4)
    torch.manual_seed(3)
    _, m1 = vae.loss(x)
    vae.beta = 0.0
    torch.manual_seed(3)
    loss0, m0 = vae.loss(x)
    torch.testing.assert_close(loss0.detach(), m0["recon"])  # beta = 0: the plain reconstruction loss
    torch.testing.assert_close(m0["elbo"], m1["elbo"])  # the reported ELBO ignores beta
    vae.beta, vae.free_bits = 2.0, 50.0  # an allowance far above every dimension's KL
    torch.manual_seed(3)
    loss_fb, m_fb = vae.loss(x)
    torch.testing.assert_close(loss_fb.detach(), m_fb["recon"] + 2.0 * 4 * 50.0)
    # ... and under the allowance the KL term sends no gradient into the encoder's variance head
    vae.zero_grad()
    torch.manual_seed(3)
    mu, logvar = vae.encode(x)
    vae.loss(x)[0].backward()
    recon_only = vae.fc_logvar.weight.grad.clone()
    vae.zero_grad()
    vae.free_bits, vae.beta = 0.0, 0.0
    torch.manual_seed(3)
    vae.loss(x)[0].backward()
    torch.testing.assert_close(vae.fc_logvar.weight.grad, recon_only)


def test_binarize_makes_zero_one_targets():
    vae = ConvVAE(latent_dim=2, binarize=True)
    x = vae.prepare(torch.full((2, 1, 28, 28), 0.3))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert 0.2 < x.mean() < 0.4


def test_bad_inputs_say_what_was_expected():
    vae = ConvVAE(latent_dim=4)
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 1, 28, 28\); got shape \(1, 28, 28\).*unsqueeze"):
        vae.encode(torch.zeros(1, 28, 28))
    with pytest.raises(ValueError, match=r"expects latents of shape \(B, 4\); got shape \(2, 3\)"):
        vae.decode(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="likelihood must be one of"):
        VAEConfig(likelihood="poisson")
    with pytest.raises(ValueError, match="divisible by 2\\*\\*len\\(widths\\)"):
        VAEConfig(image_size=30)


# ---------------------------------------------------------------------------------------------------
# Training: the ELBO improves, past what a model that ignores z can reach
# ---------------------------------------------------------------------------------------------------

def test_training_beats_the_best_model_without_a_latent():
    """A VAE whose decoder ignored z could at best model each pixel independently. On (dynamically
    binarised) Digits that best independent-pixel model has a known log-likelihood; a trained VAE's test
    ELBO, a *lower* bound on its log-likelihood, must beat it."""
    train_set = get_dataset("digits", "train", profile=CPU, image_size=16)
    test_set = get_dataset("digits", "test", profile=CPU, image_size=16)
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(image_size=16, latent_dim=8, binarize=True))
    before = evaluate(vae, test_set, batch_size=360, profile=CPU)
    train(vae, train_set, TrainConfig(steps=150, batch_size=64, lr=3e-3, log_every=50), profile=CPU,
          progress=False)
    after = evaluate(vae, test_set, batch_size=360, profile=CPU)
    # The independent-pixel model: p_j = mean of pixel j over the training images (the MLE under dynamic
    # binarisation); its expected log-likelihood of a binarised test image has a closed form.
    p = train_set.images.mean(0).clamp(1e-4, 1 - 1e-4)  # (1, 16, 16)
    q = test_set.images  # (N, 1, 16, 16): probability that each test pixel is 1
    indep = float((q * p.log() + (1 - q) * (1 - p).log()).flatten(1).sum(1).mean())
    assert after["elbo"] > before["elbo"] + 50
    assert after["elbo"] > indep + 3, (after["elbo"], indep)


def test_kl_warmup_ramps_beta():
    train_set = get_dataset("digits", "train", profile=CPU, image_size=8)
    vae = ConvVAE(VAEConfig(image_size=8, latent_dim=2, beta=3.0))
    warm = KLWarmup(vae, steps=4, beta=3.0)
    assert vae.beta == 0.0
    hist = train(vae, train_set, TrainConfig(steps=6, batch_size=16, lr=1e-3, log_every=1), profile=CPU,
                 callbacks=[warm], progress=False)
    assert hist.series("beta")[1] == pytest.approx([0.0, 0.75, 1.5, 2.25, 3.0, 3.0])
    assert vae.beta == 3.0


# ---------------------------------------------------------------------------------------------------
# Active units
# ---------------------------------------------------------------------------------------------------

class LinearGaussianEncoder(nn.Module):
    """encode(x) = (x_flat @ A, 0): every latent dimension is a linear function of the input."""

    def __init__(self, n_in, k, informative=True):
        super().__init__()
        self.A = nn.Parameter(torch.randn(n_in, k, generator=torch.Generator().manual_seed(0)) * (1.0 if informative else 0.0))
        self.b = nn.Parameter(torch.randn(k, generator=torch.Generator().manual_seed(1)))

    def encode(self, x):
        mu = x.flatten(1) @ self.A + self.b  # (B, k)
        return mu, torch.zeros_like(mu)


def test_active_units_counts_informative_dimensions():
    x = torch.randn(200, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    assert active_units(LinearGaussianEncoder(16, 5), x) == 5
    assert active_units(LinearGaussianEncoder(16, 5, informative=False), x) == 0
    # a real VAE whose encoder ignores its input: zero the mean head's weights
    vae = ConvVAE(latent_dim=6)
    with torch.no_grad():
        vae.fc_mu.weight.zero_()
    test_set = get_dataset("digits", "test", profile=CPU)
    stats = latent_stats(vae, test_set)
    assert stats.n_active == 0 and stats.mean_variance.max() < 1e-12
    assert active_units(ConvVAE(latent_dim=6), test_set, threshold=0.0) == 6


def test_latent_stats_kl_matches_direct_computation():
    enc = LinearGaussianEncoder(16, 3)
    x = torch.randn(50, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    stats = latent_stats(enc, x, batch_size=16)
    mu, logvar = enc.encode(x)
    torch.testing.assert_close(stats.kl_per_dim, kl_standard_normal(mu, logvar).mean(0).detach())
    torch.testing.assert_close(stats.mean_variance, mu.var(0).detach())


# ---------------------------------------------------------------------------------------------------
# The ResNet-50 VAE (weights=None: nothing is downloaded)
# ---------------------------------------------------------------------------------------------------

def test_resnet_vae_shapes_and_a_training_step():
    torch.manual_seed(0)
    vae = ResNetVAE(image_size=32, latent_dim=8, decoder_width=32)
    assert not vae.cfg.freeze_encoder  # random weights: train the trunk too
    x = torch.rand(2, 3, 32, 32)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (2, 8)
    assert vae.decode(mu).shape == (2, 3, 32, 32)
    loss, m = vae.loss((x, torch.zeros(2)))
    assert torch.isfinite(loss) and {"elbo", "bpd", "kl7"} <= set(m)
    loss.backward()
    assert vae.trunk[0].weight.grad is not None
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, 32, 32\)"):
        vae.encode(torch.rand(2, 1, 32, 32))


def test_resnet_vae_frozen_trunk_keeps_batchnorm_statistics():
    vae = ResNetVAE(image_size=32, latent_dim=4, decoder_width=16, freeze_encoder=True).train()
    assert not any(p.requires_grad for p in vae.trunk.parameters())
    assert not vae.trunk.training and vae.decoder.training
    before = vae.trunk[1].running_mean.clone()
    vae.loss(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(vae.trunk[1].running_mean, before)


def test_spatial_vae_shapes_latent_size_and_errors():
    vae = SpatialVAE()
    assert vae.cfg.latent_dim == 2 * 8 * 8 == 128  # as many latent numbers as the ResNet VAE's default
    x = torch.rand(3, 3, 32, 32)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (3, 128)
    out = vae(x)
    assert out.shape == (3, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert vae.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 32, 32)
    loss, m = vae.loss((x, torch.zeros(3)))
    assert torch.isfinite(loss) and m["elbo"] == pytest.approx(-(m["recon"] + m["kl"]).item(), rel=1e-6)
    # Shapes-style dict batches too; the KL has no sampling noise, so it is the same number
    assert vae.loss({"image": x})[1]["kl"].item() == pytest.approx(m["kl"].item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        vae.encode(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 128\)"):
        vae.decode(torch.zeros(2, 64))
    with pytest.raises(ValueError, match="multiple of 4"):
        SpatialVAE(image_size=30)


def test_spatial_vae_latent_cells_are_local():
    """What makes it spatial: a latent cell only reaches the pixels around its own 4x4 patch. The decoder
    (3x3 conv, then two 4x4 stride-2 transposed convs) gives cell (i, j) a reach of rows 4i-7 .. 4i+10."""
    torch.manual_seed(0)
    vae = SpatialVAE()
    z = torch.randn(1, 128)
    jac = torch.autograd.functional.jacobian(lambda zz: vae.decode(zz).sum(1)[0], z)  # (32, 32, 1, 128)
    jac = jac[:, :, 0].reshape(32, 32, 2, 8, 8)  # d pixel / d z[channel, row, col]
    for i, j in [(0, 0), (3, 4), (7, 7)]:
        touched = jac[:, :, :, i, j].abs().sum(-1) > 0  # (32, 32): the pixels cell (i, j) influences
        rows, cols = touched.any(1).nonzero().flatten(), touched.any(0).nonzero().flatten()
        assert touched.any()
        assert rows.min() >= 4 * i - 7 and rows.max() <= 4 * i + 10, (i, rows.tolist())
        assert cols.min() >= 4 * j - 7 and cols.max() <= 4 * j + 10, (j, cols.tolist())
        assert touched.sum() <= 18 * 18  # a small window, never the whole 32 x 32 image


def test_spatial_vae_training_uses_its_latent():
    """600 updates on Shapes: the reconstructions must beat the best image that ignores the input (the
    training set's mean image) by 2 dB, with the KL showing that z carries information. Measured with
    3 seeds: 18.4-18.7 dB against 15.0 dB, KL 113-136 nats."""
    tr = get_dataset("shapes", "train", profile=CPU, image_size=32, length=1024)
    te = get_dataset("shapes", "test", profile=CPU, image_size=32, length=256)
    x = torch.stack([te[i]["image"] for i in range(256)])
    mean_image = torch.stack([tr[i]["image"] for i in range(1024)]).mean(0, keepdim=True).expand_as(x)
    torch.manual_seed(0)
    vae = SpatialVAE(width=32)
    train(vae, tr, TrainConfig(steps=600, batch_size=32, lr=3e-3, schedule="cosine", warmup_steps=20, log_every=50),
          profile=CPU, progress=False)
    res = evaluate(vae, te, batch_size=256, profile=CPU)
    with torch.no_grad():
        rec = vae.eval()(x)
    assert psnr(rec, x) > psnr(mean_image, x) + 2.0
    assert res["kl"] > 50
