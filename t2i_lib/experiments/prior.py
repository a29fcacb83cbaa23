"""A learned prior over a tokenizer's code maps: encode many images once, train a model of the tokens,
sample token maps, decode them, and score the pictures.

Every function here takes any image tokenizer (:mod:`t2i_lib.models.tokenizer`: the VQ-VAEs of Chapter
4, the dVAEs of Chapter 5) and uses only its ``encode``, ``decode``, ``num_codes`` and ``grid_size``.

A VQ-VAE on its own cannot generate: its decoder needs a code map, and a map of codes drawn uniformly at
random decodes to noise, because real images use the codes in very particular arrangements. The recipe of
the VQ-VAE paper (and the report's appendix A.4.2) is a second, separate model of those arrangements:

1. encode a training set into code maps (B, h, w) with the trained, frozen VQ-VAE;
2. fit an autoregressive model of p(code map) to them (here :class:`~t2i_lib.models.pixelcnn.GatedPixelCNN`);
3. sample code maps from it and decode them into images.

Two things this module makes easy, because the chapter needs them:

- **Many code maps, cheaply.** A prior trained on a few thousand maps memorises them (its training loss
  falls far below its held-out loss). Shapes is procedural, so :func:`shapes_code_maps` draws as many
  images as asked and encodes them batch by batch; only the small integer maps are kept.
- **Held-out likelihood.** :func:`nats_per_code` measures the prior on maps it never saw, which is how
  memorising shows up.

Defined in Chapter 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from t2i_lib.data.batches import batched, images_of
from t2i_lib.data.shapes.captions import describe
from t2i_lib.models.tokenizer import tokenizer_image_size

__all__ = ["encode_images", "shapes_code_maps", "nats_per_code", "PriorSamples", "sample_and_score"]


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def encode_images(tokenizer, images, *, batch_size: int = 256) -> torch.Tensor:
    """Code maps of a set of images: (N, h, w) int64 on the CPU, from ``tokenizer.encode``.

    ``images``: a tensor (N, C, S, S) in [0, 1], or a Dataset whose items hold an image (a tensor, an
    ``(image, label)`` tuple or a dict with ``"image"``). The library's tokenizers encode in eval mode
    whatever their mode, and move the images to their own device.

    Defined in Chapter 4.
    """
    if isinstance(images, torch.Tensor):
        if len(images) == 0:
            raise ValueError("encode_images got no images")
        return batched(tokenizer.encode, images, batch_size)  # (N, h, w)
    if not (isinstance(images, Dataset) or hasattr(images, "__getitem__")):
        raise TypeError(f"encode_images expects a tensor (N, C, S, S) or a Dataset; got {type(images).__name__}")
    out = [tokenizer.encode(images_of(b)).cpu() for b in DataLoader(images, batch_size=batch_size, shuffle=False)]
    if not out:
        raise ValueError("encode_images got no images")
    return torch.cat(out)  # (N, h, w)


def _square_size(tokenizer, image_size) -> int:
    size = tokenizer_image_size(tokenizer, image_size)
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise ValueError(f"Shapes images are square; received image_size={tuple(size)}")
        size = size[0]
    return int(size)


@torch.no_grad()
def shapes_code_maps(tokenizer, n: int, *, split: str = "train", seed: int = 0, start: int = 0,
                     batch_size: int = 512, image_size: int | None = None) -> torch.Tensor:
    """Draw ``n`` Shapes images (items ``start .. start + n - 1`` of the split) and encode them with
    ``tokenizer.encode``: (n, h, w) int64 on the CPU. Images are rendered and encoded one batch at a time
    and then dropped, so a hundred thousand maps cost a hundred thousand small integer grids, not the images.

    ``image_size``: the side of the images; default the tokenizer's own ``image_size`` (a tokenizer
    without one, such as :class:`~t2i_lib.models.openai_dvae.OpenAIDVAE`, needs it passed).

    Defined in Chapter 4.
    """
    from t2i_lib.data.shapes.dataset import ShapesDataset

    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    ds = ShapesDataset(image_size=_square_size(tokenizer, image_size), split=split, length=start + n, seed=seed)
    maps = []
    for i in range(start, start + n, batch_size):
        x = torch.stack([ds[j]["image"] for j in range(i, min(start + n, i + batch_size))])  # (b, 3, S, S)
        maps.append(tokenizer.encode(x).cpu())
    return torch.cat(maps)  # (n, h, w)


@torch.no_grad()
def nats_per_code(prior, codes: torch.Tensor, *, batch_size: int = 500) -> float:
    """The prior's mean negative log-likelihood of ``codes`` (N, h, w), in nats per code.

    Compare the value on training maps with the value on held-out maps: a prior that generalises scores
    them alike; one that memorises scores its training maps far better.

    Defined in Chapter 4.
    """
    if codes.dim() != 3:
        raise ValueError(f"nats_per_code expects code maps (N, h, w); received shape {tuple(codes.shape)}")
    was_training = prior.training
    prior.eval()
    device = _device_of(prior)
    total, count = 0.0, 0
    for i in range(0, len(codes), batch_size):
        c = codes[i:i + batch_size].to(device)
        logits = prior(c)  # (b, K, h, w)
        total += float(torch.nn.functional.cross_entropy(logits.float(), c, reduction="sum"))
        count += c.numel()
    prior.train(was_training)
    return total / count


@dataclass
class PriorSamples:
    """Code maps drawn from a prior, the images they decode to, and the Shapes scorer's verdicts.
    Defined in Chapter 4."""

    codes: torch.Tensor  # (n, h, w) int64
    images: torch.Tensor  # (n, C, S, S) in [0, 1], on the CPU
    results: list  # one t2i_lib.data.shapes.ScoreResult per image

    @property
    def valid(self) -> list[bool]:
        return [r.valid for r in self.results]

    @property
    def valid_rate(self) -> float:
        """Fraction of decoded samples the scorer accepts as Shapes images (1 or 2 clean objects)."""
        return sum(self.valid) / len(self.results)

    def labels(self) -> list[str]:
        """A short verdict per image: what the scorer read, or why it rejected the picture."""
        out = []
        for r in self.results:
            if r.valid:
                out.append(describe(r.scene))
            else:
                out.append("rejected: " + r.problems[0])
        return out


@torch.no_grad()
def sample_and_score(prior, tokenizer, n: int, *, generator: torch.Generator | None = None,
                     temperature: float = 1.0, batch_size: int = 256, image_size: int | None = None) -> PriorSamples:
    """Sample ``n`` code maps from ``prior`` on the tokenizer's grid (``tokenizer.grid_size(image_size)``),
    decode them with ``tokenizer.decode``, and score every image with the Shapes scorer
    (:func:`t2i_lib.data.shapes.scoring`).

    ``image_size``: default the tokenizer's own ``image_size`` (see :func:`shapes_code_maps`).

    Defined in Chapter 4.
    """
    from t2i_lib.data.shapes.scoring import score

    k = int(tokenizer.num_codes)
    if prior.cfg.num_codes != k:
        raise ValueError(f"the prior models {prior.cfg.num_codes} codes but the tokenizer's codebook has {k} "
                         f"({type(tokenizer).__name__}.num_codes): train the prior on this tokenizer's code maps")
    grid = tuple(tokenizer.grid_size(_square_size(tokenizer, image_size)))
    codes, images = [], []
    for i in range(0, n, batch_size):
        c = prior.sample(min(batch_size, n - i), grid, generator=generator, temperature=temperature)
        codes.append(c.cpu())
        images.append(tokenizer.decode(c).float().cpu())
    codes_t, images_t = torch.cat(codes), torch.cat(images)
    return PriorSamples(codes_t, images_t, [score(img) for img in images_t])
