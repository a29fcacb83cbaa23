"""A vector quantiser (the "VQ" in VQ-VAE), written from scratch, with each known fix behind a switch.

The idea in three lines: an encoder gives a vector ``z`` at every position; the quantiser replaces it by
the nearest of ``K`` learned vectors (the *codebook*), so an image becomes a grid of integers (the
*indices*, or image tokens); the decoder only ever sees codebook vectors.

Nearest-neighbour lookup has no useful gradient, so the encoder is trained with the *straight-through*
estimator: the forward pass returns ``q`` and the backward pass pretends the quantiser was the identity,
``z + (q - z).detach()``. The codebook itself is trained either by a loss that pulls each chosen code
towards the vectors assigned to it, or by an exponential moving average (EMA) of those vectors.

What goes wrong, and the switch for each fix (Chapter 4 shows each failure with its switch off):

- **Codebook collapse**: most codes are never the nearest to anything, get no gradient and stay dead;
  the model uses a handful of tokens. Fixes: ``kmeans_init`` (start the codes where the data is),
  ``dead_code_threshold`` (move rarely used codes onto random current encoder outputs), ``ema`` (the
  smoother codebook update of the VQ-VAE paper's appendix and of VQ-VAE-2), ``l2_normalize`` and
  ``code_dim`` (ViT-VQGAN: compare directions, not lengths, in a small space where codes crowd less).
- **Low precision**: distances computed in fp16 pick the wrong code; the lookup always runs in fp32.

The switches follow the flavour of lucidrains/vector-quantize-pytorch (``kmeans_init``,
``threshold_ema_dead_code``, ``use_cosine_sim``, ``codebook_dim``) and karpathy/deep-vector-quantization;
the code is our own.

One thing this module does not do: in a multi-process (DDP) run the EMA statistics, the k-means
initialisation and the dead-code restarts are computed per process, so the copies of the codebook can
drift apart. The chapters train on one GPU; a multi-GPU VQ run should all-reduce ``counts`` and
``embed_sum`` in ``VectorQuantizer._ema_update`` first.

Defined in Chapter 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from t2i_lib.models.checks import check_token_values
from t2i_lib.models.config import resolve_config

__all__ = ["QuantizerConfig", "VectorQuantizer", "QuantizerOutput", "codebook_stats", "kmeans",
           "QUANTIZER_FLAVOURS", "quantizer_flavour"]


@dataclass
class QuantizerConfig:
    num_codes: int = 512  # K, the codebook size (the image-token vocabulary)
    dim: int = 64  # D, channels of the encoder output that is quantised
    beta: float = 0.25  # weight of the commitment loss ||z - sg[q]||^2 (the VQ-VAE paper's value)
    channels_last: bool = False  # False: input (B, D, H, W), as conv encoders give; True: input (B, N, D)

    # EMA codebook (VQ-VAE appendix, VQ-VAE-2): the codebook is not trained by gradients but set to the
    # running mean of the encoder vectors assigned to each code. It replaces the codebook loss term.
    ema: bool = False
    decay: float = 0.99  # EMA decay for cluster sizes and vector sums (also used for usage tracking)
    eps: float = 1e-5  # Laplace smoothing of cluster sizes, so a code with no assignments divides by > 0

    # k-means initialisation: on the first training batch, run a few Lloyd iterations on the encoder
    # outputs and use the centres as the initial codebook (instead of random codes far from the data).
    kmeans_init: bool = False
    kmeans_iters: int = 10

    # Dead-code restart: a code whose running usage (EMA of how many vectors chose it per batch) falls
    # below this value is moved onto a random encoder output of the current batch. 0 disables it.
    dead_code_threshold: float = 0.0

    # ViT-VQGAN's two fixes: compare unit vectors (cosine similarity) ...
    l2_normalize: bool = False
    # ... in a low-dimensional space: project D -> code_dim for the lookup and back to D afterwards.
    code_dim: int | None = None  # None: look up in D itself


class QuantizerOutput(NamedTuple):
    quantized: torch.Tensor  # same shape as the input; straight-through: gradients flow to the input
    indices: torch.Tensor  # (B, H, W) or (B, N), int64 code indices (the image tokens)
    loss: torch.Tensor  # scalar: codebook + beta * commitment (EMA: beta * commitment only)
    stats: dict  # perplexity, usage, dead_codes, restarted (detached 0-d tensors)


def codebook_stats(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Perplexity and usage of a codebook from how often each code was chosen.

    ``counts``: (K,) assignments per code. Perplexity is ``exp(entropy)`` of the usage histogram: K when
    every code is used equally, 1 when a single code takes everything. Usage is the fraction of codes
    chosen at least once.

    Defined in Chapter 4.
    """
    counts = counts.detach().double()
    p = counts / counts.sum().clamp_min(1)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum()  # 0 * log 0 counts as 0
    return {"perplexity": entropy.exp().float(), "usage": (counts > 0).float().mean()}


