"""Building blocks that several models share, and the reconstruction measure they log.

- ``ResidualStack``, ``residual_encoder``, ``residual_decoder``: the Sonnet-style residual conv trunk of the
  VQ-VAE (Chapter 4) and the dVAE (Chapter 5): same layers, same parameter names, same initialisation
- ``IMAGENET_MEAN``, ``IMAGENET_STD``: the input statistics of the ImageNet trunks of the report's ResNet-50
  VAE (Chapter 2) and ResNet-101 VQ-VAE (Chapter 4)
- ``psnr``: peak signal-to-noise ratio, which the VQ-VAE and the dVAE report while they train (Chapter 4);
  :mod:`t2i_lib.metrics` re-exports it

Defined in Chapter 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The channel statistics ImageNet-pretrained trunks expect (the report's ResNet-50 VAE and ResNet-101 VQ-VAE).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResidualStack(nn.Module):
    """``num_layers`` blocks of x + conv1x1(relu(conv3x3(relu(x)))), then a ReLU (the Sonnet layout).

    Defined in Chapter 4.
    """

    def __init__(self, channels: int, hidden: int, num_layers: int):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1),
                                                  nn.ReLU(), nn.Conv2d(hidden, channels, 1))
                                    for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)  # (B, C, H, W)
        return F.relu(x)


def _widths(cfg) -> list[int]:
    nh, n = cfg.num_hiddens, cfg.num_downsamples
    return [nh // 2] * (n - 1) + [nh]  # (64, 128) for the Sonnet default


def residual_encoder(cfg, out_channels: int) -> nn.Sequential:
    """The Sonnet example's encoder: [conv 4x4 stride 2 + ReLU] x num_downsamples, conv 3x3, residual
    stack, 1x1 conv to ``out_channels``: (B, C, S, S) -> (B, out_channels, S / 2**n, S / 2**n).
    ``cfg`` needs in_channels, num_hiddens, num_residual_hiddens, num_residual_layers, num_downsamples.
    Shared by the VQ-VAE (out: D) and Chapter 5's dVAE (out: K logits). Defined in Chapter 4."""
    nh = cfg.num_hiddens
    enc, ch = [], cfg.in_channels
    for w in _widths(cfg):
        enc += [nn.Conv2d(ch, w, 4, stride=2, padding=1), nn.ReLU()]
        ch = w
    enc += [nn.Conv2d(nh, nh, 3, padding=1),
            ResidualStack(nh, cfg.num_residual_hiddens, cfg.num_residual_layers),
            nn.Conv2d(nh, out_channels, 1)]
    return nn.Sequential(*enc)


def residual_decoder(cfg) -> nn.Sequential:
    """The mirror of :func:`residual_encoder`: conv 3x3 from ``cfg.embedding_dim``, residual stack,
    [transposed conv 4x4 stride 2 + ReLU] x (n - 1), transposed conv to ``cfg.in_channels`` (linear).
    Defined in Chapter 4."""
    widths, nh = _widths(cfg), cfg.num_hiddens
    dec = [nn.Conv2d(cfg.embedding_dim, nh, 3, padding=1),
           ResidualStack(nh, cfg.num_residual_hiddens, cfg.num_residual_layers)]
    ch = nh
    for w in reversed(widths[:-1]):
        dec += [nn.ConvTranspose2d(ch, w, 4, stride=2, padding=1), nn.ReLU()]
        ch = w
    dec.append(nn.ConvTranspose2d(ch, cfg.in_channels, 4, stride=2, padding=1))
    return nn.Sequential(*dec)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image then averaged: ``10 log10(range^2 / MSE)``.

    ``x``, ``y``: (B, ...) images with values in a range of width ``data_range`` (1 for [0, 1] images).
    ``reduction``: "mean" (over the batch) or "none" (one value per image). Averaging per-image PSNRs
    is the usual convention; it differs from the PSNR of the batch's pooled MSE. A perfect reconstruction
    gives +inf.

    Defined in Chapter 4.
    """
    if x.shape != y.shape:
        raise ValueError(f"psnr needs two tensors of the same shape; received {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() < 2:
        raise ValueError(f"psnr expects a batch (B, ...); received shape {tuple(x.shape)}")
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)  # (B,)
    val = 10 * torch.log10(data_range ** 2 / mse)
    if reduction == "none":
        return val.float()
    if reduction == "mean":
        return val.mean().float()
    raise ValueError(f"reduction must be 'mean' or 'none'; received {reduction!r}")
