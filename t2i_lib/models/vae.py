"""Variational autoencoders: the report's MNIST VAE, its ResNet-50 CIFAR-10 VAE, and the tools to watch
their latent spaces collapse.

A VAE's encoder outputs a Gaussian q(z | x) = N(mu, diag(exp(logvar))) instead of a point; a sample
z = mu + exp(logvar / 2) * eps (the reparameterisation, Chapter 3) goes through the decoder, which gives
the parameters of p(x | z). Training maximises the evidence lower bound (ELBO), per image::

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || N(0, I))   <=   log p(x)
              (- reconstruction)     (the regulariser)

Contents, top to bottom:

- :func:`kl_standard_normal`: the KL of a diagonal Gaussian to N(0, I), per dimension, in closed form.
- :class:`VAEBase`: the loss every VAE here shares (likelihoods, beta, free bits, the metrics).
- :class:`VAEConfig` and :class:`ConvVAE`: the report's MNIST network (§2.1.1, its Figure 1).
- :class:`ResNetVAEConfig` and :class:`ResNetVAE`: the report's CIFAR-10 model (§2.1.1, Figure 15):
  a ResNet-50 trunk as encoder, two linear layers to mu and logvar, a decoder trained from scratch.
- :class:`SpatialVAEConfig` and :class:`SpatialVAE`: a VAE better suited to small colour images, whose
  latent is an 8x8 map rather than one vector; Chapter 2 sets it beside the ResNet-50 VAE.
- :class:`KLWarmup`: a training callback that ramps beta from 0 to its target.
- :func:`latent_stats` / :func:`active_units`: KL per latent dimension and the active-unit count.

All three models follow the model contract (``loss(batch) -> (loss, metrics)``); ``batch`` is
``(images, labels)`` as the Digits / MNIST / CIFAR-10 loaders yield it (labels are ignored), or a
Shapes-style dict with an ``image`` key.

Defined in Chapter 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from t2i_lib.data.batches import images_of
from t2i_lib.models.blocks import IMAGENET_MEAN, IMAGENET_STD
from t2i_lib.models.checks import check_conv_geometry
from t2i_lib.models.config import resolve_config

LIKELIHOODS = ("bernoulli", "gaussian")


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ) per dimension, in nats: (B, k), (B, k) -> (B, k).

        KL_i = 1/2 ( mu_i^2 + exp(logvar_i) - 1 - logvar_i )

    Sum over the last dimension for the KL of the whole code. Defined in Chapter 2.
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I): a sample of q(z | x) that gradients flow through. Defined in Chapter 2."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _check_likelihood(likelihood: str) -> str:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return likelihood


class VAEBase(nn.Module):
    """The ELBO machinery shared by :class:`ConvVAE` and :class:`ResNetVAE`.

    A subclass provides ``encode(x) -> (mu, logvar)`` (each (B, k)), ``decode_logits(z) -> (B, C, H, W)``
    and ``self.cfg`` with the fields ``latent_dim``, ``likelihood``, ``gaussian_std``, ``binarize``,
    ``beta`` and ``free_bits``.

    ``beta`` and ``free_bits`` are plain attributes, copied from the config, so a callback can change
    them while training (:class:`KLWarmup` sets ``model.beta`` every step).

    Defined in Chapter 2.
    """

    cfg: "VAEConfig"

    def _init_objective(self):
        _check_likelihood(self.cfg.likelihood)
        self.beta = float(self.cfg.beta)  # weight of the KL term; 1 is the ELBO itself
        self.free_bits = float(self.cfg.free_bits)  # nats per latent dimension the KL may use for free

    # ------------------------------------------------------------------ the pieces
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The data the likelihood models. With ``binarize``, each pixel becomes 1 with probability equal to
        its intensity, freshly every time (dynamic binarisation, the usual protocol for binarised MNIST);
        the Bernoulli likelihood is then an honest probability of discrete data."""
        if self.cfg.binarize:
            return torch.bernoulli(x.float().clamp(0, 1)).to(x.dtype)
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, k) -> the mean of p(x | z): images (B, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct through the posterior mean (no sampling): (B, C, H, W) -> (B, C, H, W) in [0, 1]."""
        mu, _ = self.encode(x)
        return self.decode(mu)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Generate: z ~ N(0, I), decoded to the mean image. Returns (n, C, H, W) in [0, 1]."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.cfg.latent_dim, generator=generator).to(device)
        return self.decode(z)

    def neg_log_likelihood(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) in nats per image, summed over pixels: logits (B, C, H, W), x (B, C, H, W) -> (B,).

        bernoulli: each pixel is a coin with probability sigmoid(logit); -log p is the binary cross-entropy.
            A proper probability only for 0/1 data (use ``binarize``); on grey pixels it is still a fine
            training loss, but its value is not a log-likelihood.
        gaussian: each pixel is N(sigmoid(logit), gaussian_std^2); -log p is the squared error scaled by
            1 / (2 std^2) plus a constant. A density, not a probability: its "nats" can be negative and
            are not comparable with discrete likelihoods.
        """
        logits, x = logits.float(), x.float()  # fp32 even under autocast: these sums run to hundreds
        if self.cfg.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        else:
            s = float(self.cfg.gaussian_std)
            nll = 0.5 * (x - torch.sigmoid(logits)) ** 2 / s ** 2 + 0.5 * math.log(2 * math.pi * s ** 2)
        return nll.flatten(1).sum(1)

    # ------------------------------------------------------------------ the objective
    def loss(self, batch):
        """The negative ELBO (weighted by beta, with free bits if set), per image, and the metrics.

        Metrics, all per image and in nats unless said otherwise: ``recon`` = -E_q log p(x | z) (one
        sample), ``kl`` = KL(q || p(z)), ``elbo`` = -(recon + kl) (the true ELBO whatever beta and free bits
        are), ``bpd`` = -elbo / (D ln 2) in bits per dimension (D = C*H*W), ``beta``, and ``kl0``, ``kl1``,
        ... the KL of each latent dimension.
        """
        x = self.prepare(images_of(batch))  # (B, C, H, W)
        mu, logvar = self.encode(x)  # (B, k) each
        mu, logvar = mu.float(), logvar.float()
        z = reparameterize(mu, logvar)  # (B, k)
        nll = self.neg_log_likelihood(self.decode_logits(z), x)  # (B,)
        kl_dims = kl_standard_normal(mu, logvar)  # (B, k)
        kl = kl_dims.sum(1)  # (B,)
        kl_per_dim = kl_dims.mean(0)  # (k,)
        if self.free_bits > 0:
            # Free bits (Kingma et al., 2016): a dimension whose batch-mean KL is under the allowance pays
            # the allowance instead, a constant with no gradient, so nothing pushes it further towards the
            # prior. The allowance is per dimension, averaged over the batch, not per image.
            kl_term = kl_per_dim.clamp(min=self.free_bits).sum()
        else:
            kl_term = kl_per_dim.sum()
        loss = nll.mean() + self.beta * kl_term
        elbo = -(nll + kl).mean()
        D = x[0].numel()
        metrics = {"recon": nll.mean().detach(), "kl": kl.mean().detach(), "elbo": elbo.detach(),
                   "bpd": (-elbo / (D * math.log(2))).detach(), "beta": self.beta}
        metrics.update({f"kl{i}": v for i, v in enumerate(kl_per_dim.detach())})
        return loss, metrics

    def _check_latent(self, z: torch.Tensor) -> None:
        if z.dim() != 2 or z.shape[1] != self.cfg.latent_dim:
            raise ValueError(f"{type(self).__name__}.decode expects latents of shape (B, {self.cfg.latent_dim}); "
                             f"got shape {tuple(z.shape)}")

    def _check_images(self, x: torch.Tensor, c: int, s: int) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, s, s):
            hint = " (a single image: add the batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
            raise ValueError(f"{type(self).__name__} expects images of shape (B, {c}, {s}, {s}); "
                             f"got shape {tuple(x.shape)}{hint}")


