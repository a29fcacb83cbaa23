"""Autoencoders: PCA as a linear autoencoder, and the report's small convolutional autoencoder.

An autoencoder squeezes an input x through a narrow code z = f(x) (the *latent*) and tries to rebuild
it, x' = g(z). Nothing in its training asks the codes to be arranged in any useful way, which is why a
plain autoencoder compresses well but cannot generate: Chapter 1 shows both halves of that sentence.

Contents, top to bottom:

- :func:`pca` and :class:`PCAResult`: principal component analysis with an SVD (the reference answer).
- :class:`LinearAutoencoder`: one linear encoder, one linear decoder. Trained with squared error it
  learns the same subspace as PCA (Baldi & Hornik, 1989), though not the principal axes themselves.
- :func:`pca_subspace_angles`: how far the trained decoder's column space is from the top-k PCA subspace.
- :class:`AEConfig` and :class:`ConvAutoencoder`: the architecture of the report's Figure 1 (section
  2.1.1), without the VAE's reparameterisation: two 3x3 stride-2 convolutions (32, then 64 channels,
  ReLU), flatten + linear to the latent; the decoder mirrors it with a linear layer, an unflatten, two
  3x3 stride-2 transposed convolutions and a final 3x3 convolution to the image channels, then a sigmoid.

Both models follow the library's model contract: ``loss(batch) -> (loss, metrics)`` where ``batch`` is
``(images, labels)`` as the Digits / MNIST / CIFAR-10 loaders yield it (labels are ignored).

Defined in Chapter 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from t2i_lib.data.batches import images_of
from t2i_lib.models.checks import check_conv_geometry
from t2i_lib.models.config import resolve_config
from t2i_lib.models.tokenizer import evaluating


RECON_LOSSES = ("bce", "mse")


def _check_recon(recon: str) -> str:
    if recon not in RECON_LOSSES:
        raise ValueError(f"recon must be one of {RECON_LOSSES}, got {recon!r}")
    return recon


def _recon_loss(logits: torch.Tensor, target: torch.Tensor, recon: str):
    """Per-pixel reconstruction loss (mean over all pixels) and the MSE metric, both computed in fp32.

    BCE is taken from the logits (``binary_cross_entropy_with_logits``): it is the numerically stable
    form, and the only one autocast allows in fp16. For targets that are not exactly 0/1 (grey pixels)
    BCE never reaches zero: its floor is the targets' own binary entropy, so compare runs by the MSE
    metric, which is reported whichever loss is trained.
    """
    logits = logits.float()
    target = target.float()
    x_hat = torch.sigmoid(logits)
    mse = F.mse_loss(x_hat, target)
    if recon == "bce":
        loss = F.binary_cross_entropy_with_logits(logits, target)
    else:
        loss = mse
    return loss, {"mse": mse.detach()}


@dataclass
class PCAResult:
    components: np.ndarray  # (k, n) orthonormal rows: the top-k principal directions, largest first
    mean: np.ndarray  # (n,) the data mean that PCA subtracts
    explained_variance: np.ndarray  # (k,) variance of the data along each component
    total_variance: float  # trace of the covariance: the sum over all n directions
    spectrum: np.ndarray  # (min(N, n),) all the variances, largest first (the eigenvalues of the covariance)

    def transform(self, X) -> np.ndarray:
        """Coordinates in the principal subspace: (N, n) (or images, flattened) -> (N, k)."""
        return (_as_matrix(X) - self.mean) @ self.components.T

    def inverse_transform(self, Z) -> np.ndarray:
        """Back to data space: (N, k) -> (N, n)."""
        return np.asarray(Z, dtype=np.float64) @ self.components + self.mean

    def reconstruction_mse(self, X) -> float:
        """Mean squared error per entry of projecting X (N, n) (or images) onto the subspace and back."""
        X = _as_matrix(X)
        return float(np.mean((self.inverse_transform(self.transform(X)) - X) ** 2))


def _as_matrix(X) -> np.ndarray:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().double().numpy()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 2:
        raise ValueError(f"expected data of shape (N, n) (or (N, C, H, W), which is flattened), "
                         f"got shape {X.shape}")
    return X.reshape(X.shape[0], -1)


def pca(X, k: int) -> PCAResult:
    """Principal component analysis of the rows of ``X`` (N, n), keeping ``k`` components.

    Computed in float64, from the eigendecomposition of the covariance when N >= 2n, else from an
    SVD of the centred data. Images (N, C, H, W) are flattened first.

    Defined in Chapter 1.
    """
    X = _as_matrix(X)
    N, n = X.shape
    if not 1 <= k <= min(N, n):
        raise ValueError(f"k must be between 1 and min(N, n) = {min(N, n)} for data of shape {X.shape}, got {k}")
    mean = X.mean(axis=0)
    Xc = X - mean  # (N, n)
    # Variances are population variances (divide by N), matching the MSE the autoencoder minimises.
    if N >= 2 * n:
        # Many more rows than columns (MNIST: 60,000 x 784): the n x n covariance and its
        # eigendecomposition are several times cheaper than an SVD of the data, and in float64 just as
        # accurate for the leading components.
        var, V = np.linalg.eigh(Xc.T @ Xc / N)  # ascending order
        var, Vt = np.clip(var[::-1], 0.0, None), V[:, ::-1].T
    else:
        # Economy SVD: Xc = U S Vt; the rows of Vt are the principal directions, S**2/N their variances.
        _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
        var = S ** 2 / N
    return PCAResult(components=np.ascontiguousarray(Vt[:k]), mean=mean, explained_variance=var[:k].copy(),
                     total_variance=float(var.sum()), spectrum=var.copy())


class LinearAutoencoder(nn.Module):
    """x -> z = W_e (x - m) + b_e -> x' = W_d z + b_d + m, with z of size ``k`` and no non-linearity.

    Trained with squared error (``recon="mse"``, the default) its best solution projects onto the
    top-k principal subspace of the data (Baldi & Hornik, 1989). The decoder's columns span that
    subspace but are in general neither orthogonal nor the principal axes themselves: any invertible
    k x k mixing A gives the same reconstructions, (W_d A^-1)(A W_e).

    ``mean`` (n_in,) is an optional fixed offset m, e.g. the data mean. PCA subtracts the mean before
    anything else; handing the same mean to the autoencoder gives it the same start. Without it the
    biases must learn the mean, which they do, but the mean is by far the largest direction in image
    data and gradient descent spends most of its steps on it. Measured on Digits at 28 px with k=10 and
    Chapter 1's recipe (2,000 AdamW steps of 128, lr 1e-2, cosine decay): with the mean given, every
    principal angle to the PCA subspace ends below 0.5 degrees; without it, the worst one is 77 degrees.

    ``recon="bce"`` puts a sigmoid on the output and trains with binary cross-entropy: no longer PCA.
    Inputs may be (B, n_in) or images (B, C, H, W) with C*H*W == n_in; ``decode`` returns (B, n_in).

    Defined in Chapter 1.
    """

    def __init__(self, n_in: int, k: int, recon: str = "mse", mean=None):
        super().__init__()
        if not 1 <= k <= n_in:
            raise ValueError(f"latent size k must be between 1 and n_in={n_in}, got {k}")
        self.n_in, self.k = n_in, k
        self.recon = _check_recon(recon)
        self.encoder = nn.Linear(n_in, k)
        self.decoder = nn.Linear(k, n_in)
        m = torch.zeros(n_in) if mean is None else torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        if m.numel() != n_in:
            raise ValueError(f"mean must have n_in={n_in} values, got shape {tuple(torch.as_tensor(mean).shape)}")
        self.register_buffer("mean", m.clone())  # (n,) fixed, not trained; saved with the weights

    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.n_in:
            raise ValueError(f"LinearAutoencoder(n_in={self.n_in}) expects input of shape (B, {self.n_in}) "
                             f"or (B, ...) with {self.n_in} values per example; got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.n_in)  # (B, n)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_in) or (B, C, H, W) -> (B, k)."""
        return self.encoder(self._flatten(x) - self.mean)

    def _decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.k:
            raise ValueError(f"LinearAutoencoder.decode expects latents of shape (B, {self.k}); "
                             f"got shape {tuple(z.shape)}")
        return self.decoder(z) + self.mean  # (B, n)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, k) -> (B, n_in); through a sigmoid when trained with BCE."""
        out = self._decode_raw(z)
        return torch.sigmoid(out) if self.recon == "bce" else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss(self, batch):
        x = self._flatten(images_of(batch)).float()  # (B, n)
        # Always in fp32, even inside the trainer's fp16/bf16 autocast: the model is tiny, so it costs
        # nothing, and the comparison with PCA is about the last fraction of a degree, which bf16's
        # 8-bit mantissa would blur.
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = self._decode_raw(self.encode(x))  # (B, n)
            if self.recon == "bce":
                return _recon_loss(out, x, "bce")
            mse = F.mse_loss(out, x)
        return mse, {"mse": mse.detach()}


