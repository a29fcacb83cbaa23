"""Metrics: FID done right (streaming, float64), PSNR, codebook usage, bits per dimension.

FID in one paragraph. Push real and generated images through a fixed network (Inception-v3 for the
standard number), keep one feature vector per image, fit a Gaussian to each set, and report the Fréchet
(2-Wasserstein) distance between the two Gaussians:

    FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2})

Three ways it is commonly done wrong, and what this module does instead:

1. *Memory*: stacking 50k x 2048 features before taking a covariance. :class:`FeatureStats` keeps a
   running mean and centred scatter matrix (Chan et al.'s parallel update), so memory is constant in
   the number of images; ``benchmarks/fid_stream.py`` measures it.
2. *Precision*: a covariance accumulated in float32 loses digits; everything here is float64.
3. *Sample size*: FID is biased upwards at small N (the covariance of N < 2048 samples is rank-
   deficient, and the trace term does not average out). Numbers are only comparable at equal N, and
   the papers' convention is 50k generated images (10k at the least). Chapter 4 measures the bias.

Also: the standard number needs the *standard* network. :func:`inception_feature_fn` builds the
TensorFlow-ported Inception-v3 that pytorch-fid and torch-fidelity use and loads its weights (fetched
only when asked, i.e. in the colab profile). FIDs from other feature extractors (the small fixed networks
the quick profile uses) are useful for comparing runs with each other, never with published numbers.

Defined in Chapter 4.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from t2i_lib.data.batches import images_of
from t2i_lib.metrics.inception import FIDInceptionV3, FID_WEIGHTS_SHA256, FID_WEIGHTS_SIZE, FID_WEIGHTS_URL


class FeatureStats:
    """Running mean and covariance of feature vectors, in float64, in memory constant in their number.

    Keeps ``n``, the mean (D,) and the centred scatter matrix ``M2 = sum (x - mean)(x - mean)^T`` (D, D).
    Each chunk is centred on its own mean before it is merged (Chan, Golub & LeVeque's pairwise update),
    which avoids the cancellation of the textbook ``E[xx^T] - mean mean^T`` when features have a large
    mean and a small spread. The covariance uses the unbiased 1/(n-1) normalisation, like ``np.cov``
    and pytorch-fid.

    Defined in Chapter 4.
    """

    def __init__(self, dim: int | None = None):
        self.dim = dim
        self.n = 0
        self._mean: np.ndarray | None = None  # (D,)
        self._m2: np.ndarray | None = None  # (D, D)

    def update(self, feats) -> "FeatureStats":
        """Add a chunk of features (N, D): a torch tensor or numpy array, any float dtype."""
        if isinstance(feats, torch.Tensor):
            feats = feats.detach().to("cpu", torch.float64).numpy()
        x = np.asarray(feats, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"FeatureStats.update expects features of shape (N, D); received {x.shape}")
        if self.dim is None:
            self.dim = x.shape[1]
        if x.shape[1] != self.dim:
            raise ValueError(f"FeatureStats.update expects features of shape (N, {self.dim}); received {x.shape}")
        nb = x.shape[0]
        if nb == 0:
            return self
        mean_b = x.mean(0)  # (D,)
        xc = x - mean_b
        m2_b = xc.T @ xc  # (D, D)
        self._merge(nb, mean_b, m2_b)
        return self

    def _merge(self, nb: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        if self.n == 0:
            self.n, self._mean, self._m2 = nb, mean_b.copy(), m2_b.copy()
            return
        n = self.n + nb
        delta = mean_b - self._mean  # (D,)
        self._mean += delta * (nb / n)
        self._m2 += m2_b + np.outer(delta, delta) * (self.n * nb / n)
        self.n = n

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Fold another accumulator into this one (e.g. statistics from several workers)."""
        if other.n:
            if self.dim is not None and other.dim != self.dim:
                raise ValueError(f"cannot merge FeatureStats of dimension {other.dim} into dimension {self.dim}")
            self.dim = other.dim
            self._merge(other.n, other._mean, other._m2)
        return self

    @property
    def mean(self) -> np.ndarray:
        if self.n == 0:
            raise ValueError("FeatureStats is empty: call update() with some features first")
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 samples; this FeatureStats has {self.n}")
        return self._m2 / (self.n - 1)

    def save(self, path: str | Path) -> None:
        """Write n, mean and covariance to an ``.npz`` file (reference statistics are worth caching)."""
        np.savez(path, n=self.n, mu=self.mean, sigma=self.cov)

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStats":
        with np.load(path) as f:
            n, mu, sigma = int(f["n"]), f["mu"], f["sigma"]
        s = cls(mu.shape[0])
        s.n, s._mean, s._m2 = n, mu.astype(np.float64), sigma.astype(np.float64) * (n - 1)
        return s

    def __repr__(self) -> str:
        return f"FeatureStats(n={self.n}, dim={self.dim})"


def _sym_eigh(a: np.ndarray, who: str, vectors: bool = True):
    """Eigenvalues (and vectors) of a covariance matrix, after checking that it is one (symmetric, PSD)."""
    scale = max(float(np.abs(a).max()), 1e-300)
    if not np.isfinite(a).all():
        raise ValueError(f"FID: {who} has non-finite entries")
    if np.abs(a - a.T).max() > 1e-6 * scale:
        raise ValueError(f"FID: {who} is not symmetric (max |S - S^T| = {np.abs(a - a.T).max():.3g}); "
                         f"pass a covariance matrix")
    w, v = np.linalg.eigh((a + a.T) / 2) if vectors else (np.linalg.eigvalsh((a + a.T) / 2), None)
    if w[0] < -1e-6 * max(w[-1], 1e-300):
        raise ValueError(f"FID: {who} is not positive semi-definite (smallest eigenvalue {w[0]:.3g}, largest "
                         f"{w[-1]:.3g}); is it really a covariance matrix?")
    return np.clip(w, 0, None), v


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr((sigma1 sigma2)^{1/2})`` for two covariance matrices, without forming a matrix square root of
    the (non-symmetric) product.

    ``sigma1 sigma2`` has the same eigenvalues as the symmetric PSD matrix ``A = sigma1^{1/2} sigma2
    sigma1^{1/2}`` (they are similar when sigma1 is invertible, and by continuity otherwise), so the trace
    of its principal square root is the sum of the square roots of A's eigenvalues. Two symmetric
    eigen-decompositions do it: exact for singular matrices too (no diagonal offset needed), real by
    construction, and 4-6x faster than ``scipy.linalg.sqrtm`` at D = 2048 on two CPU cores
    (``python benchmarks/fid_stream.py --trace`` prints the table). torchmetrics takes the trace from eigenvalues of the product
    in the same spirit.

    Defined in Chapter 4.
    """
    w1, v1 = _sym_eigh(sigma1, "sigma1")
    root1 = (v1 * np.sqrt(_zero_below_tolerance(w1))) @ v1.T  # sigma1^{1/2}, symmetric PSD
    _sym_eigh(sigma2, "sigma2", vectors=False)  # only checked
    a = root1 @ sigma2 @ root1
    lam = np.linalg.eigvalsh((a + a.T) / 2)
    return float(np.sqrt(_zero_below_tolerance(lam)).sum())


def _zero_below_tolerance(w: np.ndarray) -> np.ndarray:
    """Eigenvalues that round-off cannot tell from 0 (below D * eps * max, NumPy's matrix_rank tolerance)
    set to exactly 0. A singular matrix's zero eigenvalues come out as +-1e-16 * max, and their square roots
    (1e-8 * sqrt(max) each, times D - rank of them) would otherwise add up to a visible error."""
    tol = len(w) * np.finfo(np.float64).eps * max(float(w.max(initial=0.0)), 0.0)
    return np.where(w > tol, w, 0.0)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2})``.

    The trace of the square root comes from :func:`trace_sqrt_product`. pytorch-fid (the reference most
    papers use) instead takes ``scipy.linalg.sqrtm`` of the product, drops round-off imaginary parts, and
    retries with ``1e-6`` added to both diagonals when the product is singular. The two agree to about
    1e-12 relative on full-rank covariances; on singular ones (fewer images than feature dimensions)
    ours is exact and pytorch-fid's carries its offset's O(1e-6 * D) error. Inputs that are not
    covariance matrices (asymmetric, or with a clearly negative eigenvalue) raise ``ValueError``.

    Defined in Chapter 4.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors differ in shape: {mu1.shape} vs {mu2.shape}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"covariances must be ({d}, {d}) to match the means; received {sigma1.shape} and "
                         f"{sigma2.shape}")
    diff = mu1 - mu2
    # Round-off can make the FID of a set with itself a tiny negative number (-1e-12); we leave it as is
    # rather than clamp, so that a real sign error elsewhere would still show.
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


def fid_from_features(feats1, feats2) -> float:
    """FID between two feature sets, (N1, D) and (N2, D) arrays or tensors.

    Defined in Chapter 4.
    """
    s1, s2 = FeatureStats().update(feats1), FeatureStats().update(feats2)
    return frechet_distance(s1.mean, s1.cov, s2.mean, s2.cov)


@torch.no_grad()
def feature_stats(batches: Iterable, feature_fn: Callable[[torch.Tensor], torch.Tensor], *,
                  device: str | torch.device | None = None, max_items: int | None = None) -> FeatureStats:
    """Stream image batches through ``feature_fn`` into a :class:`FeatureStats` (nothing is kept).

    Defined in Chapter 4.
    """
    stats = FeatureStats()
    for batch in batches:
        x = images_of(batch)
        if max_items is not None:
            x = x[: max_items - stats.n]
        if device is not None:
            x = x.to(device)
        f = feature_fn(x)
        if f.dim() != 2:
            raise ValueError(f"feature_fn must return features of shape (B, D); returned {tuple(f.shape)}")
        stats.update(f)
        if max_items is not None and stats.n >= max_items:
            break
    return stats


def compute_fid(real, fake, feature_fn: Callable[[torch.Tensor], torch.Tensor], *,
                device: str | torch.device | None = None, max_items: int | None = None) -> float:
    """FID between two streams of image batches (DataLoaders, generators, lists of tensors).

    ``real`` / ``fake``: an iterable of batches, or an already computed :class:`FeatureStats` (cache the
    reference set's statistics; they do not change between runs). ``feature_fn`` maps images (B, C, H, W)
    to features (B, D): :func:`inception_feature_fn` for the standard number, any fixed network otherwise.
    ``max_items`` caps the images taken from each stream. Report N with the number: FID depends on it.

    Defined in Chapter 4.
    """
    s_real = real if isinstance(real, FeatureStats) else feature_stats(real, feature_fn, device=device,
                                                                           max_items=max_items)
    s_fake = fake if isinstance(fake, FeatureStats) else feature_stats(fake, feature_fn, device=device,
                                                                           max_items=max_items)
    return frechet_distance(s_real.mean, s_real.cov, s_fake.mean, s_fake.cov)


def inception_feature_fn(device: str | torch.device | None = None, *, download: bool | None = None,
                         weights_path: str | Path | None = None, batch_size: int = 64
                         ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The standard FID feature extractor: images (B, C, H, W) in [0, 1] -> (B, 2048) float32 features.

    Weights: ``weights_path`` if given (your own copy; loaded as is, without a hash check). Otherwise the
    pinned file in ``cache_dir("weights")``, fetched with its SHA-256 through :func:`t2i_lib.storage.download.fetch`
    when ``download`` is True. ``download=None`` means "only in the colab profile": the quick profile and
    the tests never touch the network, and then a missing file raises :class:`~t2i_lib.storage.download.DownloadError` saying
    which URL to fetch and exactly where to put the file.

    Defined in Chapter 4.
    """
    from t2i_lib.storage.download import DownloadError, cache_dir, fetch
    from t2i_lib.profiles import get_profile

    if device is None:
        device = get_profile().device
    if weights_path is None:
        if download is None:
            download = get_profile().name == "colab"
        dest = cache_dir("weights") / Path(FID_WEIGHTS_URL).name
        try:
            weights_path = fetch(FID_WEIGHTS_URL, FID_WEIGHTS_SHA256, dest, size=FID_WEIGHTS_SIZE,
                                 desc="FID Inception-v3 weights", allow_download=download)
        except DownloadError as e:
            raise DownloadError(
                f"The standard FID needs the Inception-v3 weights used by pytorch-fid and torch-fidelity.\n{e}\n"
                f"(Or pass download=True, or weights_path=... to a copy you already have. Without them, "
                f"compute_fid works with any fixed feature network, but the number is then not comparable "
                f"with published FIDs.)") from e

    model = FIDInceptionV3()
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # BatchNorm's num_batches_tracked counters may or may not be in the file; anything else must match.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{weights_path} is not the FID Inception-v3 state dict: missing keys {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                         f"{'...' if len(unexpected) > 5 else ''}")
    model = model.to(device).eval().requires_grad_(False)

    @torch.no_grad()
    def features(images: torch.Tensor) -> torch.Tensor:
        out = [model(images[i:i + batch_size].to(device)) for i in range(0, images.shape[0], batch_size)]
        return torch.cat(out).float()  # (B, 2048)

    return features


def random_feature_fn(dim: int = 64, seed: int = 0, in_channels: int = 3, scale: float = 100.0):
    """A fixed, randomly initialised conv net as an FID feature extractor: images (B, C, H, W) in [0, 1]
    -> (B, ``dim``) features. Cheap and offline; its FIDs compare runs with each other, never with
    published (Inception) FIDs.

    ``scale`` multiplies the features (and so every FID by ``scale**2``). Such FIDs have no natural unit;
    on mostly black Shapes images the raw features are small, and the default keeps the numbers readable.

    Defined in Chapter 4.
    """
    with torch.random.fork_rng(devices=[]):  # PyTorch's default init, seeded, without touching the global RNG
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(32, dim, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    net.eval().requires_grad_(False)

    @torch.no_grad()
    def features(images: torch.Tensor) -> torch.Tensor:
        return net(images.float().cpu()) * scale  # (B, dim)

    return features