# ----------------------------------------------------------------------------------------------
# The report's MNIST VAE
# ----------------------------------------------------------------------------------------------

@dataclass
class VAEConfig:
    in_channels: int = 1  # 1 for Digits / MNIST
    image_size: int = 28  # must be divisible by 2 ** len(widths)
    latent_dim: int = 16  # size of z
    widths: tuple[int, ...] = (32, 64)  # channels of the stride-2 conv layers (the report: 32 then 64)
    likelihood: str = "bernoulli"  # "bernoulli" (BCE, for 0/1-ish pixels) or "gaussian" (MSE with a fixed std)
    gaussian_std: float = 0.1  # the Gaussian likelihood's pixel std (smaller: sharper, and a weaker KL pull)
    binarize: bool = False  # resample pixels as 0/1 coins each batch, so the Bernoulli ELBO is a real bound
    beta: float = 1.0  # weight of the KL term (1: the ELBO; > 1: the beta-VAE; a callback may change it)
    free_bits: float = 0.0  # nats per latent dimension the KL term does not charge (0: off)

    def __post_init__(self):
        _check_likelihood(self.likelihood)
        self.widths = check_conv_geometry(self.image_size, self.widths, self.latent_dim)
        if self.beta < 0 or self.free_bits < 0 or self.gaussian_std <= 0:
            raise ValueError("beta and free_bits must be >= 0 and gaussian_std > 0")

    @property
    def bottom_size(self) -> int:
        """Side of the smallest feature map: 28 -> 14 -> 7 with two stride-2 layers."""
        return self.image_size // 2 ** len(self.widths)


