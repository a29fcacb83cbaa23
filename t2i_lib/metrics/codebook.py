"""Codebook usage and perplexity of a set of tokens.

Defined in Chapter 4."""

from __future__ import annotations

import torch


def codebook_usage(indices: torch.Tensor, num_codes: int) -> dict[str, float]:
    """Perplexity and usage fraction of codebook indices (any shape), e.g. a dataset's image tokens.

    Perplexity is exp(entropy) of the usage histogram (K at best, 1 at collapse); usage is the fraction of
    the ``num_codes`` codes that occur at least once. Same definitions as the quantiser's stats.

    Defined in Chapter 4.
    """
    from t2i_lib.models.quantize import codebook_stats

    idx = indices.reshape(-1).long()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_codes):
        raise ValueError(f"indices must be in [0, {num_codes - 1}]; received values from {int(idx.min())} "
                         f"to {int(idx.max())}")
    s = codebook_stats(torch.bincount(idx, minlength=num_codes))
    return {k: float(v) for k, v in s.items()}