def _sq_distances(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (N, K) via ||x||^2 - 2 x.e + ||e||^2 (no (N, K, d) tensor)."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ codes.t() + codes.pow(2).sum(1)[None, :])  # (N, K)


def _kmeans_pp_seed(x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """k-means++ seeding: each new centre is a data point drawn with probability ~ its squared distance to
    the nearest centre so far, so well-separated clusters each get a centre (plain random seeding often
    puts two centres in one cluster and none in another, and Lloyd's iterations rarely repair that)."""
    n = x.shape[0]
    first = int(torch.randint(0, n, (1,), generator=generator))
    centres = [x[first]]
    d2 = (x - x[first]).pow(2).sum(1)  # (N,) squared distance to the nearest centre
    for _ in range(1, k):
        w = d2.double().cpu()
        if not torch.isfinite(w).all() or float(w.sum()) <= 0:  # every point already a centre: pick uniformly
            w = torch.ones(n, dtype=torch.float64)
        nxt = int(torch.multinomial(w, 1, generator=generator))
        centres.append(x[nxt])
        d2 = torch.minimum(d2, (x - x[nxt]).pow(2).sum(1))
    return torch.stack(centres)  # (k, d)


def kmeans(x: torch.Tensor, k: int, iters: int = 10, *, spherical: bool = False,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means on ``x`` (N, d): returns (centres (k, d), counts (k,) of the last assignment).

    k-means++ seeding, then ``iters`` Lloyd iterations. A centre that loses all its points keeps its old
    position. ``spherical``: unit-norm centres and cosine assignment (for l2-normalised codes).

    Defined in Chapter 4.
    """
    centres = _kmeans_pp_seed(x, k, generator)  # (k, d)
    if spherical:
        centres = F.normalize(centres, dim=1)
    counts = torch.zeros(k, device=x.device, dtype=x.dtype)
    for _ in range(iters):
        if spherical:
            assign = (x @ centres.t()).argmax(1)  # (N,)
        else:
            assign = _sq_distances(x, centres).argmin(1)  # (N,)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)  # (k,)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)  # (k, d)
        new = sums / counts.clamp_min(1)[:, None]
        if spherical:
            new = F.normalize(new, dim=1)
        centres = torch.where(counts[:, None] > 0, new, centres)
    return centres, counts


class VectorQuantizer(nn.Module):
    """Nearest-code vector quantiser with straight-through gradients and switchable fixes.

    ``forward(z)`` takes (B, D, H, W) (or (B, N, D) with ``channels_last``) and returns a
    :class:`QuantizerOutput` ``(quantized, indices, loss, stats)``; ``decode_indices(indices)`` maps
    tokens back to vectors in the input layout.

    Defined in Chapter 4.
    """

    def __init__(self, cfg: QuantizerConfig | None = None, **overrides):
        super().__init__()
        cfg = resolve_config(QuantizerConfig, cfg, overrides)
        if cfg.num_codes < 1 or cfg.dim < 1:
            raise ValueError(f"num_codes and dim must be positive, got num_codes={cfg.num_codes}, dim={cfg.dim}")
        if cfg.code_dim is not None and cfg.code_dim < 1:
            raise ValueError(f"code_dim must be positive or None, got {cfg.code_dim}")
        if not 0.0 <= cfg.decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {cfg.decay}")
        self.cfg = cfg
        k, d = cfg.num_codes, cfg.code_dim or cfg.dim

        # Factorised codes: a linear map into the small lookup space and one back out of it.
        if cfg.code_dim is not None:
            self.proj_in: nn.Module = nn.Linear(cfg.dim, cfg.code_dim)
            self.proj_out: nn.Module = nn.Linear(cfg.code_dim, cfg.dim)
        else:
            self.proj_in = self.proj_out = nn.Identity()

        # The usual VQ-VAE initialisation: small uniform codes around the origin. Whether the data is
        # anywhere near them is exactly the collapse problem kmeans_init and dead-code restarts address.
        codebook = torch.empty(k, d).uniform_(-1.0 / k, 1.0 / k)  # (K, d)
        if cfg.l2_normalize:
            codebook = F.normalize(codebook, dim=1)
        # With EMA the codebook is set by the moving averages, not by the optimiser: keep it a Parameter
        # (so state_dict keys do not depend on the switch) but without gradients.
        self.codebook = nn.Parameter(codebook, requires_grad=not cfg.ema)

        # Running usage per code (EMA of assignments per batch). Starting at 1 rather than 0 matters for
        # EMA mode: with cluster_size = 0 an unused code's smoothed size is ~eps and the codebook update
        # embed_avg / size would blow it up; with 1 an unused code simply stays where it is.
        self.register_buffer("cluster_size", torch.ones(k))  # (K,)
        self.register_buffer("embed_avg", codebook.clone())  # (K, d), EMA of summed assigned vectors
        self.register_buffer("initialized", torch.tensor(not cfg.kmeans_init))

    # ------------------------------------------------------------------ shapes

    def _flatten(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """(B, D, H, W) or (B, N, D) -> (B*H*W, D), with what is needed to undo it."""
        cfg = self.cfg
        if cfg.channels_last:
            if z.dim() != 3 or z.shape[-1] != cfg.dim:
                raise ValueError(f"VectorQuantizer(channels_last=True) expects input of shape (B, N, {cfg.dim}); "
                                 f"received {tuple(z.shape)}")
            b, n, _ = z.shape
            return z.reshape(b * n, cfg.dim), (b, n)
        if z.dim() != 4 or z.shape[1] != cfg.dim:
            raise ValueError(f"VectorQuantizer expects input of shape (B, {cfg.dim}, H, W) (channels first); "
                             f"received {tuple(z.shape)}"
                             + (". For (B, N, D) sequences set channels_last=True." if z.dim() == 3 else ""))
        b, _, h, w = z.shape
        return z.permute(0, 2, 3, 1).reshape(b * h * w, cfg.dim), (b, h, w)

    def _unflatten(self, x: torch.Tensor, shape: tuple) -> torch.Tensor:
        """(B*H*W, D) -> the input layout."""
        if self.cfg.channels_last:
            b, n = shape
            return x.reshape(b, n, -1)  # (B, N, D)
        b, h, w = shape
        return x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()  # (B, D, H, W)

    # ------------------------------------------------------------------ lookup

    def _codes(self) -> torch.Tensor:
        """The codebook as it is compared against (unit rows when l2_normalize)."""
        c = self.codebook.float()
        return F.normalize(c, dim=1) if self.cfg.l2_normalize else c

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of ``x`` (N, d) in lookup space. (N,) int64."""
        codes = self._codes()
        if self.cfg.l2_normalize:
            return (x @ codes.t()).argmax(1)  # unit vectors: nearest = largest cosine
        return _sq_distances(x, codes).argmin(1)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        cfg = self.cfg
        flat, shape = self._flatten(z)  # (N, D)
        # Distances and averages in fp32 even under autocast: fp16 distances pick wrong codes.
        with torch.autocast(device_type=z.device.type, enabled=False):
            ze = self.proj_in(flat.float())  # (N, d)
            if cfg.l2_normalize:
                ze = F.normalize(ze, dim=1)

            if self.training and cfg.kmeans_init and not bool(self.initialized):
                self._kmeans_init(ze.detach())

            idx = self.nearest(ze.detach())  # (N,)
            counts = torch.bincount(idx, minlength=cfg.num_codes).float()  # (K,)
            # The codes this batch chose, as they were when chosen (with EMA: no grad, so q carries none).
            q = self._codes()[idx]  # (N, d)

            restarted = 0
            if self.training:
                with torch.no_grad():
                    self.cluster_size.mul_(cfg.decay).add_(counts, alpha=1 - cfg.decay)
                    if cfg.ema:
                        self._ema_update(ze.detach(), idx)
                    if cfg.dead_code_threshold > 0:
                        restarted = self._restart_dead(ze.detach())
                if restarted:  # some codes jumped onto this batch's vectors: look up again
                    idx = self.nearest(ze.detach())
                    counts = torch.bincount(idx, minlength=cfg.num_codes).float()
                    q = self._codes()[idx]

            commitment = F.mse_loss(ze, q.detach())  # pulls the encoder towards its code
            if cfg.ema:
                loss = cfg.beta * commitment  # the codebook is moved by the EMA update instead
            else:
                codebook_loss = F.mse_loss(q, ze.detach())  # pulls the chosen codes towards the encoder
                loss = codebook_loss + cfg.beta * commitment

            # Straight-through: forward value q, backward the identity (d out / d ze = I).
            st = ze + (q - ze).detach()  # (N, d)
            out = self.proj_out(st)  # (N, D)

        quantized = self._unflatten(out, shape).to(z.dtype)
        indices = idx.reshape(shape)
        stats = codebook_stats(counts)
        stats["dead_codes"] = self._dead_count()
        stats["restarted"] = counts.new_tensor(float(restarted))
        return QuantizerOutput(quantized, indices, loss, stats)

    # ------------------------------------------------------------------ codebook maintenance

    @torch.no_grad()
    def _kmeans_init(self, ze: torch.Tensor) -> None:
        centres, counts = kmeans(ze, self.cfg.num_codes, self.cfg.kmeans_iters, spherical=self.cfg.l2_normalize)
        self.codebook.data.copy_(centres)
        self.embed_avg.copy_(centres)  # consistent with cluster_size = 1: embed_avg / 1 = centre
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, ze: torch.Tensor, idx: torch.Tensor) -> None:
        """One EMA step (VQ-VAE appendix A.1), with Laplace smoothing of the cluster sizes.

        cluster_size was already updated by the caller: N_k <- decay N_k + (1 - decay) n_k.
        m_k <- decay m_k + (1 - decay) sum_{i: idx_i = k} z_i
        e_k <- m_k / Ñ_k,   Ñ_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j
        """
        cfg = self.cfg
        embed_sum = torch.zeros_like(self.embed_avg).index_add_(0, idx, ze)  # (K, d)
        self.embed_avg.mul_(cfg.decay).add_(embed_sum, alpha=1 - cfg.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + cfg.eps) / (n + cfg.num_codes * cfg.eps) * n  # (K,)
        new = self.embed_avg / smoothed[:, None]
        if cfg.l2_normalize:
            new = F.normalize(new, dim=1)
        self.codebook.data.copy_(new)

    @torch.no_grad()
    def _restart_dead(self, ze: torch.Tensor) -> int:
        """Move codes with running usage below the threshold onto random encoder outputs of this batch."""
        dead = self.cluster_size < self.cfg.dead_code_threshold  # (K,)
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        pick = torch.randint(0, ze.shape[0], (n_dead,), device=ze.device)
        samples = ze[pick]  # (n_dead, d)
        self.codebook.data[dead] = samples
        # Give a restarted code the threshold as its usage, so it is judged again by what it attracts
        # from now on. In gradient (non-EMA) mode the optimiser's moment estimates for these rows are
        # stale after the jump; in practice Adam copes, and resetting them would tie us to one optimiser.
        self.cluster_size[dead] = self.cfg.dead_code_threshold
        self.embed_avg[dead] = samples * self.cfg.dead_code_threshold
        return n_dead

    def _dead_count(self) -> torch.Tensor:
        """Codes whose running usage is below the restart threshold (or below 1e-3 when restarts are off:
        in practice "not chosen for the last several hundred batches")."""
        limit = self.cfg.dead_code_threshold if self.cfg.dead_code_threshold > 0 else 1e-3
        return (self.cluster_size < limit).sum().float()

    # ------------------------------------------------------------------ tokens -> vectors

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, H, W) -> vectors (B, D, H, W) (or (B, N) -> (B, N, D) with channels_last).

        This is what a decoder sees when a prior (PixelCNN, a transformer) generates tokens.
        """
        want = 2 if self.cfg.channels_last else 3
        if isinstance(indices, torch.Tensor) and indices.dim() != want:
            raise ValueError(f"VectorQuantizer.decode_indices expects indices of shape "
                             f"{'(B, N)' if want == 2 else '(B, H, W)'}; received shape {tuple(indices.shape)}")
        check_token_values(indices, self.cfg.num_codes, "VectorQuantizer.decode_indices")
        vec = self.proj_out(self._codes()[indices.reshape(-1).long()])  # (N, D)
        return self._unflatten(vec, tuple(indices.shape))

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"num_codes={c.num_codes}, dim={c.dim}, code_dim={c.code_dim}, ema={c.ema}, "
                f"kmeans_init={c.kmeans_init}, dead_code_threshold={c.dead_code_threshold}, "
                f"l2_normalize={c.l2_normalize}")


# Named sets of switches, in the style of karpathy/deep-vector-quantization's flavour table: a chapter asks
# for a flavour by name instead of repeating its switches. Each maps to keyword arguments of QuantizerConfig
# (and so of VQVAEConfig / ResNetVQVAEConfig, which carry the same switches).
#: The named quantiser flavours: flavour name -> QuantizerConfig switches.
QUANTIZER_FLAVOURS: dict[str, dict] = {
    "plain": {},                                                 # the VQ-VAE paper's codebook loss, random init
    "fixed": dict(kmeans_init=True, dead_code_threshold=2.0),   # Chapter 4's collapse fixes (Lancucki et al.)
    "ema": dict(ema=True),                                       # the EMA codebook (Sonnet, VQ-VAE-2)
    "vitvqgan": dict(l2_normalize=True, code_dim=8),            # ViT-VQGAN's cosine, factorised codes
}


def quantizer_flavour(name: str, **overrides) -> dict:
    """The switches of a named quantizer flavour (:data:`QUANTIZER_FLAVOURS`) as a new dict, with overrides.

    ``VQVAEConfig.small(**quantizer_flavour("fixed"))`` is the small VQ-VAE with k-means initialisation and
    dead-code restarts. An unknown name raises ``ValueError`` listing the flavours.

    Defined in Chapter 4.
    """
    if name not in QUANTIZER_FLAVOURS:
        raise ValueError(f"unknown quantizer flavour {name!r}; flavours: {', '.join(QUANTIZER_FLAVOURS)}")
    return {**QUANTIZER_FLAVOURS[name], **overrides}
