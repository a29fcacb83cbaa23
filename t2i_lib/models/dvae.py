"""The discrete VAE (dVAE) of DALL-E: image tokens learned with the Gumbel-softmax relaxation.

A VQ-VAE (Chapter 4) picks each token by a nearest-neighbour lookup and trains through it with the
straight-through trick. DALL-E's dVAE keeps the VAE story of Chapter 2 instead: the encoder outputs a
*categorical distribution* over K codes at every cell of the latent grid, and training maximises an ELBO
with a uniform prior over the K codes. A categorical sample has no gradient, so during training it is
replaced by a *relaxed* one-hot vector (the Gumbel-softmax, or Concrete, distribution), whose sharpness is
set by a temperature tau: at tau = 1 the vector is a soft mixture, as tau -> 0 it becomes one-hot.

    encoder: image (B, C, S, S) -> logits (B, K, h, w)                     h = w = S / 2**num_downsamples
    sample : y = softmax((logits + Gumbel noise) / tau)  (B, K, h, w)     a point on the simplex per cell
    embed  : e = sum_k y_k * codebook[k]                 (B, D, h, w)     a 1x1 conv with K inputs, no bias
    decoder: e -> image (B, C, S, S)

    loss per pixel = [ sum_pixels (x - x')^2 / (2 sigma^2)  +  beta * sum_cells KL(q(z|x) || Uniform(K)) ]
                     / number of pixels

At test time (``model.eval()``) and in :meth:`DVAE.encode` there is no noise: the token is the argmax
of the logits, and the decoder sees that code's embedding exactly (a hard one-hot).

The reconstruction term is a Gaussian log-likelihood with a fixed sigma (``recon_sigma``), i.e. a scaled
MSE. DALL-E used a "logit-Laplace" likelihood on pixels squeezed into (eps, 1 - eps), a distribution
made for bounded natural-image pixels. We chose the Gaussian for one reason: Chapter 5 compares the dVAE
with the Chapter 4 VQ-VAE, whose objective is an MSE, and with the same reconstruction term the only
difference left between the two models is the bottleneck (same encoder and decoder layout, same data,
same budget). ``recon_sigma`` then fixes how many nats one unit of squared error is worth against the
KL term, the role DALL-E's beta = 6.6 played against its likelihood.

The KL weight (beta) and the temperature change during training: DALL-E raised beta from 0 to 6.6 early
in training and annealed tau from 1 to 1/16. Both are model buffers (so a checkpoint carries their
current values) set by the :class:`Anneal` callbacks that :func:`dvae_schedules` builds for ``train``.

Defined in Chapter 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from t2i_lib.data.batches import images_of
from t2i_lib.models.blocks import psnr, residual_decoder, residual_encoder
from t2i_lib.models.checks import check_residual_geometry, check_tokens
from t2i_lib.models.config import resolve_config
from t2i_lib.models.quantize import codebook_stats
from t2i_lib.models.tokenizer import ConfigTokenizer, module_device

__all__ = ["DVAEConfig", "DVAE", "gumbel_softmax", "kl_to_uniform", "Anneal", "dvae_schedules"]


# ----------------------------------------------------------------------------------------------------
# The relaxation and the KL term, as plain functions (the tests check them against closed forms)
# ----------------------------------------------------------------------------------------------------

def gumbel_softmax(logits: torch.Tensor, tau: float, *, dim: int = 1, hard: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A relaxed one-hot sample from the categorical distribution ``softmax(logits)`` along ``dim``.

    ``y = softmax((logits + g) / tau)`` with ``g = -log(-log(u))``, ``u ~ Uniform(0, 1)``: Gumbel noise.
    The argmax of ``logits + g`` is an *exact* sample of the categorical (the Gumbel-max trick), whatever
    tau is; tau only decides how close ``y`` is to that one-hot vector. ``y`` is a differentiable function
    of the logits, which is the whole point.

    ``hard=True``: the straight-through variant. The forward value is the exact one-hot of the argmax; the
    backward pass uses the gradient of the soft ``y``. DALL-E used the soft sample (``hard=False``).

    Defined in Chapter 5.
    """
    if tau <= 0:
        raise ValueError(f"the temperature tau must be > 0, got {tau}")
    # u in [tiny, 1): -log(u) > 0, so the outer log is finite; float32 keeps the noise exact under autocast.
    u = torch.rand(logits.shape, device=logits.device, dtype=torch.float32, generator=generator)
    g = -torch.log(-torch.log(u.clamp_min(torch.finfo(torch.float32).tiny)))
    y = torch.softmax((logits.float() + g) / tau, dim=dim)
    if hard:
        index = y.argmax(dim, keepdim=True)
        one_hot = torch.zeros_like(y).scatter_(dim, index, 1.0)
        y = one_hot - y.detach() + y  # value: one_hot; gradient: that of y
    return y.to(logits.dtype)


