"""OpenAI's pretrained DALL-E dVAE: the image tokenizer of DALL-E, re-implemented and loaded safely.

DALL-E turns a 256x256 image into a 32x32 grid of tokens from a vocabulary of 8192 with a discrete VAE,
and OpenAI released that dVAE's encoder and decoder in February 2021 (the ``DALL-E`` package and two
weight files on their CDN). This module rebuilds the same two networks from scratch, with the same
parameter names, so the released weights drop into our own modules:

encoder: image (B, 3, 256, 256), mapped into [0.1, 0.9] -> logits (B, 8192, 32, 32); the token at each
         position is the argmax (the dVAE was trained with a Gumbel-softmax relaxation of this choice)
decoder: one-hot tokens (B, 8192, 32, 32) -> (B, 6, 256, 256): three channels of logit-Laplace means
         (sigmoid, then unmapped back to [0, 1]) and three of log-scales, which only the training loss uses

Both are plain residual CNNs: four groups of residual blocks, a 2x max-pool (encoder) or a 2x
nearest-neighbour upsampling (decoder) between groups, no normalisation layers, and each residual
branch scaled by ``1 / n_layers**2`` (the paper's trick for training a deep stack without normalisation).

**Why loading needs care.** The released files, ``encoder.pkl`` and ``decoder.pkl``, are not state dicts:
they are ``torch.save`` of the whole ``dall_e.Encoder`` / ``dall_e.Decoder`` objects. Unpickling such a
file the ordinary way (``torch.load(..., weights_only=False)``, which is what ``dall_e.load_model``
does) imports whatever classes the file names and calls whatever functions it asks for: a file swapped
on the way to you could run any code on your machine. Here:

1. The file's SHA-256 is compared with a pinned value **before a single byte is unpickled**
   (:func:`convert_pickle`). A mismatch stops there.
2. Even a file with the right hash is read by PyTorch's restricted unpickler
   (``torch.load(weights_only=True)``), which refuses every global that is not on an allow-list. We add
   to that list small inert stand-in classes registered under the exact names the pickle uses
   (``dall_e.encoder.Encoder``, ``torch.nn.modules.activation.ReLU``, ...). A stand-in has no methods:
   building one only fills its ``__dict__`` with the stored attributes, so no code from ``dall_e`` or
   from the file runs. We then walk the tree of stand-ins and copy out the tensors under the usual
   dotted names (``blocks.group_1.block_1.res_path.conv_1.w``). (Files in PyTorch's pre-1.6 format,
   which ``weights_only`` cannot read when they hold whole modules, go through Python's unpickler with
   the same allow-list enforced in ``find_class``; we do not know which format the release uses, so
   both are handled and tested.)
3. :meth:`OpenAIDVAE.pretrained` does this once and writes the weights as ``.safetensors`` beside the
   download (atomically); from then on only the safetensors file, which cannot contain code, is read.

Where the pins stand: we did not find a SHA-256 for these two files published by OpenAI or recorded by
a project we could check, and we will not make one up. So ``OPENAI_DVAE_FILES[...].sha256`` is ``None``
and :meth:`OpenAIDVAE.pretrained` refuses to unpickle until you pass ``sha256={...}`` yourself (its
error message says how to compute and check it). Once someone has verified the hashes, pin them here.

If you load the pickles the ordinary way with the ``dall_e`` package on torch >= 1.11, see
:func:`fix_upsample`.

Defined in Chapter 5.
"""

from __future__ import annotations

import math
import pickle
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from t2i_lib.models.checks import InputDtypeError, check_images, check_tokens
from t2i_lib.models.config import resolve_config
from t2i_lib.models.tokenizer import module_device, token_grid
from t2i_lib.storage.checkpoint import CheckpointError, load_model_state, load_weights, save_weights
from t2i_lib.storage.download import DownloadError, cache_dir, fetch, human_size, sha256_file
from t2i_lib.storage.unpickle import collect_tensors, make_standin, restricted_pickle_module


LOGIT_LAPLACE_EPS = 0.1  # the dVAE sees pixels in [eps, 1 - eps], never exactly 0 or 1


def _check_float(x: torch.Tensor, who: str) -> None:
    """Pixels of any shape must be floating point (the same message as :func:`check_images`)."""
    if not torch.is_floating_point(x):
        hint = " (8-bit images: x.float() / 255)" if x.dtype == torch.uint8 else " (x.float())"
        raise InputDtypeError(f"{who} expects a floating-point tensor with values in [0, 1]; received dtype "
                              f"{x.dtype}{hint}")


