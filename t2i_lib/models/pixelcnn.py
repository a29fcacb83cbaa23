"""A gated PixelCNN over code maps: the learned prior that turns a VQ-VAE into a generator.

A VQ-VAE turns an image into a grid of tokens (B, h, w) with values in [0, K). To generate, we need a
model of p(tokens); the PixelCNN factorises it in raster order,

    p(c) = prod_i p(c_i | c_1, ..., c_{i-1}),

and computes every conditional at once with convolutions whose kernels are masked so that position i
never sees itself or anything after it. Sampling is sequential: h*w forward passes.

This is the *gated* PixelCNN of van den Oord et al. (2016, "Conditional Image Generation with PixelCNN
Decoders"):

- Two stacks. The **vertical stack** sees every row above the current one (a k x k kernel whose rows
  at and below the centre are masked in the first layer; afterwards rows below the centre); the
  **horizontal stack** sees the pixels to the left in the current row (a 1 x k kernel masked at and
  right of the centre in the first layer, right of the centre afterwards). The vertical stack feeds
  the horizontal one. Together they cover the whole causal past, with no *blind spot*: the original
  PixelCNN's stacked 3x3 masks never saw the pixels above and to the right beyond a growing triangle.
- Mask type A in the first layer (exclude the centre: the input at i is the thing being predicted),
  type B afterwards (include the centre: those features already only depend on the past).
- Gated units ``tanh(W_f * x) * sigmoid(W_g * x)`` instead of ReLUs, and an optional conditioning
  vector (a class label or a caption embedding) added inside both gates at every layer.

The code is our own; the layer layout follows the paper's Figure 2.

Defined in Chapter 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from t2i_lib.models.checks import check_tokens
from t2i_lib.models.config import resolve_config
__all__ = ["PixelCNNConfig", "GatedPixelCNN", "GatedLayer"]


@dataclass
class PixelCNNConfig:
    num_codes: int = 512  # K: tokens take values in [0, K) (the VQ-VAE's codebook size)
    hidden: int = 64  # channels of both stacks
    num_layers: int = 8  # gated layers after the first (type A) one
    kernel_size: int = 3  # of the type B layers (odd)
    first_kernel_size: int = 7  # of the type A layer (odd): a wide first look
    out_hidden: int = 256  # channels of the 1x1 output head before the K logits
    num_classes: int = 0  # > 0: class-conditional (an embedding of the label enters every gate)
    cond_dim: int = 0  # > 0: conditioned on a vector of this size (e.g. a caption embedding)

    def __post_init__(self):
        for name in ("kernel_size", "first_kernel_size"):
            k = getattr(self, name)
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{name} must be odd and positive, got {k}")
        if self.num_codes < 2:
            raise ValueError(f"num_codes must be at least 2, got {self.num_codes}")
        if self.num_classes and self.cond_dim:
            raise ValueError("condition on a class (num_classes) or on a vector (cond_dim), not both")


class _MaskedConv(nn.Conv2d):
    """A conv whose kernel is multiplied by a fixed 0/1 mask on every call."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], mask: torch.Tensor):
        super().__init__(cin, cout, kernel, padding=(kernel[0] // 2, kernel[1] // 2))
        self.register_buffer("mask", mask.view(1, 1, *kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def _vertical_mask(k: int, include_centre_row: bool) -> torch.Tensor:
    """k x k: rows above the centre (and the centre row itself for type B). Features of the vertical
    stack at row r depend only on input rows < r, because the type A layer saw only rows above; a type
    B layer may then look at its own row's features, left and right, without leaking."""
    m = torch.zeros(k, k)
    m[: k // 2 + (1 if include_centre_row else 0)] = 1
    return m


def _horizontal_mask(k: int, include_centre: bool) -> torch.Tensor:
    """1 x k: the pixels left of the centre (and the centre itself for type B)."""
    m = torch.zeros(1, k)
    m[0, : k // 2 + (1 if include_centre else 0)] = 1
    return m


class GatedLayer(nn.Module):
    """One gated layer: vertical and horizontal stacks, the vertical feeding the horizontal.

    v' = tanh(Vf) * sigmoid(Vg),  [Vf, Vg] = vconv(v) + cond
    h' = h + conv1x1(tanh(Hf) * sigmoid(Hg)),  [Hf, Hg] = hconv(h) + conv1x1([Vf, Vg]) + cond
    (no residual in the first, type A, layer: its input is the embedding, not features).

    Defined in Chapter 4.
    """

    def __init__(self, channels: int, kernel: int, mask_type: str, cond_dim: int = 0):
        super().__init__()
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        b = mask_type == "B"
        self.residual = b
        self.vconv = _MaskedConv(channels, 2 * channels, (kernel, kernel), _vertical_mask(kernel, b))
        self.hconv = _MaskedConv(channels, 2 * channels, (1, kernel), _horizontal_mask(kernel, b))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.cond = nn.Linear(cond_dim, 4 * channels, bias=False) if cond_dim else None

    @staticmethod
    def _gate(x: torch.Tensor) -> torch.Tensor:
        f, g = x.chunk(2, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None = None):
        vf = self.vconv(v)  # (B, 2C, H, W)
        hf = self.hconv(h) + self.v_to_h(vf)  # (B, 2C, H, W)
        if self.cond is not None and cond is not None:
            cv, ch = self.cond(cond)[:, :, None, None].chunk(2, dim=1)  # (B, 2C, 1, 1) each
            vf, hf = vf + cv, hf + ch
        v_out = self._gate(vf)
        h_out = self.h_out(self._gate(hf))
        return v_out, (h + h_out if self.residual else h_out)


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN over token maps (B, h, w) with values in [0, K).

    ``forward(codes, cond=None)`` -> logits (B, K, h, w); ``loss(batch)`` -> cross-entropy in nats per
    token (metrics also give bits per token); ``sample(n, shape, generator, temperature)`` draws token
    maps in raster order. ``cond``: labels (B,) int64 when ``num_classes``, vectors (B, cond_dim) when
    ``cond_dim``.

    Defined in Chapter 4.
    """

    def __init__(self, cfg: PixelCNNConfig | None = None, **overrides):
        super().__init__()
        cfg = resolve_config(PixelCNNConfig, cfg, overrides)
        self.cfg = cfg
        c = cfg.hidden
        self.embed = nn.Embedding(cfg.num_codes, c)
        cdim = 0
        if cfg.num_classes:
            self.class_embed = nn.Embedding(cfg.num_classes, c)
            cdim = c
        elif cfg.cond_dim:
            cdim = cfg.cond_dim
        self.layers = nn.ModuleList([GatedLayer(c, cfg.first_kernel_size, "A", cdim)]
                                    + [GatedLayer(c, cfg.kernel_size, "B", cdim) for _ in range(cfg.num_layers)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(c, cfg.out_hidden, 1), nn.ReLU(),
                                  nn.Conv2d(cfg.out_hidden, cfg.num_codes, 1))

    # ------------------------------------------------------------------ inputs

    def _check_codes(self, codes: torch.Tensor) -> None:
        check_tokens(codes, self.cfg.num_codes, None, "GatedPixelCNN")

    def _cond_vector(self, cond, batch: int) -> torch.Tensor | None:
        cfg = self.cfg
        if not (cfg.num_classes or cfg.cond_dim):
            if cond is not None:
                raise ValueError("this PixelCNN is unconditional (num_classes=0, cond_dim=0) but got a condition")
            return None
        if cond is None:
            raise ValueError("this PixelCNN is conditional: pass cond (labels (B,) or vectors (B, cond_dim))")
        if cfg.num_classes:
            if cond.dim() != 1 or cond.shape[0] != batch or cond.dtype.is_floating_point:
                raise ValueError(f"expected integer class labels of shape ({batch},); received "
                                 f"{tuple(cond.shape)} {cond.dtype}")
            return self.class_embed(cond)  # (B, C)
        if cond.dim() != 2 or tuple(cond.shape) != (batch, cfg.cond_dim):
            raise ValueError(f"expected condition vectors of shape ({batch}, {cfg.cond_dim}); received "
                             f"{tuple(cond.shape)}")
        return cond.float()

    # ------------------------------------------------------------------ model

    def forward_embedded(self, x: torch.Tensor, cond_vec: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, K, h, w) from already-embedded inputs (B, hidden, h, w). Exposed so that tests (and
        the chapter's receptive-field figure) can take gradients with respect to a continuous input."""
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, cond_vec)
        return self.head(h)

    def forward(self, codes: torch.Tensor, cond=None) -> torch.Tensor:
        """Token maps (B, h, w) -> logits (B, K, h, w); logits at i depend only on tokens before i."""
        self._check_codes(codes)
        x = self.embed(codes).permute(0, 3, 1, 2)  # (B, C, h, w)
        return self.forward_embedded(x, self._cond_vector(cond, codes.shape[0]))

    def _split_batch(self, batch):
        """codes, or (codes, cond), or a dict with 'codes'/'indices' and optionally 'label'/'cond'."""
        if isinstance(batch, torch.Tensor):
            return batch, None
        if isinstance(batch, dict):
            key = next((k for k in ("codes", "indices", "tokens") if k in batch), None)
            if key is None:
                raise ValueError(f"a dict batch needs a 'codes' (or 'indices'/'tokens') entry; got keys {sorted(batch)}")
            cond = next((batch[k] for k in ("cond", "label", "labels") if k in batch), None)
            return batch[key], cond
        if isinstance(batch, (tuple, list)) and len(batch) > 0:
            cond = batch[1] if len(batch) > 1 and (self.cfg.num_classes or self.cfg.cond_dim) else None
            return batch[0], cond
        raise TypeError(f"expected a code map tensor, a (codes, cond) tuple or a dict; got {type(batch).__name__}")

    def loss(self, batch):
        codes, cond = self._split_batch(batch)
        logits = self(codes, cond)  # (B, K, h, w)
        nats = F.cross_entropy(logits.float(), codes.long())  # mean over tokens
        return nats, {"nats_per_code": nats.detach(), "bits_per_code": nats.detach() / math.log(2)}

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int], generator: torch.Generator | None = None,
               temperature: float = 1.0, cond=None) -> torch.Tensor:
        """Draw ``n`` token maps of ``shape`` (h, w) in raster order: (n, h, w) int64 on the model's device.

        One forward pass per position (h*w passes of the whole map: simple, not fast). ``temperature``
        divides the logits (< 1 sharper, > 1 flatter). A fixed ``generator`` gives the same maps.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        h, w = shape
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        codes = torch.zeros(n, h, w, dtype=torch.long, device=device)
        cond_vec = self._cond_vector(cond, n)
        for i in range(h):
            for j in range(w):
                x = self.embed(codes).permute(0, 3, 1, 2)
                logits = self.forward_embedded(x, cond_vec)[:, :, i, j].float() / temperature  # (n, K)
                probs = torch.softmax(logits, dim=1)
                codes[:, i, j] = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(device)
        self.train(was_training)
        return codes