class ConvVAE(VAEBase):
    """The report's MNIST VAE (§2.1.1, its Figure 1).

    Layout::

        encode: (B, C, S, S) -> [conv 3x3 stride 2 + ReLU] x 2 (32, 64 channels) -> (B, 64, S/4, S/4)
                -> flatten -> two linear heads -> mu (B, k), logvar (B, k)
        sample: z = mu + exp(logvar / 2) * eps
        decode: z -> linear + ReLU -> unflatten (B, 64, S/4, S/4) -> transposed conv 3x3 stride 2 + ReLU
                (64 -> 32) -> transposed conv 3x3 stride 2 (32 -> C) -> logits; sigmoid for the image

    Chapter 1's autoencoder has one extra 3x3 convolution at the end of the decoder; this one follows the
    report's figure, where the second transposed convolution outputs the image channels directly.

    Defined in Chapter 2.
    """

    def __init__(self, cfg: VAEConfig | None = None, **overrides):
        super().__init__()
        cfg = resolve_config(VAEConfig, cfg, overrides)
        self.cfg = cfg
        self._init_objective()
        c, s, w = cfg.in_channels, cfg.bottom_size, cfg.widths

        layers, ch = [], c
        for width in w:
            layers += [nn.Conv2d(ch, width, 3, stride=2, padding=1), nn.ReLU()]  # halves the side
            ch = width
        self.encoder = nn.Sequential(*layers, nn.Flatten())  # (B, w[-1] * s * s)
        feat = w[-1] * s * s
        self.fc_mu = nn.Linear(feat, cfg.latent_dim)
        self.fc_logvar = nn.Linear(feat, cfg.latent_dim)

        dec = [nn.Linear(cfg.latent_dim, feat), nn.ReLU(), nn.Unflatten(1, (w[-1], s, s))]
        outs = list(reversed(w[:-1])) + [c]  # (32, C) for widths (32, 64)
        for i, out in enumerate(outs):
            # kernel 3, stride 2, padding 1, output_padding 1: exactly doubles the side (7 -> 14 -> 28)
            dec.append(nn.ConvTranspose2d(ch, out, 3, stride=2, padding=1, output_padding=1))
            if i < len(outs) - 1:
                dec.append(nn.ReLU())
            ch = out
        self.decoder = nn.Sequential(*dec)  # logits; the sigmoid is in decode()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) -> (mu (B, k), logvar (B, k))."""
        self._check_images(x, self.cfg.in_channels, self.cfg.image_size)
        h = self.encoder(x)  # (B, F)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """(B, k) -> (B, C, S, S) pre-sigmoid values."""
        self._check_latent(z)
        return self.decoder(z)


# ----------------------------------------------------------------------------------------------
# The report's CIFAR-10 VAE with a ResNet-50 encoder
# ----------------------------------------------------------------------------------------------



@dataclass
class ResNetVAEConfig:
    image_size: int = 32  # CIFAR-10; a power of two >= 8 (the decoder doubles from 4x4)
    latent_dim: int = 128  # size of z
    pretrained: bool = False  # ImageNet weights through torchvision (a ~100 MB download; colab profile only)
    freeze_encoder: bool | None = None  # None: frozen iff pretrained (the report trained only the rest)
    decoder_width: int = 256  # channels of the decoder's 4x4 map; halved at each upsampling
    likelihood: str = "gaussian"  # colour photos are not coins: "gaussian" by default
    gaussian_std: float = 0.1  # the Gaussian likelihood's pixel std
    binarize: bool = False  # must stay False for photos
    beta: float = 1.0  # weight of the KL term
    free_bits: float = 0.0  # nats per latent dimension the KL term does not charge

    def __post_init__(self):
        _check_likelihood(self.likelihood)
        s = self.image_size
        if s < 8 or s & (s - 1):
            raise ValueError(f"image_size must be a power of two >= 8 (the decoder doubles 4 -> ... -> size); "
                             f"got {s}")
        if self.freeze_encoder is None:
            self.freeze_encoder = bool(self.pretrained)

    @property
    def in_channels(self) -> int:
        return 3  # RGB: the ResNet trunk's first convolution expects three channels


