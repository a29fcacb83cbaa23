"""Likelihoods in the units papers report: bits per dimension.

Defined in Chapter 2."""

from __future__ import annotations

import math


def bits_per_dim(nats_per_image, num_dims: int):
    """Convert a negative log-likelihood in nats per image to bits per dimension: ``nats / (D ln 2)``.

    ``num_dims``: values per image, e.g. 3 * 32 * 32 = 3072 for CIFAR-10. Works on floats, numpy arrays and
    tensors. Compare like with like: a density over 8-bit pixels rescaled to [0, 1] gives an NLL that is
    D ln 256 nats smaller than the same model's NLL of the 0..255 values (the usual convention, with
    uniform dequantisation); add that before converting, or the bits/dim are not the published kind.

    Defined in Chapter 2 (and used again in Chapter 4 for the prior over tokens).
    """
    if num_dims <= 0:
        raise ValueError(f"num_dims must be positive; received {num_dims}")
    return nats_per_image / (num_dims * math.log(2))
