"""VQ-VAE: a convolutional autoencoder whose latent grid is a grid of integers (image tokens).

encoder: image (B, C, S, S) -> continuous latents z (B, D, h, w), h = w = S / 2**num_downsamples
quantiser: z -> nearest codebook vectors q (B, D, h, w) and their indices (B, h, w)
decoder: q -> image (B, C, S, S)

Training minimises ``MSE(x, x') + quantiser loss`` (codebook + beta * commitment, or only the
commitment term with an EMA codebook); gradients skip the quantiser by the straight-through trick,
which lives in :mod:`t2i_lib.models.quantize` together with every codebook fix, each behind a switch
that :class:`VQVAEConfig` passes through.

Two models:

- :class:`VQVAE`: the residual conv encoder/decoder of DeepMind's Sonnet VQ-VAE example (the
  configuration that reconstructs CIFAR-10 well: 128 hidden channels, residual blocks with 32
  channels, two stride-2 downsamplings so a 32x32 image becomes an 8x8 grid of tokens, D = 64,
  K = 512, commitment weight 0.25). The code is our own.
- :class:`ResNetVQVAE`: the report's ResNet-101 VQ-VAE (its Figure 3): a torchvision ResNet-101 trunk
  as the encoder, a 1x1 convolution down to D, the quantiser, and a transposed-convolution decoder.

Both follow the library's model contract, ``loss(batch) -> (loss, metrics)``; a batch is an image
tensor, an ``(images, labels)`` tuple, or a dict with an ``"image"`` entry (Shapes, COCO). Both are image
tokenizers (:mod:`t2i_lib.models.tokenizer`): ``encode(images) -> tokens (B, h, w)``,
``decode(tokens) -> images``, ``num_codes``, ``grid_size(image_size) -> (h, w)``, plus
``downsample_factor``, ``embedding_dim`` and ``image_size``. ``decode_latents`` decodes quantised vectors.

Defined in Chapter 4.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from t2i_lib.data.batches import images_of
from t2i_lib.models.blocks import IMAGENET_MEAN, IMAGENET_STD, psnr, residual_decoder, residual_encoder
from t2i_lib.models.checks import check_residual_geometry, check_tokens
from t2i_lib.models.config import resolve_config
from t2i_lib.models.quantize import QuantizerConfig, QuantizerOutput, VectorQuantizer
from t2i_lib.models.tokenizer import ConfigTokenizer, evaluating, module_device


def _quantizer_config(cfg) -> QuantizerConfig:
    return QuantizerConfig(num_codes=cfg.num_codes, dim=cfg.embedding_dim, beta=cfg.beta,
                           **{f.name: getattr(cfg, f.name) for f in fields(_QuantizerSwitches)})


class _VQBase(ConfigTokenizer, nn.Module):
    """What both VQ-VAEs share, the image-tokenizer interface included. Subclasses set ``cfg``,
    ``quantizer`` and ``downsample_factor`` and define ``encode_continuous`` and ``decode_raw`` (images
    before clamping to [0, 1])."""

    cfg: "VQVAEConfig | ResNetVQVAEConfig"
    quantizer: VectorQuantizer
    downsample_factor: int  # image side / token-grid side

    # ------------------------------------------------------------------ the tokenizer interface

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, S, S) in [0, 1] -> code indices (B, h, w), int64: the image's tokens.

        Runs in eval mode whatever the module's mode (a training-mode lookup would move the codebook's
        running statistics, and the ResNet's BatchNorm statistics); the input is moved to the model's device.
        """
        self._check_images(x, f"{type(self).__name__}.encode")
        with evaluating(self):
            return self.quantize(self.encode_continuous(x.to(module_device(self)))).indices

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) -> images (B, C, S, S) in [0, 1]: how tokens from a prior become pictures.
        In eval mode, on the model's device."""
        check_tokens(tokens, self.num_codes, self.grid_size(), f"{type(self).__name__}.decode")
        with evaluating(self):
            return self.decode_latents(self.quantizer.decode_indices(tokens.to(module_device(self)).long()))

    # ------------------------------------------------------------------ the pieces

    def quantize(self, z: torch.Tensor) -> QuantizerOutput:
        """Continuous latents (B, D, h, w) -> QuantizerOutput(quantized, indices (B, h, w), loss, stats)."""
        return self.quantizer(z)

    def decode_latents(self, q: torch.Tensor) -> torch.Tensor:
        """Quantised latents (B, D, h, w) -> images (B, C, S, S) in [0, 1]."""
        d, (h, w) = self.cfg.embedding_dim, self.grid_size()
        if q.dim() != 4 or tuple(q.shape[1:]) != (d, h, w):
            raise ValueError(f"{type(self).__name__}.decode_latents expects latents of shape (B, {d}, {h}, {w}); "
                             f"received shape {tuple(q.shape)} (integer tokens (B, h, w): use decode)")
        return self.decode_raw(q).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction (B, C, S, S) in [0, 1]."""
        return self.decode_latents(self.quantize(self.encode_continuous(x)).quantized)

    # ------------------------------------------------------------------ deprecated names

    @property
    def latent_size(self) -> int:
        """Deprecated: side h = w of the token grid; use ``grid_size()`` (a pair (h, w))."""
        warnings.warn(f"{type(self).__name__}.latent_size is deprecated: use grid_size() (it returns (h, w))",
                      DeprecationWarning, stacklevel=2)
        return self.grid_size()[0]

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Deprecated: the same as :meth:`decode`."""
        warnings.warn(f"{type(self).__name__}.decode_indices is deprecated: use decode(tokens)",
                      DeprecationWarning, stacklevel=2)
        return self.decode(indices)

    def loss(self, batch):
        x = images_of(batch)
        self._check_images(x, f"{type(self).__name__}.loss")
        out = self.quantize(self.encode_continuous(x))
        x_hat = self.decode_raw(out.quantized).float()  # (B, C, S, S), not clamped: clamping kills gradients
        mse = F.mse_loss(x_hat, x.float())
        recon = mse / self.cfg.data_variance if self.cfg.data_variance else mse
        loss = recon + out.loss
        metrics = {"mse": mse.detach(), "vq": out.loss.detach(), "psnr": psnr(x_hat.detach().clamp(0, 1), x.float()),
                   **{k: v for k, v in out.stats.items()}}
        return loss, metrics