class ResNetVAE(VAEBase):
    """The report's CIFAR-10 VAE (§2.1.1, its Figure 15): a ResNet-50 encoder, two linear layers to mu and
    logvar, and a convolutional decoder trained from scratch.

    encode: (B, 3, S, S) -> ImageNet normalisation -> ResNet-50 without its classifier -> (B, 2048)
            -> linear heads -> mu (B, k), logvar (B, k)
    decode: z -> linear -> (B, W, 4, 4) -> [transposed conv 4x4 stride 2 + BatchNorm + ReLU] until S x S
            (channels halving from W) -> conv 3x3 to 3 channels -> logits

    ``pretrained=True`` loads torchvision's ImageNet weights (``ResNet50_Weights.IMAGENET1K_V2``), which
    torchvision downloads once; the book asks for them only in the colab profile. With the trunk frozen
    (the report's choice), its BatchNorm layers stay in eval mode too, so their ImageNet statistics are
    kept. Candidly: at 32x32 the ResNet's five stride-2 stages leave a 1x1 map, so the trunk sees CIFAR
    images at a scale far below the 224 px it was trained on; that is part of why this model reconstructs
    CIFAR-10 poorly (the report's §3.1.2 found its CIFAR reconstructions noisy).

    Defined in Chapter 2.
    """

    def __init__(self, cfg: ResNetVAEConfig | None = None, **overrides):
        super().__init__()
        import torchvision

        cfg = resolve_config(ResNetVAEConfig, cfg, overrides)
        self.cfg = cfg
        self._init_objective()

        weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2 if cfg.pretrained else None
        resnet = torchvision.models.resnet50(weights=weights)
        self.trunk = nn.Sequential(*list(resnet.children())[:-1], nn.Flatten())  # (B, 2048): all but fc
        if cfg.freeze_encoder:
            self.trunk.requires_grad_(False)
        self.register_buffer("img_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("img_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        feat = resnet.fc.in_features  # 2048
        self.fc_mu = nn.Linear(feat, cfg.latent_dim)
        self.fc_logvar = nn.Linear(feat, cfg.latent_dim)

        w = cfg.decoder_width
        dec = [nn.Linear(cfg.latent_dim, w * 16), nn.ReLU(), nn.Unflatten(1, (w, 4, 4))]
        side, ch = 4, w
        while side < cfg.image_size:
            out = max(ch // 2, 16)
            dec += [nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            side, ch = side * 2, out
        dec.append(nn.Conv2d(ch, 3, 3, padding=1))
        self.decoder = nn.Sequential(*dec)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.freeze_encoder:
            self.trunk.eval()  # a frozen trunk keeps its BatchNorm statistics
        return self

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) in [0, 1] -> (mu (B, k), logvar (B, k))."""
        self._check_images(x, 3, self.cfg.image_size)
        h = self.trunk((x - self.img_mean) / self.img_std)  # (B, 2048)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """(B, k) -> (B, 3, S, S) pre-sigmoid values."""
        self._check_latent(z)
        return self.decoder(z)


# ----------------------------------------------------------------------------------------------
# A VAE suited to small colour images: a latent *map*
# ----------------------------------------------------------------------------------------------

@dataclass
class SpatialVAEConfig:
    in_channels: int = 3  # RGB
    image_size: int = 32  # divisible by 4 (two stride-2 convolutions)
    latent_channels: int = 2  # z is (latent_channels, S/4, S/4): 2 x 8 x 8 = 128 numbers at 32 px,
    #                            as many as the ResNet VAE's 128-d vector
    width: int = 64  # channels of the feature maps between image and latent map
    likelihood: str = "gaussian"  # as the ResNet VAE, so their ELBOs compare
    gaussian_std: float = 0.1  # the Gaussian likelihood's pixel std
    binarize: bool = False
    beta: float = 1.0  # weight of the KL term
    free_bits: float = 0.0  # nats per latent dimension the KL term does not charge

    def __post_init__(self):
        _check_likelihood(self.likelihood)
        if self.image_size < 4 or self.image_size % 4:
            raise ValueError(f"image_size must be a positive multiple of 4 (two stride-2 convolutions); "
                             f"got {self.image_size}")
        if self.latent_channels < 1 or self.width < 1:
            raise ValueError("latent_channels and width must be >= 1")

    @property
    def latent_side(self) -> int:
        return self.image_size // 4

    @property
    def latent_dim(self) -> int:
        """Numbers in z: latent_channels x side x side (flattened in that order)."""
        return self.latent_channels * self.latent_side ** 2


class SpatialVAE(VAEBase):
    """A VAE whose latent is a small map, not a vector: each latent cell describes its own 4x4 patch.

    encode: (B, C, S, S) - 0.5 -> conv 4x4 stride 2 + ReLU (width/2) -> conv 4x4 stride 2 + ReLU (width)
            -> conv 3x3 + ReLU -> conv 1x1 to 2 x latent_channels -> mu, logvar, each (B, c, S/4, S/4),
            returned flattened to (B, c * (S/4)^2) so every VAE tool here (KL per dimension, free bits,
            sampling) works unchanged
    decode: z (B, k) -> (B, c, S/4, S/4) -> conv 3x3 + ReLU (width) -> transposed conv 4x4 stride 2 + ReLU
            (width/2) -> transposed conv 4x4 stride 2 to C -> logits; sigmoid for the image

    Chapter 2 sets it beside the report's ResNet-50 VAE with the same number of latent numbers (128 at
    32 px). The difference is where they live: the ResNet's five stride-2 stages reduce a 32 px image to one
    pooled vector, which must then describe every object and its position at once, and the decoder has to
    paint the whole picture out of it; here the encoder stops at an 8x8 grid, so position is kept by
    construction and each cell only has to describe a small patch. (The VQ-VAE of Chapter 4 keeps the
    same kind of grid.)

    Defined in Chapter 2.
    """

    def __init__(self, cfg: SpatialVAEConfig | None = None, **overrides):
        super().__init__()
        cfg = resolve_config(SpatialVAEConfig, cfg, overrides)
        self.cfg = cfg
        self._init_objective()
        w, c = cfg.width, cfg.latent_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(cfg.in_channels, w // 2 or 1, 4, stride=2, padding=1), nn.ReLU(),  # (B, w/2, S/2, S/2)
            nn.Conv2d(w // 2 or 1, w, 4, stride=2, padding=1), nn.ReLU(),  # (B, w, S/4, S/4)
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * c, 1))  # (B, 2c, S/4, S/4): mu and logvar
        self.decoder = nn.Sequential(
            nn.Conv2d(c, w, 3, padding=1), nn.ReLU(),  # (B, w, S/4, S/4)
            nn.ConvTranspose2d(w, w // 2 or 1, 4, stride=2, padding=1), nn.ReLU(),  # (B, w/2, S/2, S/2)
            nn.ConvTranspose2d(w // 2 or 1, cfg.in_channels, 4, stride=2, padding=1))  # (B, C, S, S) logits

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) in [0, 1] -> (mu (B, k), logvar (B, k)), k = latent_channels * (S/4)^2."""
        self._check_images(x, self.cfg.in_channels, self.cfg.image_size)
        # Centred input, as in the Sonnet VQ-VAE. On mostly black images, uncentred inputs gave the encoder
        # such small outputs that z's unit noise drowned them at the start, and the decoder learned to ignore
        # z: the posterior collapsed onto the mean image in most of our runs (600 updates on Shapes, 3 seeds:
        # 1 of 3 escaped uncentred, 3 of 3 centred).
        mu, logvar = self.encoder(x - 0.5).chunk(2, dim=1)  # (B, c, S/4, S/4) each
        return mu.flatten(1), logvar.flatten(1)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """(B, k) -> (B, C, S, S) pre-sigmoid values."""
        self._check_latent(z)
        side = self.cfg.latent_side
        return self.decoder(z.view(z.shape[0], self.cfg.latent_channels, side, side))


# ----------------------------------------------------------------------------------------------
# KL warm-up and the latent-space diagnostics
# ----------------------------------------------------------------------------------------------

class KLWarmup:
    """A training callback that ramps ``model.beta`` linearly from 0 to ``beta`` over ``steps`` updates.

    Early in training the decoder is poor and the KL term is cheap to zero, so the encoder learns to
    ignore the input and never recovers (posterior collapse); starting with beta = 0 lets the codes
    become useful before the KL bill arrives (Bowman et al., 2016; Sønderby et al., 2016). Use it as
    ``train(model, data, cfg, callbacks=[KLWarmup(model, steps=200)])``; it sets beta = 0 at once.

    Defined in Chapter 2.
    """

    def __init__(self, model: VAEBase, steps: int, beta: float = 1.0):
        if steps < 1:
            raise ValueError(f"warm-up steps must be >= 1, got {steps}")
        self.steps, self.target = int(steps), float(beta)
        model.beta = 0.0  # the first update trains with no KL term

    def value(self, step: int) -> float:
        """beta for the update after ``step`` updates."""
        return self.target * min(1.0, step / self.steps)

    def on_step(self, state) -> None:
        state.model.beta = self.value(state.step)

    def on_end(self, state) -> None:
        state.model.beta = self.target


@dataclass
class LatentStats:
    """Per-dimension facts about a VAE's latent space, measured over a data set. Defined in Chapter 2."""

    kl_per_dim: torch.Tensor  # (k,) mean over the data of KL(q(z_i | x) || N(0, 1)), nats
    mean_variance: torch.Tensor  # (k,) Cov_x(E_q[z_i | x]): how much the code mean moves with the input
    threshold: float  # the activity threshold on mean_variance

    @property
    def active(self) -> torch.Tensor:
        """(k,) bool: the active units, Cov_x(E_q[z_i]) > threshold (Burda et al., 2016)."""
        return self.mean_variance > self.threshold

    @property
    def n_active(self) -> int:
        return int(self.active.sum())


def _batches(data, batch_size: int, max_items: int | None):
    if isinstance(data, torch.Tensor):
        data = data[:max_items] if max_items else data
        for i in range(0, len(data), batch_size):
            yield data[i:i + batch_size]
        return
    if isinstance(data, torch.utils.data.DataLoader):
        seen = 0
        for batch in data:
            x = images_of(batch)
            yield x
            seen += len(x)
            if max_items and seen >= max_items:
                return
        return
    n = len(data) if max_items is None else min(len(data), max_items)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(n)), batch_size=batch_size)
    for batch in loader:
        yield images_of(batch)


