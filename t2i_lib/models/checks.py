"""Input and geometry checks shared by the models, each with a message a learner can act on.

- ``check_conv_geometry``: can a stride-2 conv stack of these widths encode this image size (Chapters 1-2)
- ``check_residual_geometry``: the same for the residual trunk of the VQ-VAE and the dVAE (Chapters 4-5)
- ``check_images(x, channels, size, who, multiple_of=None)``: a batch of images (B, C, H, W), floating point
- ``check_tokens(tokens, num_codes, grid, who)``: a batch of token grids (B, h, w), integers in [0, K - 1]
- ``check_token_values(tokens, num_codes, who)``: integer indices in [0, K - 1], any shape
- ``check_code(code, num_codes, who)``: one code index
- ``InputDtypeError``: what a wrong dtype raises (a TypeError and a ValueError at once)

The last five are defined in :mod:`t2i_lib.data.checks` (the token cache, in the data layer, needs them
too) and re-exported here: every model and everything above the models imports them from here. Their
messages follow one pattern: a wrong shape says the expected and the received shape, a wrong dtype says
what to pass, out-of-range tokens give the valid range and the offending min and max.

Defined in Chapter 1.
"""

from __future__ import annotations

from t2i_lib.data.checks import InputDtypeError, check_code, check_images, check_token_values, check_tokens

__all__ = ["check_conv_geometry", "check_residual_geometry", "check_images", "check_tokens", "check_token_values",
           "check_code", "InputDtypeError"]


def check_conv_geometry(image_size: int, widths, latent_dim: int) -> tuple[int, ...]:
    """Validate a conv encoder's geometry (shared by Chapter 1's autoencoder and Chapter 2's VAE).

    Returns ``widths`` as a tuple of ints; raises ValueError saying what would work instead.
    """
    widths = tuple(int(w) for w in widths)
    if not widths:
        raise ValueError("widths needs at least one conv layer, e.g. (32, 64)")
    f = 2 ** len(widths)
    if image_size % f:
        raise ValueError(f"image_size={image_size} must be divisible by 2**len(widths) = {f} "
                         f"(each stride-2 layer halves it); e.g. 28 or 32 with widths=(32, 64)")
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")
    return widths


def check_residual_geometry(cfg) -> None:
    """Raise a clear ValueError when ``cfg`` (any config with image_size, num_downsamples, num_hiddens)
    cannot build :func:`~t2i_lib.models.blocks.residual_encoder` / :func:`~t2i_lib.models.blocks.residual_decoder`. Defined in Chapter 4."""
    if cfg.num_downsamples < 1:
        raise ValueError(f"num_downsamples must be at least 1, got {cfg.num_downsamples}")
    if cfg.image_size % (2 ** cfg.num_downsamples):
        raise ValueError(f"image_size={cfg.image_size} must be divisible by 2**num_downsamples="
                         f"{2 ** cfg.num_downsamples}")
    if cfg.num_hiddens < 2 or cfg.num_hiddens % 2:
        raise ValueError(f"num_hiddens must be an even number >= 2, got {cfg.num_hiddens}")
