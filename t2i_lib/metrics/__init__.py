"""What the chapters measure about models and samples.

- ``fid``: the Frechet distance, streaming feature statistics, FID with any feature network (Chapter 4)
- ``inception``: the Inception-v3 network of FID and its pinned weights (Chapter 4)
- ``codebook``: codebook usage and perplexity of a set of tokens (Chapter 4)
- ``likelihood``: bits per dimension (Chapter 2)

PSNR is defined in :mod:`t2i_lib.models.blocks`, because the models log it while they train (models sit
below metrics); it is re-exported here.
"""

from t2i_lib.metrics.codebook import codebook_usage
from t2i_lib.metrics.fid import (FeatureStats, compute_fid, feature_stats, fid_from_features,
                                 frechet_distance, inception_feature_fn, random_feature_fn,
                                 trace_sqrt_product)
from t2i_lib.metrics.inception import FIDInceptionV3
from t2i_lib.metrics.likelihood import bits_per_dim
from t2i_lib.models.blocks import psnr

__all__ = ["FeatureStats", "FIDInceptionV3", "bits_per_dim", "codebook_usage", "compute_fid", "feature_stats",
           "fid_from_features", "frechet_distance", "inception_feature_fn", "psnr", "random_feature_fn",
           "trace_sqrt_product"]
