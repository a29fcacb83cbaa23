"""An exponential moving average (EMA) of a model's weights, for sampling from a smoother model.

After every optimizer update the trainer moves each averaged tensor a small step towards the model's::

    ema = decay * ema + (1 - decay) * weight

so the average spans roughly the last ``1 / (1 - decay)`` updates (1,000 for ``decay=0.999``). Samples
from the averaged weights are usually better than from the last ones, whose noise from the final few
updates the average smooths out (diffusion models and GANs rely on it). Turn it on with
``TrainConfig(ema_decay=0.999)``; ``train()`` returns a History whose ``ema`` is this object::

    hist = train(model, data, cfg)
    with hist.ema.swapped_in(model):   # the model holds the EMA weights inside the block only
        images = model.sample(16)
    ema_model = hist.ema.copy_of(model)  # or a separate copy that keeps them

Every floating-point entry of the model's ``state_dict`` is averaged (parameters and float buffers, e.g.
BatchNorm's running statistics); integer buffers (counters) are left to the model. The EMA is part of the
checkpoint and resumes exactly. An update the fp16 loss scaler skipped (inf/NaN gradients) changed no
weight, and it does not move the average either.

Defined in Chapter 7.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """The moving average of ``model``'s floating-point weights, starting from their current values."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0  # how many updates the average has taken in
        self.shadow: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in _averaged(model).items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Take in the model's current weights: ``ema = decay * ema + (1 - decay) * weight``."""
        current = _averaged(model)
        for k, s in self.shadow.items():
            s.mul_(self.decay).add_(current[k].detach(), alpha=1.0 - self.decay)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> nn.Module:
        """Overwrite ``model``'s averaged tensors with the EMA values. Returns ``model``."""
        current = _averaged(model)
        for k, s in self.shadow.items():
            current[k].copy_(s)
        return model

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Inside the block ``model`` holds the EMA weights; its own come back afterwards (even on error)."""
        saved = {k: v.detach().clone() for k, v in _averaged(model).items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                current = _averaged(model)
                for k, v in saved.items():
                    current[k].copy_(v)

    def copy_of(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` holding the EMA weights (``model`` itself is left alone)."""
        return self.copy_to(copy.deepcopy(model))

    def state_dict(self) -> dict:
        """The state to save: what :meth:`load_state_dict` restores."""
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(self.shadow)}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`EMA.state_dict` (the same tensor names; values copied exactly)."""
        missing, extra = set(self.shadow) - set(state["shadow"]), set(state["shadow"]) - set(self.shadow)
        if missing or extra:
            raise KeyError(f"the saved EMA does not fit this model: missing {sorted(missing)}, "
                           f"unexpected {sorted(extra)}")
        for k, s in self.shadow.items():
            s.copy_(state["shadow"][k])
        self.decay, self.updates = float(state["decay"]), int(state["updates"])

    def __repr__(self) -> str:
        return f"EMA(decay={self.decay:g}, {len(self.shadow)} tensors, {self.updates} updates)"


def _averaged(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's floating-point state tensors by name (live: they share storage with the model)."""
    return {k: v for k, v in model.state_dict(keep_vars=True).items() if torch.is_floating_point(v)}
