"""The image-tokenizer interface that the VQ-VAEs (Chapter 4) and both dVAEs (Chapter 5) share.

An image tokenizer turns images into grids of integers and back. Four models implement it:
:class:`~t2i_lib.models.vqvae.VQVAE`, :class:`~t2i_lib.models.vqvae.ResNetVQVAE`,
:class:`~t2i_lib.models.dvae.DVAE` and :class:`~t2i_lib.models.openai_dvae.OpenAIDVAE`. Everything that
consumes tokens (the token cache, the PixelCNN prior helpers, the codebook explorer, the token
statistics) uses only these four members, so any of the four models, or a tokenizer of your own, fits:

- ``encode(images) -> tokens``: images (B, C, H, W), float in [0, 1] -> LongTensor (B, h, w) in [0, K)
- ``decode(tokens) -> images``: LongTensor (B, h, w) -> images (B, C, H, W) in [0, 1]
- ``num_codes``: K, the vocabulary size (an int)
- ``grid_size(image_size) -> (h, w)``: the token grid of an ``image_size`` image (an int S or a pair
  (H, W)), always a pair ``(h, w)``

The library's four also promise: ``encode`` and ``decode`` take inputs on any device (they move them to
the model's own) and return results on the model's device; ``encode`` runs without gradients and without
side effects (whatever the module's mode, nothing moves: no codebook statistics, no BatchNorm statistics);
both check their inputs with :mod:`t2i_lib.models.checks`. And they name the same things the same way:
``downsample_factor`` (image side / grid side), ``embedding_dim`` (the width of a code's embedding, what
the decoder sees), ``image_size`` (the side the model was built for, None when any multiple of
``downsample_factor`` works), and ``num_codes`` in their configs too.

Defined in Chapter 4.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from t2i_lib.models.checks import check_images

__all__ = ["ImageTokenizer", "ConfigTokenizer", "num_codes_of", "tokenizer_image_size", "token_grid", "evaluating", "module_device"]


@runtime_checkable
class ImageTokenizer(Protocol):
    """What the token consumers need from an image tokenizer (see the module docstring).

    ``isinstance(model, ImageTokenizer)`` checks that the four members exist (not their signatures).

    Defined in Chapter 4.
    """

    @property
    def num_codes(self) -> int: ...

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...

    def decode(self, tokens: torch.Tensor) -> torch.Tensor: ...

    def grid_size(self, image_size) -> tuple[int, int]: ...


def num_codes_of(x) -> int:
    """``x`` as a vocabulary size: an int K, or anything with a ``num_codes`` (a tokenizer, a prior's config).

    Defined in Chapter 4.
    """
    if isinstance(x, bool):
        raise TypeError(f"num_codes must be an int or a tokenizer; received {x!r}")
    if isinstance(x, int):
        return x
    k = getattr(x, "num_codes", None)
    if k is None:
        raise TypeError(f"num_codes must be an int or a tokenizer with a num_codes attribute; received "
                        f"{type(x).__name__}")
    return int(k)


def tokenizer_image_size(tokenizer, image_size=None) -> int | tuple[int, int]:
    """``image_size`` if given, else the tokenizer's own ``image_size`` (VQVAE, ResNetVQVAE and DVAE have
    one; OpenAIDVAE takes any multiple of 8, so it needs ``image_size`` passed).

    Defined in Chapter 4.
    """
    if image_size is None:
        image_size = getattr(tokenizer, "image_size", None)
    if image_size is None:
        raise ValueError(f"{type(tokenizer).__name__} has no fixed image size: pass image_size= (e.g. 32, or 256 "
                         f"for OpenAI's released dVAE)")
    return image_size


def token_grid(image_size, downsample_factor: int, native: int | None, who: str) -> tuple[int, int]:
    """The ``grid_size`` of a tokenizer that divides the image side by ``downsample_factor`` and, when
    ``native`` is not None, only encodes ``native`` x ``native`` images. ``image_size=None`` means ``native``.

    Defined in Chapter 4.
    """
    if image_size is None:
        if native is None:
            raise ValueError(f"{who}.grid_size needs an image size: any multiple of {downsample_factor} works")
        image_size = native
    if isinstance(image_size, (tuple, list, torch.Size)):
        if len(image_size) != 2:
            raise ValueError(f"{who}.grid_size expects an image size S or (H, W); received {tuple(image_size)}")
        hw = (int(image_size[0]), int(image_size[1]))
    else:
        hw = (int(image_size), int(image_size))
    if native is not None and hw != (native, native):
        raise ValueError(f"{who} encodes {native} x {native} images only (its config's image_size); received "
                         f"image_size={image_size}")
    if hw[0] % downsample_factor or hw[1] % downsample_factor or min(hw) < 1:
        raise ValueError(f"{who} needs image sides that are positive multiples of its downsample_factor "
                         f"{downsample_factor}; received image_size={image_size}")
    return hw[0] // downsample_factor, hw[1] // downsample_factor


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); the CPU for one with neither.

    Defined in Chapter 4.
    """
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


@contextmanager
def evaluating(module: nn.Module):
    """Run a block with ``module`` in eval mode, and put it back in the mode it was in afterwards.

    Defined in Chapter 4.
    """
    was = module.training
    module.train(False)
    try:
        yield module
    finally:
        module.train(was)


class ConfigTokenizer:
    """The members of the tokenizer interface that follow from a config, for models built for one image size.

    A subclass (an ``nn.Module``) has ``cfg`` with ``num_codes``, ``embedding_dim``, ``image_size`` and
    ``in_channels``, and sets ``downsample_factor``; it defines ``encode`` and ``decode`` itself. The
    VQ-VAEs (Chapter 4) and the dVAE (Chapter 5) use it; OpenAI's dVAE, which takes any multiple of 8, does not.

    Defined in Chapter 4.
    """

    downsample_factor: int  # image side / token-grid side

    @property
    def num_codes(self) -> int:
        """K, the vocabulary of image tokens."""
        return self.cfg.num_codes

    @property
    def embedding_dim(self) -> int:
        """D, the width of a code's embedding (what the decoder sees)."""
        return self.cfg.embedding_dim

    @property
    def image_size(self) -> int:
        """The side S of the images this model encodes (its config's image_size)."""
        return self.cfg.image_size

    def grid_size(self, image_size=None) -> tuple[int, int]:
        """(h, w) of the token grid of an ``image_size`` image (default, and the only size it encodes: the
        config's ``image_size``): ``image_size // downsample_factor`` on each side."""
        return token_grid(image_size, self.downsample_factor, self.cfg.image_size, type(self).__name__)

    def _check_images(self, x: torch.Tensor, who: str | None = None) -> None:
        check_images(x, self.cfg.in_channels, self.cfg.image_size, who or type(self).__name__)