@dataclass
class _QuantizerSwitches:
    """The quantiser's fixes for codebook collapse, carried by both VQ-VAE configs under the same names and
    passed through unchanged (see :class:`t2i_lib.models.quantize.QuantizerConfig`)."""
    ema: bool = False
    decay: float = 0.99
    kmeans_init: bool = False
    kmeans_iters: int = 10
    dead_code_threshold: float = 0.0
    l2_normalize: bool = False
    code_dim: int | None = None


@dataclass
class VQVAEConfig(_QuantizerSwitches):
    in_channels: int = 3  # 3 for CIFAR-10 and Shapes, 1 for MNIST
    image_size: int = 32  # must be divisible by 2 ** num_downsamples
    num_hiddens: int = 128  # channels of the encoder's and decoder's main path (Sonnet example: 128)
    num_residual_hiddens: int = 32  # channels inside each residual block (Sonnet: 32)
    num_residual_layers: int = 2  # residual blocks in the encoder and in the decoder (Sonnet: 2)
    num_downsamples: int = 2  # 4x4 stride-2 convs: 32 px -> 8x8 tokens with 2
    embedding_dim: int = 64  # D, channels of the latent grid (Sonnet: 64)
    num_codes: int = 512  # K, codebook size (Sonnet: 512)
    beta: float = 0.25  # commitment weight (the VQ-VAE paper's value)
    # Divide the reconstruction MSE by the data's variance, as the Sonnet example does (CIFAR-10: ~0.063).
    # It weights reconstruction ~16x against the quantiser loss. None: plain MSE.
    data_variance: float | None = None

    def __post_init__(self):
        check_residual_geometry(self)

    @classmethod
    def small(cls, **overrides) -> "VQVAEConfig":
        """The quick profile's size: 64 hidden channels, 16 in the residual blocks, D = 32, K = 64.
        About 8x fewer multiply-adds than the Sonnet configuration; same shape of model."""
        base = dict(num_hiddens=64, num_residual_hiddens=16, embedding_dim=32, num_codes=64)
        return cls(**{**base, **overrides})


class VQVAE(_VQBase):
    """The VQ-VAE of Chapter 4, in the layout of DeepMind's Sonnet example.

    encoder: [conv 4x4 stride 2 + ReLU] x num_downsamples (num_hiddens/2, ..., num_hiddens channels)
             -> conv 3x3 -> residual stack -> conv 1x1 to D                          (B, D, h, w)
    decoder: conv 3x3 D -> num_hiddens -> residual stack
             -> [transposed conv 4x4 stride 2 + ReLU] x (num_downsamples - 1) -> transposed conv to C
             -> + 0.5 (clamped to [0, 1] by ``decode``, not in the loss)             (B, C, S, S)

    Inputs are in [0, 1] and centred to [-0.5, 0.5] inside, and the output is linear (the Sonnet
    example's convention). We tried a sigmoid output first: on Shapes, whose pixels are mostly black,
    the logits ran to large negative values within a few hundred steps, the sigmoid saturated, and the
    model stayed at "everything is background" (test MSE equal to that of an all-black image).

    Defined in Chapter 4.
    """

    def __init__(self, cfg: VQVAEConfig | None = None, **overrides):
        super().__init__()
        cfg = resolve_config(VQVAEConfig, cfg, overrides)
        self.cfg = cfg
        self.downsample_factor = 2 ** cfg.num_downsamples
        self.encoder = residual_encoder(cfg, cfg.embedding_dim)  # ends in the "pre-VQ" 1x1 conv down to D
        self.quantizer = VectorQuantizer(_quantizer_config(cfg))
        self.decoder = residual_decoder(cfg)

    def encode_continuous(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, S, S) in [0, 1] -> latents before quantisation (B, D, h, w)."""
        self._check_images(x, f"{type(self).__name__}.encode_continuous")
        return self.encoder(x - 0.5)

    def decode_raw(self, q: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B, C, S, S) images, not clamped (the decoder predicts x - 0.5)."""
        return self.decoder(q) + 0.5



