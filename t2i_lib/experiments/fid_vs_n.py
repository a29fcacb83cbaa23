"""FID against the number of samples: why FID on a few hundred images is biased.

Defined in Chapter 4."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from t2i_lib.metrics.fid import FeatureStats, frechet_distance


@dataclass
class FIDCurve:
    """FID between two disjoint samples of the same distribution, at several sample sizes N.
    Defined in Chapter 4."""

    ns: list  # sample sizes (per set)
    mean: np.ndarray  # (len(ns),) mean FID over the repeats
    std: np.ndarray  # (len(ns),) its standard deviation
    rank: np.ndarray  # (len(ns),) rank of the covariance estimated from N features (at most N - 1)
    dim: int  # feature dimension D: below N = D + 1 the covariance cannot be full rank
    reference: float | None = None  # optional: the same two sets' FID at the largest N, for the plot

    def rows(self) -> list[str]:
        return [f"N = {n:>6,}: FID {m:10.4g} +- {s:<10.3g} covariance rank {r:>4} of {self.dim}"
                for n, m, s, r in zip(self.ns, self.mean, self.std, self.rank)]


def fid_vs_sample_size(feats_a, feats_b, ns, repeats: int = 5, seed: int = 0) -> FIDCurve:
    """FID between random subsets of size N of two feature sets (N, D), for every N in ``ns``.

    ``feats_a`` and ``feats_b`` should come from *disjoint* images of one distribution: the true FID is
    then 0, and every value measured is estimation error. Each N is drawn ``repeats`` times (without
    replacement within a set). Uses :class:`t2i_lib.metrics.fid.FeatureStats` (float64) for every estimate.

    Defined in Chapter 4.
    """
    a = np.asarray(feats_a.detach().cpu().double() if isinstance(feats_a, torch.Tensor) else feats_a, np.float64)
    b = np.asarray(feats_b.detach().cpu().double() if isinstance(feats_b, torch.Tensor) else feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two feature sets (N, D) with the same D; received {a.shape} and {b.shape}")
    ns = [int(n) for n in ns]
    if min(ns) < 2 or max(ns) > min(len(a), len(b)):
        raise ValueError(f"sample sizes must be in [2, {min(len(a), len(b))}] (the smaller set's size); got {ns}")
    rng = np.random.default_rng(seed)
    means, stds, ranks = [], [], []
    for n in ns:
        vals = []
        for _ in range(repeats):
            xa = a[rng.choice(len(a), n, replace=False)]
            sa = FeatureStats().update(xa)
            sb = FeatureStats().update(b[rng.choice(len(b), n, replace=False)])
            vals.append(frechet_distance(sa.mean, sa.cov, sb.mean, sb.cov))
        means.append(np.mean(vals))
        stds.append(np.std(vals))
        # The covariance's rank is that of the centred samples: an (N, D) SVD, cheap while N < D.
        ranks.append(int(np.linalg.matrix_rank(xa - xa.mean(0))))
    return FIDCurve(ns, np.array(means), np.array(stds), np.array(ranks), a.shape[1])