def pca_subspace_angles(model: LinearAutoencoder, X=None, *, pca_result: PCAResult | None = None) -> np.ndarray:
    """Principal angles, in degrees and largest first, between the decoder's column space and the
    top-k PCA subspace of ``X`` (or of a precomputed ``pca_result``).

    All angles are 0 when the two k-dimensional subspaces coincide; 90 means some direction of one is
    orthogonal to the other. The largest angle is the one to watch: it says how far the worst
    direction is from PCA's.

    Defined in Chapter 1.
    """
    from scipy.linalg import subspace_angles

    if pca_result is None:
        if X is None:
            raise ValueError("pass the data X (N, n) or a pca_result")
        pca_result = pca(X, model.k)
    if pca_result.components.shape != (model.k, model.n_in):
        raise ValueError(f"the PCA result has components of shape {pca_result.components.shape}, "
                         f"expected ({model.k}, {model.n_in}) to match the model")
    W_d = model.decoder.weight.detach().cpu().double().numpy()  # (n, k): its columns span the code space
    return np.degrees(subspace_angles(W_d, pca_result.components.T))


@dataclass
class AEConfig:
    in_channels: int = 1  # 1 for Digits and MNIST, 3 for CIFAR-10
    image_size: int = 28  # 28 for Digits (resized) and MNIST; must be divisible by 2 ** len(widths)
    latent_dim: int = 16  # size of the code z; 2 makes the latent space drawable
    widths: tuple[int, ...] = (32, 64)  # channels of the stride-2 conv layers (the report: 32 then 64)
    recon: str = "bce"  # "bce" (the sigmoid output read as pixel probabilities) or "mse"

    def __post_init__(self):
        _check_recon(self.recon)
        self.widths = check_conv_geometry(self.image_size, self.widths, self.latent_dim)

    @property
    def bottom_size(self) -> int:
        """Side of the smallest feature map: 28 -> 14 -> 7 with two stride-2 layers."""
        return self.image_size // 2 ** len(self.widths)