def map_pixels(x: torch.Tensor, eps: float = LOGIT_LAPLACE_EPS) -> torch.Tensor:
    """[0, 1] -> [eps, 1 - eps]: ``(1 - 2 eps) x + eps``, what the dVAE encoder expects as input.

    The dVAE models pixels with a *logit-Laplace* distribution, a Laplace on ``logit(x)``, whose
    support is the open interval (0, 1); squeezing the pixels away from 0 and 1 keeps ``logit(x)``
    finite. The DALL-E paper (its appendix on the dVAE) uses eps = 0.1.

    Defined in Chapter 5.
    """
    _check_float(x, "map_pixels")
    return (1 - 2 * eps) * x + eps


def unmap_pixels(x: torch.Tensor, eps: float = LOGIT_LAPLACE_EPS) -> torch.Tensor:
    """The inverse of :func:`map_pixels`, clamped to [0, 1]: ``clamp((x - eps) / (1 - 2 eps), 0, 1)``.

    Defined in Chapter 5.
    """
    _check_float(x, "unmap_pixels")
    return ((x - eps) / (1 - 2 * eps)).clamp(0, 1)


@dataclass
class OpenAIDVAEConfig:
    """The architecture. The release's ``dall_e.Encoder`` / ``Decoder`` call three of these fields
    ``vocab_size``, ``input_channels`` and ``output_channels``; here they carry the library's names
    (``num_codes``, ``in_channels``, ``out_channels``, as in every tokenizer config)."""

    n_hid: int = 256  # channels of the first group; group g has n_hid * 2**(g-1) in the encoder (release: 256)
    n_blk_per_group: int = 2  # residual blocks per group (release: 2)
    group_count: int = 4  # groups; the grid shrinks 2x between groups: downsample_factor = 2**(group_count-1)
    num_codes: int = 8192  # K, the number of image tokens (release: 8192; dall_e's vocab_size)
    n_init: int = 128  # channels the decoder's first 1x1 conv maps the one-hot tokens to (release: 128)
    in_channels: int = 3  # RGB in (dall_e's input_channels)
    out_channels: int = 3  # RGB out; the decoder emits 2x this: means and log-scales (dall_e's output_channels)