@torch.no_grad()
def latent_stats(model: nn.Module, data, threshold: float = 0.01, batch_size: int = 500,
                 max_items: int | None = None, seed: int = 0) -> LatentStats:
    """KL per latent dimension and the variance of the posterior mean per dimension, over ``data``.

    ``model`` needs ``encode(x) -> (mu, logvar)`` (and, optionally, ``prepare``, used to binarise the
    inputs as in training, with random numbers from ``seed``; the caller's random state is kept).
    ``data``: a Dataset of (image, label) items, a DataLoader, or an image tensor (N, C, H, W).

    Defined in Chapter 2.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    mus, kls = [], []
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for x in _batches(data, batch_size, max_items):
                x = x.to(device)
                if hasattr(model, "prepare"):
                    x = model.prepare(x)
                mu, logvar = model.encode(x)
                mu, logvar = mu.float(), logvar.float()
                mus.append(mu.cpu())
                kls.append(kl_standard_normal(mu, logvar).sum(0).cpu())
    finally:
        model.train(was_training)
    if not mus:
        raise ValueError("latent_stats(): the data is empty")
    mu = torch.cat(mus).double()  # (N, k)
    if len(mu) < 2:
        raise ValueError("latent_stats() needs at least 2 inputs to measure a variance")
    return LatentStats(kl_per_dim=(torch.stack(kls).sum(0).double() / len(mu)).float(),
                       mean_variance=mu.var(0, unbiased=True).float(), threshold=float(threshold))


def active_units(model: nn.Module, data, threshold: float = 0.01, **kw) -> int:
    """The number of active latent units (Burda et al., 2016): dimensions i with Cov_x(E_q[z_i | x]) >
    ``threshold``. An inactive unit's posterior mean is (nearly) the same for every input: it carries no
    information about x, and its q(z_i | x) has collapsed onto the prior. See :func:`latent_stats`.

    Defined in Chapter 2.
    """
    return latent_stats(model, data, threshold=threshold, **kw).n_active