_TRUNK_STRIDE = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


_TRUNK_CHANNELS = {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}  # ResNet-101 (bottleneck x4)


@dataclass
class ResNetVQVAEConfig(_QuantizerSwitches):
    image_size: int = 32  # CIFAR-10; divisible by the trunk's stride
    # Where the ResNet-101 trunk is cut: "layer4" is the whole trunk (stride 32: a 32 px image becomes a
    # single 1x1 token, useless), "layer2" keeps stride 8 (32 px -> 4x4 tokens), "layer3" stride 16.
    trunk_until: str = "layer2"
    embedding_dim: int = 64  # D: the 1x1 conv maps the trunk's channels down to D
    num_codes: int = 512  # K
    beta: float = 0.25  # commitment weight
    pretrained: bool = False  # ImageNet weights via torchvision (a ~170 MB download; colab profile only)
    freeze_encoder: bool | None = None  # None: frozen iff pretrained
    decoder_width: int = 256  # channels after the first decoder conv; halved at each upsampling
    data_variance: float | None = None  # as in VQVAEConfig

    def __post_init__(self):
        if self.trunk_until not in _TRUNK_STRIDE:
            raise ValueError(f"trunk_until must be one of {tuple(_TRUNK_STRIDE)}, got {self.trunk_until!r}")
        if self.image_size % _TRUNK_STRIDE[self.trunk_until]:
            raise ValueError(f"image_size={self.image_size} must be divisible by the trunk's stride "
                             f"{_TRUNK_STRIDE[self.trunk_until]} (trunk_until={self.trunk_until!r})")
        if self.freeze_encoder is None:
            self.freeze_encoder = bool(self.pretrained)

    @property
    def in_channels(self) -> int:
        return 3  # the trunk's first convolution expects RGB


class ResNetVQVAE(_VQBase):
    """The report's VQ-VAE (its Figure 3): a ResNet-101 trunk as the encoder.

    encode: (B, 3, S, S) -> ImageNet normalisation -> ResNet-101 up to ``trunk_until`` (B, F, h, w)
            -> conv 1x1 to D                                                     (B, D, h, w)
    decode: conv 3x3 D -> W -> [transposed conv 4x4 stride 2 + BatchNorm + ReLU] until S x S (channels
            halving from W, at least 16) -> conv 3x3 to 3 -> + 0.5                (B, 3, S, S)

    ``pretrained=True`` asks torchvision for ``ResNet101_Weights.IMAGENET1K_V2`` (downloaded once; the
    book asks only in the colab profile); otherwise ``weights=None`` and nothing touches the network. A
    frozen trunk keeps its BatchNorm layers in eval mode. Candidly: the report used the whole trunk,
    whose stride 32 reduces a CIFAR image to one position; cutting it after ``layer2`` is our change, so
    that there is a grid of tokens at all.

    Defined in Chapter 4.
    """

    def __init__(self, cfg: ResNetVQVAEConfig | None = None, **overrides):
        super().__init__()
        import torchvision

        cfg = resolve_config(ResNetVQVAEConfig, cfg, overrides)
        self.cfg = cfg
        self.downsample_factor = _TRUNK_STRIDE[cfg.trunk_until]

        weights = torchvision.models.ResNet101_Weights.IMAGENET1K_V2 if cfg.pretrained else None
        resnet = torchvision.models.resnet101(weights=weights)
        parts = [resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool]
        for name in ("layer1", "layer2", "layer3", "layer4"):
            parts.append(getattr(resnet, name))
            if name == cfg.trunk_until:
                break
        self.trunk = nn.Sequential(*parts)
        if cfg.freeze_encoder:
            self.trunk.requires_grad_(False)
        self.register_buffer("img_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("img_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.pre_quant = nn.Conv2d(_TRUNK_CHANNELS[cfg.trunk_until], cfg.embedding_dim, 1)

        self.quantizer = VectorQuantizer(_quantizer_config(cfg))

        w = cfg.decoder_width
        dec = [nn.Conv2d(cfg.embedding_dim, w, 3, padding=1), nn.ReLU()]
        ch = w
        for _ in range(int(math.log2(self.downsample_factor))):
            out = max(ch // 2, 16)
            dec += [nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            ch = out
        dec.append(nn.Conv2d(ch, 3, 3, padding=1))
        self.decoder = nn.Sequential(*dec)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.freeze_encoder:
            self.trunk.eval()  # keep the ImageNet BatchNorm statistics
        return self

    def encode_continuous(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, S, S) in [0, 1] -> latents before quantisation (B, D, h, w)."""
        self._check_images(x, f"{type(self).__name__}.encode_continuous")
        return self.pre_quant(self.trunk((x - self.img_mean) / self.img_std))

    def decode_raw(self, q: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B, 3, S, S) images, not clamped (the decoder predicts x - 0.5)."""
        return self.decoder(q) + 0.5
