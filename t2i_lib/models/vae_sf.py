"""The Chapter 2 VAE trained without the reparameterisation trick: a score-function (REINFORCE) encoder.

:class:`~t2i_lib.models.vae.ConvVAE` sends the encoder its gradient *through the sample*, z = mu + sigma * eps (the pathwise
estimator). :class:`ScoreFunctionVAE` is the same network with that path cut: z is drawn from
q(z | x) and detached, so the encoder learns about the reconstruction term only through
log q(z | x), the score-function estimator

    grad_phi E_q[ -log p(x | z) ]  =  E_q[ (-log p(x | z) - b) * grad_phi log q(z | x) ]

where b is a baseline. The decoder still gets ordinary backprop (its parameters do not shape the
distribution z is drawn from), and the KL term stays analytic, with its exact gradient, in both models:
only the one term that needs a gradient estimator differs.

The baseline: ``n_samples`` (K) codes are drawn per image and each one's baseline is the mean
reconstruction error of the image's *other* K - 1 codes (a leave-one-out baseline, as in RLOO and
VIMCO). It is independent of the code it is subtracted from, so the gradient stays unbiased, and it is
specific to the image, which matters: reconstruction errors differ between images by far more than
between two codes of the same image. With K = 1 there are no other codes, and the baseline falls
back to the batch's mean error (a little biased, at order 1/B).

Setting ``model.estimator = "pathwise"`` turns the same model back into the ordinary VAE (useful for
measuring both gradients on the same weights, :func:`encoder_gradient_samples`).

Defined in Chapter 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from t2i_lib.data.batches import images_of
from t2i_lib.models.config import resolve_config
from t2i_lib.models.vae import ConvVAE, VAEConfig, kl_standard_normal, reparameterize

ESTIMATORS = ("score_function", "pathwise")


@dataclass
class ScoreFunctionVAEConfig(VAEConfig):
    n_samples: int = 4  # K codes per image; each one's baseline is the mean error of the other K - 1
    estimator: str = "score_function"  # "score_function" (REINFORCE) or "pathwise" (the Chapter 2 VAE)

    def __post_init__(self):
        super().__post_init__()
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {self.n_samples}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dimension: (..., k) x3 -> (...).
    Defined in Chapter 3."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)


class ScoreFunctionVAE(ConvVAE):
    """:class:`~t2i_lib.models.vae.ConvVAE` whose encoder is trained with the score-function estimator (see the module text).

    ``loss(batch)`` returns a *surrogate* loss: its value is not the negative ELBO, but its gradient is an
    unbiased estimate of the negative ELBO's gradient. The ``elbo``, ``recon`` and ``kl`` metrics are the
    true quantities (recon averaged over the K codes), so the two models' curves are comparable.

    Defined in Chapter 3.
    """

    cfg: ScoreFunctionVAEConfig

    def __init__(self, cfg: ScoreFunctionVAEConfig | None = None, **overrides):
        cfg = resolve_config(ScoreFunctionVAEConfig, cfg, overrides)
        super().__init__(cfg)
        self.estimator = cfg.estimator  # a plain attribute: switch it to compare the two on one model

    def loss_on(self, x: torch.Tensor):
        """The loss and metrics for images ``x`` that are already prepared (binarised): (B, C, H, W)."""
        if self.estimator == "pathwise":
            return self._pathwise_loss(x)
        if self.estimator != "score_function":
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        B, K = x.shape[0], self.cfg.n_samples
        mu, logvar = self.encode(x)  # (B, k) each
        mu, logvar = mu.float(), logvar.float()
        with torch.no_grad():  # the sample carries no gradient: that is the whole point
            z = mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * torch.randn(
                B, K, mu.shape[1], device=mu.device, dtype=mu.dtype)  # (B, K, k)
        log_q = gaussian_log_prob(z, mu.unsqueeze(1), logvar.unsqueeze(1))  # (B, K): grad to the encoder
        xk = x.unsqueeze(1).expand(B, K, *x.shape[1:]).reshape(B * K, *x.shape[1:])  # (B*K, C, H, W)
        nll = self.neg_log_likelihood(self.decode_logits(z.reshape(B * K, -1)), xk).view(B, K)  # (B, K)
        r = nll.detach()
        if K > 1:
            baseline = (r.sum(1, keepdim=True) - r) / (K - 1)  # (B, K) leave-one-out, per image
        else:
            baseline = r.mean().expand_as(r)  # only one code per image: the batch mean (slightly biased)
        # grad_phi of this term = (nll - b) * grad_phi log q; its value means nothing (zero on average)
        reinforce = ((r - baseline) * log_q).mean()
        kl_dims = kl_standard_normal(mu, logvar)  # (B, k) analytic, exact gradient
        kl = kl_dims.sum(1)  # (B,)
        loss = nll.mean() + self.beta * kl_dims.mean(0).sum() + reinforce
        return loss, self._metrics(x, nll.mean(1), kl, kl_dims)

    def _pathwise_loss(self, x: torch.Tensor):
        # The Chapter 2 objective (beta, no free bits) on prepared images.
        mu, logvar = self.encode(x)
        mu, logvar = mu.float(), logvar.float()
        nll = self.neg_log_likelihood(self.decode_logits(reparameterize(mu, logvar)), x)  # (B,)
        kl_dims = kl_standard_normal(mu, logvar)
        kl = kl_dims.sum(1)
        loss = nll.mean() + self.beta * kl_dims.mean(0).sum()
        return loss, self._metrics(x, nll, kl, kl_dims)

    def _metrics(self, x, nll, kl, kl_dims):
        elbo = -(nll + kl).mean()
        D = x[0].numel()
        m = {"recon": nll.mean().detach(), "kl": kl.mean().detach(), "elbo": elbo.detach(),
             "bpd": (-elbo / (D * math.log(2))).detach(), "beta": self.beta}
        m.update({f"kl{i}": v for i, v in enumerate(kl_dims.mean(0).detach())})
        return m

    def loss(self, batch):
        """Surrogate loss (score function) or the negative ELBO (pathwise), and the metrics."""
        if self.free_bits > 0:
            raise ValueError("ScoreFunctionVAE does not implement free bits; set free_bits=0")
        return self.loss_on(self.prepare(images_of(batch)))


def encoder_gradient_samples(model: ScoreFunctionVAE, x: torch.Tensor, estimator: str, repeats: int = 50,
                             seed: int = 0, layer: str = "fc_mu", n_samples: int | None = None) -> torch.Tensor:
    """``repeats`` independent gradient estimates of the loss on one fixed batch ``x`` (already prepared,
    e.g. binarised once), with respect to the weights of the encoder's output layer ``layer``
    (``"fc_mu"`` or ``"fc_logvar"``), each from fresh noise. Returns (repeats, P) float64, P the layer's
    weight count. ``n_samples`` overrides the score-function estimator's codes per image (K) for the
    measurement. The model's weights, settings and the caller's random state are left as they were.

    Their variance across repeats (per weight, then averaged) is the gradient noise one training step sees.

    Defined in Chapter 3.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    weight = getattr(model, layer).weight
    if n_samples is not None and int(n_samples) < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    old, old_k, was_training = model.estimator, model.cfg.n_samples, model.training
    model.estimator = estimator
    model.cfg.n_samples = int(n_samples) if n_samples is not None else old_k
    model.eval()  # no dropout or batch norm here, but keep the measurement deterministic in principle
    out = []
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            for _ in range(repeats):
                loss, _ = model.loss_on(x)
                (g,) = torch.autograd.grad(loss, (weight,))
                out.append(g.detach().flatten().double().cpu())
    finally:
        model.estimator, model.cfg.n_samples = old, old_k
        model.train(was_training)
    return torch.stack(out)  # (repeats, P)