class _Conv(nn.Module):
    """A 'same'-padded convolution whose parameters are called ``w`` and ``b``, as in OpenAI's release.

    ``keep_fp32``: run in float32 even inside an autocast region. The release does this for the two
    convolutions that touch the 8192-way vocabulary (the encoder's logits and the decoder's input):
    half precision there can change which of 8192 logits is largest.
    """

    def __init__(self, n_in: int, n_out: int, kw: int, *, keep_fp32: bool = False):
        super().__init__()
        if kw % 2 != 1:
            raise ValueError(f"kernel width must be odd for 'same' padding; received {kw}")
        self.n_in, self.n_out, self.kw, self.keep_fp32 = n_in, n_out, kw, keep_fp32
        # The release's initialisation: N(0, 1 / fan_in) weights, zero biases.
        self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / math.sqrt(n_in * kw * kw))  # (C_out, C_in, k, k)
        self.b = nn.Parameter(torch.zeros(n_out))  # (C_out,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keep_fp32 and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(device_type=x.device.type, enabled=False):
                return F.conv2d(x.float(), self.w.float(), self.b.float(), padding=self.kw // 2)
        return F.conv2d(x, self.w, self.b, padding=self.kw // 2)

    def extra_repr(self) -> str:
        return f"{self.n_in}, {self.n_out}, kernel_size={self.kw}" + (", keep_fp32" if self.keep_fp32 else "")


class _ResBlock(nn.Module):
    """``x -> id_path(x) + post_gain * res_path(x)``, with a bottleneck of n_out / 4 channels.

    The identity path is a 1x1 conv only where the channel count changes. ``post_gain = 1 / L**2`` for
    ``L`` blocks in the whole network shrinks each residual branch so that the sum of ``L`` of them
    starts small: the release trains a deep stack with no normalisation layers this way.
    The encoder's kernels are (3, 3, 3, 1), the decoder's (1, 3, 3, 3).
    """

    def __init__(self, n_in: int, n_out: int, n_layers: int, kernels: tuple[int, int, int, int]):
        super().__init__()
        if n_out % 4:
            raise ValueError(f"a residual block's output channels must be divisible by 4; received {n_out}")
        n_hid = n_out // 4
        self.post_gain = 1 / n_layers ** 2
        self.id_path = _Conv(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        widths = [(n_in, n_hid), (n_hid, n_hid), (n_hid, n_hid), (n_hid, n_out)]
        layers = []
        for i, ((a, b), k) in enumerate(zip(widths, kernels), start=1):
            layers += [(f"relu_{i}", nn.ReLU()), (f"conv_{i}", _Conv(a, b, k))]
        self.res_path = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.id_path(x) + self.post_gain * self.res_path(x)


def _check_config(cfg: OpenAIDVAEConfig) -> None:
    if cfg.n_hid < 4 or cfg.n_hid % 4:
        raise ValueError(f"n_hid must be a positive multiple of 4; received {cfg.n_hid}")
    if cfg.n_blk_per_group < 1 or cfg.group_count < 1:
        raise ValueError(f"n_blk_per_group and group_count must be >= 1; received {cfg.n_blk_per_group}, "
                         f"{cfg.group_count}")
    if cfg.num_codes < 1:
        raise ValueError(f"num_codes must be positive; received {cfg.num_codes}")


class DVAEEncoder(nn.Module):
    """The dVAE encoder: mapped images (B, C, H, W) -> token logits (B, num_codes, H/8, W/8).

    Input must already be mapped with :func:`map_pixels`; :meth:`OpenAIDVAE.encode` does that for you.

    Defined in Chapter 5.
    """

    def __init__(self, cfg: OpenAIDVAEConfig | None = None, **overrides):
        super().__init__()
        self.cfg = cfg = resolve_config(OpenAIDVAEConfig, cfg, overrides)
        _check_config(cfg)
        n_layers = cfg.group_count * cfg.n_blk_per_group
        blocks: list[tuple[str, nn.Module]] = [("input", _Conv(cfg.in_channels, cfg.n_hid, 7))]
        width = cfg.n_hid
        for g in range(cfg.group_count):
            out = cfg.n_hid * 2 ** g
            group = [(f"block_{i + 1}", _ResBlock(width if i == 0 else out, out, n_layers, (3, 3, 3, 1)))
                     for i in range(cfg.n_blk_per_group)]
            width = out
            if g < cfg.group_count - 1:
                group.append(("pool", nn.MaxPool2d(kernel_size=2)))
            blocks.append((f"group_{g + 1}", nn.Sequential(OrderedDict(group))))
        blocks.append(("output", nn.Sequential(OrderedDict([
            ("relu", nn.ReLU()), ("conv", _Conv(width, cfg.num_codes, 1, keep_fp32=True))]))))
        self.blocks = nn.Sequential(OrderedDict(blocks))

    @property
    def downsample_factor(self) -> int:
        """Image side / token-grid side: 2 for every max-pool between groups."""
        return 2 ** (self.cfg.group_count - 1)

    def forward(self, x: torch.Tensor, who: str = "DVAEEncoder") -> torch.Tensor:
        check_images(x, self.cfg.in_channels, None, who, multiple_of=self.downsample_factor)
        return self.blocks(x)  # (B, num_codes, H/f, W/f)


class DVAEDecoder(nn.Module):
    """The dVAE decoder: one-hot tokens (B, num_codes, h, w) -> (B, 2 * C, 8h, 8w) logit-Laplace parameters.

    Channels ``[:C]`` are the means in logit space (``sigmoid`` then :func:`unmap_pixels` gives the
    image); channels ``[C:]`` are log-scales, used only by the training loss.
    :meth:`from_indices` takes integer tokens instead of a one-hot tensor.

    Defined in Chapter 5.
    """

    def __init__(self, cfg: OpenAIDVAEConfig | None = None, **overrides):
        super().__init__()
        self.cfg = cfg = resolve_config(OpenAIDVAEConfig, cfg, overrides)
        _check_config(cfg)
        n_layers = cfg.group_count * cfg.n_blk_per_group
        blocks: list[tuple[str, nn.Module]] = [("input", _Conv(cfg.num_codes, cfg.n_init, 1, keep_fp32=True))]
        width = cfg.n_init
        for g in range(cfg.group_count):
            out = cfg.n_hid * 2 ** (cfg.group_count - 1 - g)
            group = [(f"block_{i + 1}", _ResBlock(width if i == 0 else out, out, n_layers, (1, 3, 3, 3)))
                     for i in range(cfg.n_blk_per_group)]
            width = out
            if g < cfg.group_count - 1:
                group.append(("upsample", nn.Upsample(scale_factor=2, mode="nearest")))
            blocks.append((f"group_{g + 1}", nn.Sequential(OrderedDict(group))))
        blocks.append(("output", nn.Sequential(OrderedDict([
            ("relu", nn.ReLU()), ("conv", _Conv(width, 2 * cfg.out_channels, 1))]))))
        self.blocks = nn.Sequential(OrderedDict(blocks))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        v = self.cfg.num_codes
        if z.dim() != 4 or z.shape[1] != v:
            raise ValueError(f"DVAEDecoder expects one-hot tokens of shape (B, {v}, h, w); received shape "
                             f"{tuple(z.shape)} (integer tokens (B, h, w): use DVAEDecoder.from_indices)")
        _check_float(z, "DVAEDecoder")
        return self.blocks(z)  # (B, 2C, 8h, 8w)

    def from_indices(self, tokens: torch.Tensor) -> torch.Tensor:
        """Integer tokens (B, h, w) -> (B, 2C, 8h, 8w); the same numbers as ``forward(one_hot(tokens))``.

        A 1x1 convolution applied to a one-hot vector just picks one column of its weight matrix, so we
        look the column up instead of building a (B, 8192, h, w) one-hot tensor (32 MB per 256 px image
        in float32). The rest of the decoder runs as usual.
        """
        conv = self.blocks.input
        w = conv.w[:, :, 0, 0]  # (n_init, V)
        x = w.t()[tokens] + conv.b  # (B, h, w, n_init)
        x = x.permute(0, 3, 1, 2).contiguous()  # (B, n_init, h, w)
        for name, module in self.blocks.named_children():
            if name != "input":
                x = module(x)
        return x  # (B, 2C, 8h, 8w)


class OpenAIDVAE(nn.Module):
    """DALL-E's image tokenizer: :meth:`encode` images to tokens, :meth:`decode` tokens to images.

    ``OpenAIDVAE()`` is the released architecture with random weights (shapes only: what the quick
    profile shows offline); :meth:`pretrained` loads OpenAI's weights. The model is frozen: ``encode``
    and ``decode`` run without gradients.

    An image tokenizer (:mod:`t2i_lib.models.tokenizer`): ``encode``, ``decode``, ``num_codes``,
    ``grid_size(image_size) -> (h, w)``, plus ``downsample_factor`` (8), ``embedding_dim`` (``n_init``:
    the decoder's first 1x1 convolution turns each token into a vector of that width) and ``image_size``
    (None: any H and W that are multiples of 8 work; the release was trained at 256 x 256).

    Defined in Chapter 5.
    """

    image_size = None  # no fixed size: any multiple of downsample_factor

    def __init__(self, cfg: OpenAIDVAEConfig | None = None, **overrides):
        super().__init__()
        self.cfg = resolve_config(OpenAIDVAEConfig, cfg, overrides)
        self.encoder = DVAEEncoder(self.cfg)
        self.decoder = DVAEDecoder(self.cfg)

    # ------------------------------------------------------------------ the tokenizer interface

    @property
    def num_codes(self) -> int:
        """K, the vocabulary (8192 for the release)."""
        return self.cfg.num_codes

    @property
    def downsample_factor(self) -> int:
        """Image side / token-grid side (8 for the release: 256 px -> 32 x 32 tokens)."""
        return self.encoder.downsample_factor

    @property
    def embedding_dim(self) -> int:
        """The width of a token's embedding: the decoder's first 1x1 conv maps token k to column k of its
        weights (plus the bias), a vector of ``n_init`` numbers."""
        return self.cfg.n_init

    def grid_size(self, image_size) -> tuple[int, int]:
        """(h, w) = (H / 8, W / 8) for an image of side ``image_size`` (an int, or a pair (H, W))."""
        return token_grid(image_size, self.downsample_factor, None, type(self).__name__)

    @torch.no_grad()
    def encode_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> logits over the vocabulary (B, num_codes, H/8, W/8)."""
        check_images(images, self.cfg.in_channels, None, "OpenAIDVAE.encode", multiple_of=self.downsample_factor)
        x = map_pixels(images.to(module_device(self)).float())
        return self.encoder(x, "OpenAIDVAE.encode").float()

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1], H and W multiples of 8 -> tokens (B, H/8, W/8) int64 in [0, num_codes).

        The most likely token at each position (the argmax of the logits), as DALL-E used it.
        """
        return self.encode_logits(images).argmax(dim=1)  # (B, h, w)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, h, w) integers in [0, num_codes) -> images (B, 3, 8h, 8w) in [0, 1]."""
        check_tokens(tokens, self.num_codes, None, "OpenAIDVAE.decode")
        stats = self.decoder.from_indices(tokens.to(module_device(self)).long()).float()  # (B, 6, H, W)
        c = self.cfg.out_channels
        return unmap_pixels(torch.sigmoid(stats[:, :c]))  # (B, 3, H, W)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the tokens: (B, 3, H, W) in [0, 1] -> (B, 3, H, W) in [0, 1]."""
        return self.decode(self.encode(images))

    # ------------------------------------------------------------------ deprecated names

    @property
    def vocab_size(self) -> int:
        """Deprecated: use ``num_codes``."""
        warnings.warn("OpenAIDVAE.vocab_size is deprecated: use num_codes", DeprecationWarning, stacklevel=2)
        return self.num_codes

    @property
    def downsample(self) -> int:
        """Deprecated: use ``downsample_factor``."""
        warnings.warn("OpenAIDVAE.downsample is deprecated: use downsample_factor", DeprecationWarning, stacklevel=2)
        return self.downsample_factor

    def decode_indices(self, tokens: torch.Tensor) -> torch.Tensor:
        """Deprecated: the same as :meth:`decode`."""
        warnings.warn("OpenAIDVAE.decode_indices is deprecated: use decode(tokens)", DeprecationWarning, stacklevel=2)
        return self.decode(tokens)

    @classmethod
    def pretrained(cls, profile=None, *, download: bool | None = None, device: str | torch.device | None = None,
                   sha256: dict[str, str] | None = None, cfg: OpenAIDVAEConfig | None = None) -> "OpenAIDVAE":
        """OpenAI's released dVAE weights in our modules, frozen, in eval mode, on ``device``.

        First call: fetches ``encoder.pkl`` and ``decoder.pkl`` into ``cache_dir("weights/openai_dvae")``
        through :func:`t2i_lib.storage.download.fetch` (``download`` defaults to True only in the colab profile;
        offline, a missing file raises :class:`~t2i_lib.storage.download.DownloadError` with the URL and the path to put it at),
        checks each file's SHA-256, reads it with :func:`convert_pickle` (no code from the file runs) and
        writes ``encoder.safetensors`` / ``decoder.safetensors`` beside it. Later calls read only the
        safetensors files.

        ``sha256``: ``{"encoder": ..., "decoder": ...}``, the hashes to check against where the library
        pins none (see the module docstring) or to override the pins. ``device``: default the profile's.
        ``cfg``: the architecture, default the release's (tests use small ones).

        Defined in Chapter 5.
        """
        from t2i_lib.profiles import Profile, get_profile

        prof = profile if isinstance(profile, Profile) else get_profile(profile)
        if download is None:
            download = prof.name == "colab"
        device = torch.device(device) if device is not None else prof.device
        sha256 = dict(sha256 or {})
        unknown = set(sha256) - set(OPENAI_DVAE_FILES)
        if unknown:
            raise ValueError(f"sha256 keys must be among {sorted(OPENAI_DVAE_FILES)}; received {sorted(unknown)}")

        folder = cache_dir(_CACHE_SUBDIR)
        # Resolve both files before building anything, so a missing one fails fast and says where it goes.
        plan = {part: _resolve(part, folder, sha256.get(part) or OPENAI_DVAE_FILES[part].sha256, bool(download))
                for part in OPENAI_DVAE_FILES}
        unverified = {part: path for part, (kind, path, _) in plan.items() if kind == "unverified"}
        if unverified:
            raise _refuse_unverified(unverified)
        model = cls(cfg)
        for part, (kind, path, expected) in plan.items():
            module = getattr(model, part)
            if kind == "safetensors":
                load_weights(module, path)
                continue
            spec = OPENAI_DVAE_FILES[part]
            state = convert_pickle(path, expected, expect=spec.root_class)
            load_model_state(module, state, path)
            save_weights(module, path.with_suffix(".safetensors"),
                         metadata={"source_url": spec.url, "source_sha256": expected,
                                   "config": repr(asdict(model.cfg))})
        return model.to(device).eval().requires_grad_(False)


@dataclass(frozen=True)
class PretrainedFile:
    url: str
    sha256: str | None  # None: not pinned (see the module docstring); pretrained() then needs sha256=
    size: int | None  # bytes, for messages; None where we have no verified number
    root_class: str  # the class the pickle's top object claims to be
    approx: str  # for messages: the parameter count of the released architecture (counted, not measured)


_CACHE_SUBDIR = "weights/openai_dvae"


# The released files. No SHA-256 or byte size is pinned: we found none that we could trace to OpenAI or
# verify independently, and a made-up pin is worse than none. The parameter counts are those of the
# released architecture (OpenAIDVAEConfig defaults), counted from our modules.
OPENAI_DVAE_FILES: dict[str, PretrainedFile] = {
    "encoder": PretrainedFile(url="https://cdn.openai.com/dall-e/encoder.pkl", sha256=None, size=None,
                              root_class="dall_e.encoder.Encoder", approx="53.8 M parameters"),
    "decoder": PretrainedFile(url="https://cdn.openai.com/dall-e/decoder.pkl", sha256=None, size=None,
                              root_class="dall_e.decoder.Decoder", approx="43.8 M parameters"),
}


def _st_source_hash(path: Path) -> str | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("source_sha256")
    except Exception:  # unreadable or not a safetensors file: treat as absent and convert again
        return None


def _resolve(part: str, folder: Path, expected: str | None, download: bool) -> tuple[str, Path, str | None]:
    """What to load for one part: ("safetensors" | "pickle" | "unverified" (no hash to check), path, hash)."""
    spec = OPENAI_DVAE_FILES[part]
    pkl = folder / Path(spec.url).name
    st = pkl.with_suffix(".safetensors")
    expected = expected.strip().lower() if expected else None
    if st.is_file():
        source = _st_source_hash(st)
        # A conversion made from a file with the hash we expect (or any earlier verified conversion when
        # no hash is pinned) is reused; one made from a different file is redone.
        if source is not None and (expected is None or source == expected):
            return "safetensors", st, source
    try:
        fetch(spec.url, expected, pkl, size=spec.size, desc=f"DALL-E dVAE {part} ({spec.approx})",
              allow_download=download)
    except DownloadError as e:
        raise DownloadError(
            f"OpenAI's pretrained dVAE needs its {part} file (the pickled {part}, {spec.approx}).\n{e}\n"
            f"(Or pass download=True. Without the files, OpenAIDVAE() builds the same architecture with "
            f"random weights: the shapes are right, the tokens are meaningless.)") from e
    return ("pickle" if expected else "unverified"), pkl, expected


def _refuse_unverified(paths: dict[str, Path]) -> CheckpointError:
    lines = [f"  {part}: {p}\n    SHA-256 {sha256_file(p)} ({human_size(p.stat().st_size)}), from "
             f"{OPENAI_DVAE_FILES[part].url}" for part, p in paths.items()]
    return CheckpointError(
        "t2i_lib pins no SHA-256 for OpenAI's dVAE files, so it will not unpickle them: a pickle is a "
        "program, and only a hash ties these bytes to the files OpenAI published. On disk now:\n"
        + "\n".join(lines) + "\n"
        "Compare each hash with one from a source you trust (for example, download the file again on "
        "another machine or network and run `sha256sum encoder.pkl decoder.pkl`), then pass the hashes "
        "explicitly:\n"
        "    OpenAIDVAE.pretrained(sha256={'encoder': '<hex>', 'decoder': '<hex>'})\n"
        "Copying the hashes printed here only proves the files have not changed since this message.")


# Every class the released pickles name, and only those: OpenAI's classes and the torch.nn modules
# their networks contain. (Tensors, parameters, OrderedDict, set and torch.device are on PyTorch's own
# allow-list for weights_only loading.)
_STANDIN_NAMES = (
    "dall_e.encoder.Encoder", "dall_e.encoder.EncoderBlock",
    "dall_e.decoder.Decoder", "dall_e.decoder.DecoderBlock",
    "dall_e.utils.Conv2d",
    "torch.nn.modules.container.Sequential", "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.linear.Identity", "torch.nn.modules.pooling.MaxPool2d",
    "torch.nn.modules.upsampling.Upsample",
)


_STANDINS = {n: make_standin(n) for n in _STANDIN_NAMES}


def convert_pickle(path: str | Path, sha256: str, *, expect: str | None = None) -> dict[str, torch.Tensor]:
    """Read a pickled ``dall_e`` module into a flat state dict, without running any code from the file.

    1. The file's SHA-256 must equal ``sha256``; it is checked before anything is unpickled. A mismatch
       (or no hash at all) raises :class:`~t2i_lib.storage.checkpoint.CheckpointError` showing both hashes.
    2. ``torch.load(weights_only=True)`` reads it, with inert stand-in classes allow-listed under the
       names the release uses (``dall_e.encoder.Encoder``, ``torch.nn.modules.activation.ReLU``, ...).
       Any other global in the file (a function to call, another class) is refused.
    3. The tree of stand-ins is walked and its tensors returned under the usual dotted names, e.g.
       ``blocks.group_1.block_1.res_path.conv_1.w``, ready for ``DVAEEncoder().load_state_dict``.

    ``expect``: the class name the top object must carry (e.g. ``"dall_e.decoder.Decoder"``).

    Defined in Chapter 5.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No file at {path}.")
    if not sha256:
        raise CheckpointError(f"convert_pickle needs the expected SHA-256 of {path}: unpickling an unverified "
                              f"file is what this function exists to avoid.")
    expected = sha256.strip().lower()
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(
            f"SHA-256 mismatch for {path}:\n  expected {expected}\n  got      {actual}\n"
            f"Nothing was unpickled. The file is not the one the hash describes: a corrupted or "
            f"different download (delete it and fetch it again), or the wrong hash.")
    standins = list(_STANDINS.values())
    try:
        if zipfile.is_zipfile(path):  # the format torch.save has written by default since PyTorch 1.6
            with torch.serialization.safe_globals([(c, c._pickled_name) for c in standins]):
                root = torch.load(path, map_location="cpu", weights_only=True)
        else:  # the older format; torch's weights_only loader refuses whole modules in it (see below)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "couldn't retrieve source code" for the stand-ins
                root = torch.load(path, map_location="cpu", pickle_module=restricted_pickle_module(_STANDINS), weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError) as e:
        msg = str(e).strip().splitlines()
        detail = next((line for line in msg if "global" in line.lower()), msg[0] if msg else "")
        detail = detail.split(" Please use")[0].strip()  # not torch's advice to allow-list it: don't
        raise CheckpointError(
            f"{path} has the expected hash but could not be read as a pickled dall_e module by the "
            f"restricted unpickler, which only allows tensors and stand-ins for "
            f"{', '.join(_STANDIN_NAMES)}. Nothing from the file was executed.\n  {type(e).__name__}: "
            f"{detail}") from e
    name = getattr(type(root), "_pickled_name", type(root).__name__)
    if expect is not None and name != expect:
        raise CheckpointError(f"{path} holds a {name}, not the expected {expect}.")
    out: dict[str, torch.Tensor] = {}
    collect_tensors(root, "", out)
    if not out:
        raise CheckpointError(f"{path} holds a {name} with no tensors in it.")
    return out


def fix_upsample(module: nn.Module) -> nn.Module:
    """Make ``nn.Upsample`` layers unpickled from an old PyTorch work again (for the unsafe, classic load).

    If you load the released ``decoder.pkl`` the way OpenAI's notebook does (``dall_e.load_model``, i.e.
    ``torch.load`` of the whole object), the ``nn.Upsample`` objects inside come back with exactly the
    attributes they had when the file was saved, with an older PyTorch. Since torch 1.11,
    ``Upsample.forward`` passes ``self.recompute_scale_factor`` to ``F.interpolate``, an attribute the
    old objects never had, so the decoder fails with ``AttributeError: 'Upsample' object has no
    attribute 'recompute_scale_factor'`` (openai/DALL-E issues #54 and #71). Pickling restores an
    object's ``__dict__`` without calling ``__init__``, which is why the new default never gets set.
    This sets it (to None, the default, which gives the old behaviour) on every Upsample in ``module``
    that lacks it, and returns ``module``.

    :meth:`OpenAIDVAE.pretrained` never needs this: our decoder is built fresh and only tensors are
    taken from the file.

    Defined in Chapter 5.
    """
    for m in module.modules():
        if isinstance(m, nn.Upsample) and "recompute_scale_factor" not in m.__dict__:
            m.recompute_scale_factor = None
    return module
