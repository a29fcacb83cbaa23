"""The one validation of image batches and token grids, each failure with a message a learner can act on.

Every image tokenizer (Chapters 4-5), the PixelCNN prior, the token cache, the token statistics and the
codebook explorer check their inputs with these functions, so the same mistake reads the same everywhere:

- a wrong **shape** says the expected shape and the received one (and, for a missing batch dimension,
  how to add it);
- a wrong **dtype** says what to pass instead (``x.float() / 255`` for 8-bit images, ``t.long()`` for
  float tokens); it raises :class:`InputDtypeError`, which is both a TypeError and a ValueError;
- **out-of-range tokens** say the valid range for this ``num_codes`` and the offending min and max.

The functions live here, in ``data``, because the token cache (this layer) needs them; models and
everything above import them from :mod:`t2i_lib.models.checks`, which re-exports them.

Defined in Chapter 1 (images) and Chapter 4 (tokens).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["InputDtypeError", "check_images", "check_tokens", "check_token_values", "check_code"]


class InputDtypeError(TypeError, ValueError):
    """An input tensor of the wrong dtype (float tokens, 8-bit images, ...). Both a TypeError and a
    ValueError, so ``except TypeError`` and ``except ValueError`` both catch it."""


def _shape(x) -> tuple:
    return tuple(int(s) for s in x.shape)


def _size_pair(size) -> tuple[int, int]:
    if isinstance(size, (tuple, list, torch.Size)):
        if len(size) != 2:
            raise ValueError(f"an image size is an int S or a pair (H, W); received {tuple(size)}")
        return int(size[0]), int(size[1])
    return int(size), int(size)


def check_images(x, channels: int | None = None, size=None, who: str = "this function", *,
                 multiple_of: int | None = None) -> None:
    """Check a batch of images ``x`` (B, C, H, W), floating point, values in [0, 1] (the range is not
    scanned: that would cost a pass over the data).

    ``channels``: the required C (None: any). ``size``: the required side S or (H, W) (None: any).
    ``multiple_of``: H and W must be multiples of it (a tokenizer's downsampling factor, when ``size`` is
    free). ``who`` names the caller in the message, e.g. ``"VQVAE.encode"``.

    Raises TypeError (not a tensor), :class:`InputDtypeError` (not floating point) or ValueError (shape).

    Defined in Chapter 1.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} expects images as a torch.Tensor (B, C, H, W) with values in [0, 1]; received "
                        f"{type(x).__name__}" + (" (a NumPy array: torch.from_numpy(a))" if isinstance(x, np.ndarray)
                                                 else ""))
    if not torch.is_floating_point(x):
        hint = " (8-bit images: x.float() / 255)" if x.dtype == torch.uint8 else " (x.float())"
        raise InputDtypeError(f"{who} expects a floating-point tensor with values in [0, 1]; received dtype "
                              f"{x.dtype}{hint}")
    c = "C" if channels is None else str(int(channels))
    if size is not None:
        sh, sw = _size_pair(size)
        spatial, note = f"{sh}, {sw}", ""
    elif multiple_of is not None:
        spatial, note = "H, W", f", H and W multiples of {multiple_of}"
    else:
        spatial, note = "S, S", ""
    want = f"(B, {c}, {spatial})"
    ok = x.dim() == 4 and (channels is None or x.shape[1] == channels)
    if ok and size is not None:
        ok = _shape(x)[2:] == (sh, sw)
    if ok and multiple_of is not None:
        ok = x.shape[2] % multiple_of == 0 and x.shape[3] % multiple_of == 0
    if not ok:
        hint = " (a single image: add the batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(f"{who} expects images of shape {want} with values in [0, 1]{note}; received shape "
                         f"{_shape(x)}{hint}")


def _is_array(t) -> bool:
    return isinstance(t, (torch.Tensor, np.ndarray))


def _numel(t) -> int:
    return int(t.numel()) if isinstance(t, torch.Tensor) else int(t.size)


def _integer_dtype(t) -> bool:
    if isinstance(t, torch.Tensor):
        return not (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)
    return np.issubdtype(t.dtype, np.integer)


def check_token_values(tokens, num_codes: int, who: str = "this function") -> None:
    """Check that ``tokens`` (a tensor or NumPy array of any shape) holds integer code indices in
    ``[0, num_codes - 1]``.

    Raises TypeError (not an array), :class:`InputDtypeError` (not integers) or ValueError (out of range:
    the message gives the valid range and the offending min and max).

    Defined in Chapter 4.
    """
    if not _is_array(tokens):
        raise TypeError(f"{who} expects token indices as a torch.LongTensor; received {type(tokens).__name__}")
    if not _integer_dtype(tokens):
        raise InputDtypeError(f"{who} expects integer tokens (a LongTensor of code indices); received dtype "
                              f"{tokens.dtype}. "
                              f"Pass code indices, not one-hot vectors or images (if they are whole numbers "
                              f"stored as floats: tokens.long())")
    k = int(num_codes)
    if k < 1:
        raise ValueError(f"{who}: num_codes must be positive, got {num_codes}")
    if _numel(tokens) == 0:
        return
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= k:
        raise ValueError(f"{who}: token indices must be in [0, {k - 1}] (num_codes={k}, i.e. the half-open range "
                         f"[0, {k})); received values from {lo} to {hi}, outside [0, {k - 1}]. Tokens made by a "
                         f"tokenizer or prior with another num_codes?")


def check_tokens(tokens, num_codes: int, grid=None, who: str = "this function") -> None:
    """Check a batch of token grids ``tokens`` (B, h, w): integer indices in ``[0, num_codes - 1]``.

    ``grid``: the required (h, w) (an int for a square grid; None: any). Raises TypeError, ValueError (shape:
    expected vs received; out of range: the valid range and the offending min and max) or
    :class:`InputDtypeError` (not integers: what to pass).

    Defined in Chapter 4.
    """
    if not _is_array(tokens):
        raise TypeError(f"{who} expects tokens as a torch.LongTensor (B, h, w); received {type(tokens).__name__}")
    if grid is None:
        want, ok = "(B, h, w)", tokens.ndim == 3
    else:
        gh, gw = _size_pair(grid)
        want, ok = f"(B, {gh}, {gw})", tokens.ndim == 3 and _shape(tokens)[1:] == (gh, gw)
    if not ok:
        hint = " (one token grid: add the batch dimension with t.unsqueeze(0))" if tokens.ndim == 2 else ""
        raise ValueError(f"{who} expects token indices of shape {want}; received shape {_shape(tokens)}{hint}")
    check_token_values(tokens, num_codes, who)


def check_code(code, num_codes: int, who: str = "this function") -> int:
    """One code index as a plain int, or a TypeError / ValueError that says what a valid index is.

    Defined in Chapter 4.
    """
    if _is_array(code) and _numel(code) == 1 and _integer_dtype(code):
        code = code.item()
    if isinstance(code, bool) or not isinstance(code, (int, np.integer)):
        raise TypeError(f"{who}: a code index must be an integer in [0, {num_codes - 1}]; received {code!r}")
    c = int(code)
    if not 0 <= c < num_codes:
        raise ValueError(f"{who}: code {c} is out of range: the codebook has {num_codes} codes, indices 0 to "
                         f"{num_codes - 1}")
    return c