class ConvAutoencoder(nn.Module):
    """The report's MNIST network (its Figure 1) as a plain, deterministic autoencoder.

    encode: (B, C, S, S) -> conv 3x3/2 + ReLU per width -> (B, widths[-1], S/4, S/4) -> flatten
            -> linear -> z (B, latent_dim)
    decode: z -> linear -> unflatten -> transposed conv 3x3/2 + ReLU per width (reversed)
            -> conv 3x3 to C channels -> sigmoid -> (B, C, S, S)

    The report's version is a VAE: its encoder ends in a mean and a standard deviation and samples z
    (Chapter 2). Here the encoder outputs z directly, and nothing shapes the latent space.

    Defined in Chapter 1.
    """

    def __init__(self, cfg: AEConfig | None = None, **overrides):
        super().__init__()
        cfg = resolve_config(AEConfig, cfg, overrides)
        self.cfg = cfg
        c, s, w = cfg.in_channels, cfg.bottom_size, cfg.widths

        enc, ch = [], c
        for width in w:
            enc += [nn.Conv2d(ch, width, 3, stride=2, padding=1), nn.ReLU()]  # halves the side
            ch = width
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(w[-1] * s * s, cfg.latent_dim))

        dec = [nn.Linear(cfg.latent_dim, w[-1] * s * s), nn.ReLU(), nn.Unflatten(1, (w[-1], s, s))]
        for width in reversed(w):
            # kernel 3, stride 2, padding 1, output_padding 1: exactly doubles the side (7 -> 14 -> 28)
            dec += [nn.ConvTranspose2d(ch, width, 3, stride=2, padding=1, output_padding=1), nn.ReLU()]
            ch = width
        dec += [nn.Conv2d(ch, c, 3, padding=1)]  # to image channels; logits, the sigmoid is in decode()
        self.decoder = nn.Sequential(*dec)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.cfg.in_channels, self.cfg.image_size, self.cfg.image_size)

    def _check_images(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            hint = ""
            if x.dim() == 3 and tuple(x.shape) == self.input_shape:
                hint = " (a single image: add the batch dimension with x.unsqueeze(0))"
            elif x.dim() == 4 and x.shape[1] != self.cfg.in_channels:
                hint = f" (the model was built with in_channels={self.cfg.in_channels})"
            elif x.dim() == 4:
                hint = (f" (the model was built for image_size={self.cfg.image_size}; resize the data or "
                        f"build AEConfig(image_size={x.shape[-1]}))")
            c, s, _ = self.input_shape
            raise ValueError(f"ConvAutoencoder expects images of shape (B, {c}, {s}, {s}); "
                             f"got shape {tuple(x.shape)}{hint}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, latent_dim)."""
        self._check_images(x)
        return self.encoder(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, C, S, S) pre-sigmoid values."""
        if z.dim() != 2 or z.shape[1] != self.cfg.latent_dim:
            raise ValueError(f"ConvAutoencoder.decode expects latents of shape (B, {self.cfg.latent_dim}); "
                             f"got shape {tuple(z.shape)}")
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> images (B, C, S, S) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct: (B, C, S, S) -> (B, C, S, S) in [0, 1]."""
        return self.decode(self.encode(x))

    def loss(self, batch):
        x = images_of(batch)  # (B, C, S, S)
        logits = self.decode_logits(self.encode(x))  # (B, C, S, S)
        return _recon_loss(logits, x, self.cfg.recon)


@torch.no_grad()
def encode_latents(model: nn.Module, dataset, batch_size: int = 512, device=None,
                   max_items: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode a whole (image, label) dataset: returns (latents (N, k) on the CPU, labels (N,)).

    Defined in Chapter 1.
    """
    if device is None:
        device = next(model.parameters()).device
    n = len(dataset) if max_items is None else min(len(dataset), max_items)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=batch_size)
    zs, ys = [], []
    with evaluating(model):
        for x, y in loader:
            zs.append(model.encode(x.to(device)).float().cpu())
            ys.append(torch.as_tensor(y))
    return torch.cat(zs), torch.cat(ys)
