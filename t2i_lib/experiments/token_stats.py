"""What image tokens look like statistically: codes in use, perplexity, and how much a token says about
its neighbours (mutual information in bits).

Defined in Chapter 5."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from t2i_lib.models.checks import check_tokens
from t2i_lib.models.tokenizer import num_codes_of


@dataclass
class TokenStatistics:
    """What :func:`token_statistics` measures on a set of token grids."""

    num_codes: int  # K
    counts: np.ndarray  # (K,) how often each code occurs
    usage: float  # fraction of the K codes that occur at all
    perplexity: float  # exp(entropy) of the usage histogram: K if uniform, 1 if one code takes all
    entropy_bits: float  # entropy of the usage histogram in bits (log2 K at most)
    chance_same: float  # sum_k p_k^2: P(two independent tokens are equal)
    same_right: float  # P(token == its right neighbour)
    same_below: float  # P(token == the token below it)
    mi_right_bits: float  # mutual information between horizontal neighbours, in bits (plug-in estimate)
    mi_below_bits: float  # the same for vertical neighbours

    def summary(self) -> str:
        return (f"codes used: {int((self.counts > 0).sum())} of {self.num_codes} ({self.usage:.0%}), perplexity "
                f"{self.perplexity:.1f}, entropy {self.entropy_bits:.2f} bits (max {math.log2(self.num_codes):.2f})\n"
                f"P(right neighbour equal) {self.same_right:.3f}, P(neighbour below equal) {self.same_below:.3f}, "
                f"chance level {self.chance_same:.3f}\n"
                f"mutual information: horizontal {self.mi_right_bits:.2f} bits, vertical {self.mi_below_bits:.2f} bits")


def mutual_information_bits(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information I(A; B) in bits between paired integer arrays ``a`` and ``b``.

    From the empirical joint of the pairs and its two marginals; only pairs that occur are stored (a sort,
    not a K x K table), so K = 8,192 is fine. The plug-in estimate is biased upwards when the number of
    pairs is not much larger than the number of distinct pairs: independent tokens still show a little MI.

    Defined in Chapter 5.
    """
    a = np.asarray(a, dtype=np.int64).ravel()
    b = np.asarray(b, dtype=np.int64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must pair up one to one; received {a.size} and {b.size} values")
    n = a.size
    if n == 0:
        return math.nan
    k = int(max(a.max(), b.max())) + 1
    pair, pc = np.unique(a * k + b, return_counts=True)
    pa = np.bincount(a, minlength=k) / n
    pb = np.bincount(b, minlength=k) / n
    p = pc / n
    return float(np.sum(p * np.log2(p / (pa[pair // k] * pb[pair % k]))))


def token_statistics(tokens, num_codes, max_images: int | None = None) -> TokenStatistics:
    """Usage, perplexity and neighbour dependence of token grids ``tokens`` (N, h, w) (a tensor, an array,
    a token cache's memory map).

    ``num_codes``: K, an int, or the tokenizer that made the tokens (any image tokenizer: its
    ``num_codes`` is used). ``max_images``: look at the first ones only (a COCO cache has 121 million tokens).

    Defined in Chapter 5.
    """
    num_codes = num_codes_of(num_codes)
    t = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    if t.ndim != 3:
        raise ValueError(f"token_statistics expects token grids of shape (N, h, w); received shape {t.shape}")
    if max_images is not None:
        t = t[:max_images]
    if t.size == 0:
        raise ValueError("token_statistics: no tokens")
    check_tokens(t, num_codes, None, "token_statistics")
    t = t.astype(np.int64)
    counts = np.bincount(t.ravel(), minlength=num_codes)
    p = counts / counts.sum()
    nz = p[p > 0]
    entropy = float(-(nz * np.log2(nz)).sum())
    right = (t[:, :, :-1], t[:, :, 1:])
    below = (t[:, :-1, :], t[:, 1:, :])
    nan = math.nan
    return TokenStatistics(
        num_codes=num_codes, counts=counts, usage=float((counts > 0).mean()), perplexity=float(2 ** entropy),
        entropy_bits=entropy, chance_same=float((p ** 2).sum()),
        same_right=float((right[0] == right[1]).mean()) if right[0].size else nan,
        same_below=float((below[0] == below[1]).mean()) if below[0].size else nan,
        mi_right_bits=mutual_information_bits(*right) if right[0].size else nan,
        mi_below_bits=mutual_information_bits(*below) if below[0].size else nan)
