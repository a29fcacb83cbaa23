"""Codebook usage and perplexity of a set of tokens.

Defined in Chapter 4."""

from __future__ import annotations

import numpy as np
import torch

from t2i_lib.models.checks import check_token_values
from t2i_lib.models.tokenizer import num_codes_of


def codebook_usage(indices: torch.Tensor, num_codes) -> dict[str, float]:
    """Perplexity and usage fraction of codebook indices (any shape), e.g. a dataset's image tokens.

    ``num_codes``: K, an int, or the tokenizer that made the indices (any image tokenizer: its
    ``num_codes`` is used). Perplexity is exp(entropy) of the usage histogram (K at best, 1 at collapse);
    usage is the fraction of the K codes that occur at least once. Same definitions as the quantiser's stats.

    Defined in Chapter 4.
    """
    from t2i_lib.models.quantize import codebook_stats

    num_codes = num_codes_of(num_codes)
    if isinstance(indices, np.ndarray):
        indices = torch.from_numpy(indices.astype(np.int64))
    check_token_values(indices, num_codes, "codebook_usage")
    idx = indices.reshape(-1).long()
    s = codebook_stats(torch.bincount(idx, minlength=num_codes))
    return {k: float(v) for k, v in s.items()}
