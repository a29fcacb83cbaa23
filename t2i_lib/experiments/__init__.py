"""What a chapter measures that is not a model: estimators, bounds, curves, samples scored.

- ``bound``: the exact check that ELBO <= log p(x), on probabilistic PCA (Chapter 2)
- ``estimators``: pathwise vs score-function gradient estimators, bias and variance (Chapter 3)
- ``exercises``: the chapters' exercises and the checks that judge the learner's answers (Chapters 1-5)
- ``fid_vs_n``: FID against the number of samples (Chapter 4)
- ``prior``: code maps for a learned prior, its nats per code, its samples decoded and scored (Chapter 4)
- ``token_stats``: codes in use, perplexity and neighbour mutual information of image tokens (Chapter 5)
"""