def kl_to_uniform(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """KL(q || Uniform(K)) in nats for ``q = softmax(logits)`` along ``dim`` (K = that dimension's size).

    ``KL = sum_k q_k log(q_k / (1/K)) = log K - H(q)``: zero for a uniform q, ``log K`` for a one-hot
    one. Returns the KL per position (``dim`` removed).

    Defined in Chapter 5.
    """
    logq = torch.log_softmax(logits.float(), dim=dim)
    k = logits.shape[dim]
    return (logq.exp() * logq).sum(dim) + math.log(k)


# ----------------------------------------------------------------------------------------------------
# Schedules for tau and beta, as callbacks for train()
# ----------------------------------------------------------------------------------------------------

class Anneal:
    """Move a model buffer (``attr``, e.g. ``"tau"``) from ``start`` to ``end`` over ``steps`` updates.

    ``kind``: ``"linear"``, ``"cosine"`` (half a cosine: slow, fast, slow) or ``"exp"`` (geometric:
    ``start * (end / start) ** (t / steps)``; needs start, end > 0). After ``steps`` the value stays at
    ``end``. As a ``train`` callback it runs after update ``t`` (``state.step == t + 1``) and sets the
    value that update ``t + 1`` will use, so update ``t`` always sees ``value(t)``; call :meth:`start`
    (or use :func:`dvae_schedules`) before training so update 0 sees ``value(0)``.

    Defined in Chapter 5.
    """

    KINDS = ("linear", "cosine", "exp")

    def __init__(self, attr: str, start: float, end: float, steps: int, kind: str = "cosine"):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if kind == "exp" and (start <= 0 or end <= 0):
            raise ValueError(f"an exponential schedule needs start and end > 0, got {start} and {end}")
        self.attr, self.start_value, self.end, self.steps, self.kind = attr, float(start), float(end), int(steps), kind

    def value(self, step: int) -> float:
        """The value at update ``step`` (0-based)."""
        if self.steps == 0 or step >= self.steps:
            return self.end
        t = max(step, 0) / self.steps
        a, b = self.start_value, self.end
        if self.kind == "linear":
            return a + (b - a) * t
        if self.kind == "cosine":
            return b + (a - b) * 0.5 * (1 + math.cos(math.pi * t))
        return a * (b / a) ** t

    def _set(self, model: nn.Module, step: int) -> None:
        buf = getattr(model, self.attr, None)
        if not isinstance(buf, torch.Tensor):
            raise AttributeError(f"{type(model).__name__} has no tensor attribute {self.attr!r} to anneal")
        buf.fill_(self.value(step))

    def start(self, model: nn.Module) -> "Anneal":
        """Set the value for update 0. Returns self."""
        self._set(model, 0)
        return self

    def on_step(self, state) -> None:
        self._set(state.model, state.step)

    __call__ = on_step

    def __repr__(self) -> str:
        return f"Anneal({self.attr!r}, {self.start_value:g} -> {self.end:g} over {self.steps} steps, {self.kind})"


def dvae_schedules(model: "DVAE", total_steps: int, *, tau_start: float = 1.0, tau_end: float = 1 / 16,
                   tau_frac: float = 0.5, tau_kind: str = "exp", kl_weight: float | None = None,
                   kl_frac: float = 0.1, kl_kind: str = "cosine") -> list[Anneal]:
    """The two DALL-E schedules, scaled to a run of ``total_steps``, set to their step-0 values on ``model``.

    tau goes from ``tau_start`` to ``tau_end`` over the first ``tau_frac`` of the run; beta rises from 0 to
    ``kl_weight`` (default: ``model.cfg.kl_weight``) over the first ``kl_frac``. DALL-E's run was 3 million
    updates long, with tau annealed over the first 150,000 (5%) and beta raised over the first 5,000
    (0.2%); a run of a few hundred updates needs larger fractions, or tau never gets low.

    Defined in Chapter 5.
    """
    kl_weight = model.cfg.kl_weight if kl_weight is None else kl_weight
    return [Anneal("tau", tau_start, tau_end, round(tau_frac * total_steps), tau_kind).start(model),
            Anneal("kl_weight", 0.0, kl_weight, round(kl_frac * total_steps), kl_kind).start(model)]


# ----------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------

@dataclass
class DVAEConfig:
    in_channels: int = 3  # 3 for Shapes, CIFAR-10 and COCO
    image_size: int = 32  # must be divisible by 2 ** num_downsamples
    num_hiddens: int = 128  # channels of the encoder's and decoder's main path (as the Chapter 4 VQ-VAE)
    num_residual_hiddens: int = 32  # channels inside each residual block
    num_residual_layers: int = 2  # residual blocks in the encoder and in the decoder
    num_downsamples: int = 2  # stride-2 convs: 32 px -> 8x8 tokens with 2 (DALL-E: 3, 256 px -> 32x32)
    num_codes: int = 512  # K, the vocabulary of image tokens (DALL-E: 8192)
    embedding_dim: int = 64  # D, the width of a code's embedding (what the decoder sees)
    # Standard deviation of the Gaussian reconstruction likelihood: a squared error of e costs e / (2 sigma^2)
    # nats per pixel. 0.1 makes one "average" error of MSE 0.01 worth 0.5 nat per pixel.
    recon_sigma: float = 0.1
    # beta at the end of its ramp. DALL-E used 6.6 against its own likelihood; we kept the number because it
    # also worked here: on Shapes (a 32-channel model, K = 64, 300 updates) beta = 1 left 6 of the 64 codes in
    # use, 6.6 half of them (32), at the same reconstruction error; 30 began to cost reconstruction.
    kl_weight: float = 6.6
    tau: float = 1.0  # the Gumbel-softmax temperature until a schedule moves it (DALL-E: 1 -> 1/16)
    hard: bool = False  # straight-through Gumbel-softmax (one-hot forward, soft backward); DALL-E: soft

    def __post_init__(self):
        check_residual_geometry(self)
        if self.num_codes < 2:
            raise ValueError(f"num_codes must be at least 2, got {self.num_codes}")
        if self.recon_sigma <= 0 or self.tau <= 0 or self.kl_weight < 0:
            raise ValueError(f"need recon_sigma > 0, tau > 0 and kl_weight >= 0; got {self.recon_sigma}, "
                             f"{self.tau} and {self.kl_weight}")

    @classmethod
    def small(cls, **overrides) -> "DVAEConfig":
        """The quick profile's size, the same as ``VQVAEConfig.small()``: 64 hidden channels, 16 in the
        residual blocks, D = 32, K = 64."""
        base = dict(num_hiddens=64, num_residual_hiddens=16, embedding_dim=32, num_codes=64)
        return cls(**{**base, **overrides})


class DVAE(ConfigTokenizer, nn.Module):
    """DALL-E's discrete VAE in miniature, with the Chapter 4 VQ-VAE's encoder and decoder layout.

    Layout::

        encoder: [conv 4x4 stride 2 + ReLU] x num_downsamples -> conv 3x3 -> residual stack
                 -> conv 1x1 to K logits                                                   (B, K, h, w)
        codes  : relaxed one-hot (training) or argmax one-hot (eval) (B, K, h, w) times the codebook (K, D)
        decoder: conv 3x3 D -> num_hiddens -> residual stack -> transposed convs -> + 0.5     (B, C, S, S)

    DALL-E's own dVAE is much larger (a ResNet with 256 px inputs, three downsamplings, K = 8192; see
    :mod:`t2i_lib.models.openai_dvae`) and ends its encoder and starts its decoder with 1x1 convolutions,
    which its paper found to help the relaxation generalise to the argmax; our last encoder layer and the
    codebook product are such 1x1 maps too.

    Buffers ``tau`` and ``kl_weight`` hold the current temperature and KL weight (see :class:`Anneal`).

    An image tokenizer (:mod:`t2i_lib.models.tokenizer`): ``encode(images) -> tokens (B, h, w)``,
    ``decode(tokens) -> images``, ``num_codes``, ``grid_size(image_size) -> (h, w)``, plus
    ``downsample_factor``, ``embedding_dim`` and ``image_size``.

    Defined in Chapter 5.
    """

    def __init__(self, cfg: DVAEConfig | None = None, **overrides):
        super().__init__()
        cfg = resolve_config(DVAEConfig, cfg, overrides)
        self.cfg = cfg
        self.downsample_factor = 2 ** cfg.num_downsamples  # image side / token-grid side
        self.encoder = residual_encoder(cfg, cfg.num_codes)  # logits over the K codes at every cell

        # Embedding a (soft) one-hot y: sum_k y_k codebook[k], a 1x1 conv with K inputs and no bias.
        self.codebook = nn.Parameter(torch.randn(cfg.num_codes, cfg.embedding_dim))  # (K, D)

        self.decoder = residual_decoder(cfg)

        self.register_buffer("tau", torch.tensor(float(cfg.tau)))
        self.register_buffer("kl_weight", torch.tensor(float(cfg.kl_weight)))

    # ------------------------------------------------------------------ the tokenizer interface

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, S, S) in [0, 1] -> tokens (B, h, w), int64: the argmax code of every cell (no noise,
        in any mode). The input is moved to the model's device."""
        self._check_images(x, f"{type(self).__name__}.encode")
        return self.logits(x.to(module_device(self))).argmax(1)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, h, w) in [0, K) -> images (B, C, S, S) in [0, 1], on the model's device."""
        check_tokens(tokens, self.num_codes, self.grid_size(), f"{type(self).__name__}.decode")
        e = self.codebook[tokens.to(self.codebook.device).long()].permute(0, 3, 1, 2)  # (B, D, h, w)
        return self.decode_raw(e).clamp(0, 1)

    # ------------------------------------------------------------------ the pieces

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, S, S) in [0, 1] -> logits of q(z | x), (B, K, h, w)."""
        self._check_images(x, f"{type(self).__name__}.logits")
        return self.encoder(x - 0.5)

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """(Soft) one-hot codes (B, K, h, w) -> code embeddings (B, D, h, w)."""
        k, (h, w) = self.cfg.num_codes, self.grid_size()
        if y.dim() != 4 or tuple(y.shape[1:]) != (k, h, w):
            raise ValueError(f"{type(self).__name__}.embed expects one-hot codes of shape (B, {k}, {h}, {w}); "
                             f"received shape {tuple(y.shape)}")
        return torch.einsum("bkhw,kd->bdhw", y, self.codebook.to(y.dtype))

    def decode_raw(self, e: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, D, h, w) -> images (B, C, S, S), not clamped (the decoder predicts x - 0.5)."""
        return self.decoder(e) + 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the tokens (argmax, no noise): (B, C, S, S) in [0, 1]."""
        return self.decode(self.encode(x))

    # ------------------------------------------------------------------ the loss

    def loss(self, batch):
        """Negative ELBO per pixel (with beta on the KL term) and the metrics.

        Training mode: relaxed samples at temperature ``self.tau``. Eval mode: the argmax one-hot, so an
        evaluation measures what the tokens themselves reconstruct.
        """
        x = images_of(batch)
        self._check_images(x, f"{type(self).__name__}.loss")
        logits = self.logits(x)  # (B, K, h, w)
        if self.training:
            y = gumbel_softmax(logits, float(self.tau), dim=1, hard=self.cfg.hard)  # (B, K, h, w)
        else:
            y = F.one_hot(logits.argmax(1), self.cfg.num_codes).permute(0, 3, 1, 2).to(logits.dtype)
        x_hat = self.decode_raw(self.embed(y)).float()  # (B, C, S, S), unclamped: clamping kills gradients
        x = x.float()
        mse = F.mse_loss(x_hat, x)
        kl = kl_to_uniform(logits, dim=1)  # (B, h, w) nats per cell
        b, c, s = x.shape[0], x.shape[1], x.shape[2]
        pixels = c * s * s
        recon_nats = mse * pixels / (2 * self.cfg.recon_sigma ** 2)  # per image (dropping the constant)
        kl_image = kl.sum((1, 2)).mean()  # per image
        loss = (recon_nats + self.kl_weight * kl_image) / pixels
        idx = logits.detach().argmax(1)
        stats = codebook_stats(torch.bincount(idx.reshape(-1), minlength=self.cfg.num_codes))
        metrics = {"mse": mse.detach(), "kl": kl.detach().mean(), "psnr": psnr(x_hat.detach().clamp(0, 1), x),
                   "tau": self.tau.detach().clone(), "beta": self.kl_weight.detach().clone(), **stats}
        return loss, metrics
