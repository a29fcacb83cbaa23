"""One optimizer update, piece by piece: the model contract, the optimizer, clipping, the NaN guard.

The trainer's update (:meth:`t2i_lib.train.trainer.Trainer.update`) runs ``grad_accum`` micro-batches,
forward under the profile's autocast and ``backward`` of ``loss / grad_accum`` (scaled by a
``GradScaler`` in fp16, whose small range would otherwise flush small gradients to zero); then it
unscales the gradients and measures (and clips) their norm with :func:`total_norm`. Unscaling first
matters: clipping scaled gradients would clip against a threshold 65,536 times too small.
:func:`check_finite` is the NaN guard: it runs before the optimizer step, so a NaN never reaches the
weights and the last checkpoint on disk stays the last good one.

Defined in Chapter 1.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from t2i_lib.train.config import TrainConfig

__all__ = ["NonFiniteLossError", "StepResult", "check_finite", "make_optimizer", "scalar", "total_norm",
           "unpack", "FP16_SKIP_LIMIT"]

# With the fp16 loss scaler an infinite gradient is expected now and then: the scaler skips that step and
# halves its scale; that is its job, not an error. This many skips in a row (a scale a million times
# smaller) mean the gradients overflow fp16 even unscaled: that is an error.
#: Skipped fp16 steps in a row after which the run stops with an error (see the comment above).
FP16_SKIP_LIMIT = 20


class NonFiniteLossError(FloatingPointError):
    """Training hit a NaN or infinite loss (or gradient norm) and stopped before updating the weights."""


@dataclass
class StepResult:
    """What one update measured, averaged over micro-batches and processes, before the optimizer step."""

    loss: float
    grad_norm: float  # before clipping
    metrics: dict[str, float]
    epoch: int  # position in the data after this update's last micro-batch
    index: int


def unpack(out, where: str = "model.loss(batch)") -> tuple[torch.Tensor, dict]:
    """Check the model contract: ``(scalar loss tensor, dict of metrics)``. Returns them, loss 0-d."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], dict)):
        raise TypeError(f"{where} must return (loss, metrics) with metrics a dict, e.g. "
                        f"`return loss, {{'recon': recon.detach()}}`; got {type(out).__name__}")
    loss, metrics = out
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise TypeError(f"{where} must return a scalar loss tensor; got {shape}. Reduce it, e.g. with .mean().")
    return loss.reshape(()), metrics


def scalar(v, name: str) -> torch.Tensor | float:
    """A metric as a detached 0-d float tensor (kept on its device) or a Python float."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise TypeError(f"metric {name!r} must be a scalar; got a tensor of shape {tuple(v.shape)}")
        return v.detach().reshape(()).float()
    if isinstance(v, numbers.Real):  # Python and NumPy numbers
        return float(v)
    raise TypeError(f"metric {name!r} must be a number or a scalar tensor; got {type(v).__name__}")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, decaying only tensors with 2+ dims."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (all requires_grad=False).")
    if cfg.weight_decay > 0:
        # Decay pulls weights towards 0; for biases and normalisation gains that is only harm (a gain of 0
        # switches a channel off), so as in GPT-2 / nanoGPT only tensors with 2+ dims are decayed.
        decay = [p for _, p in params if p.ndim >= 2]
        no_decay = [p for _, p in params if p.ndim < 2]
        groups = [g for g in ({"params": decay, "weight_decay": float(cfg.weight_decay)},
                              {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    else:
        groups = [{"params": [p for _, p in params], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=float(cfg.lr), betas=(float(cfg.betas[0]), float(cfg.betas[1])))


def total_norm(params: list[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    """The global gradient norm of ``params``, measured before clipping it to ``max_norm`` (if given)."""
    if max_norm is not None:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if hasattr(torch.nn.utils, "get_total_norm"):
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


def check_finite(r: StepResult, *, step: int, lr: float, grad_accum: int, scaler: torch.amp.GradScaler,
                 skipped_in_a_row: int, ckpt_path: Path | None) -> int:
    """The NaN guard, run before the optimizer step of update ``step + 1``.

    Raises :class:`NonFiniteLossError` for a NaN/inf loss; for an inf/NaN gradient norm with a finite loss
    (without the fp16 scaler); and for :data:`FP16_SKIP_LIMIT` skipped fp16 steps in a row. Returns the
    new count of fp16 steps skipped in a row (0 after a finite gradient).
    """
    kept = (f", and the last good checkpoint {ckpt_path} was left untouched." if ckpt_path and
            ckpt_path.exists() else ".")
    if not math.isfinite(r.loss):
        bad = [f"{k}={v}" for k, v in r.metrics.items() if not math.isfinite(v)]
        raise NonFiniteLossError(
            f"Training stopped at step {step + 1} (epoch {r.epoch}): the loss is {r.loss} "
            f"(averaged over {grad_accum} micro-batch(es))."
            + (f" Non-finite metrics: {', '.join(bad)}." if bad else "")
            + " The weights were not updated with it" + kept
            + f" Usual causes: a learning rate too high (lr={lr:.3g} at this step), log/sqrt/division "
              f"of zero in the loss, or fp16 overflow. Fix the cause and call train() again: it "
              f"resumes from the last checkpoint.")
    if not math.isfinite(r.grad_norm) and not scaler.is_enabled():
        raise NonFiniteLossError(
            f"Training stopped at step {step + 1} (epoch {r.epoch}): the loss is finite ({r.loss:.4g}) but "
            f"the gradient norm is {r.grad_norm}. The weights were not updated with it"
            + kept.replace(", and the", "; the")
            + " Look for an operation with an infinite derivative (sqrt or log at 0) in the loss.")
    skipped_in_a_row = 0 if math.isfinite(r.grad_norm) else skipped_in_a_row + 1
    if skipped_in_a_row >= FP16_SKIP_LIMIT:
        raise NonFiniteLossError(
            f"Training stopped at step {step + 1}: the gradients were inf/NaN for {FP16_SKIP_LIMIT} steps in a "
            f"row under fp16 even with loss scaling (scale now {scaler.get_scale():.3g}), so no update has "
            f"been applied since step {step + 1 - FP16_SKIP_LIMIT}. Lower the learning rate, or train in "
            f"bf16/fp32 (get_profile(precision=...)).")
    return skipped_in_a_row
