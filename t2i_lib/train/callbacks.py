"""Callbacks: code the trainer runs between updates, and what it shows them.

A callback is a callable ``cb(state)`` run after every update, or an object with any of these methods:

- ``on_measure(state)``: after the update (and its evaluation, if one is due) and *before* its checkpoint,
  so whatever it records in ``state.history`` is saved with that step and a resumed run neither loses it
  nor measures the same step twice. :class:`Every` is one: it samples or scores every ``n`` steps;
- ``on_step(state)``: after the update's checkpoint (the file on disk is this step's);
- ``on_eval(state, results)``: after an evaluation, with its History record;
- ``on_end(state)``: once, when training ends.

Every hook but ``on_end`` runs inside a saved-and-restored random state, so it may draw random numbers
(sample) without changing the training run. Raise :class:`StopTraining` in one to end early. In a multi-GPU run callbacks
run in every process.

Defined in Chapter 1 (:class:`Every` and ``on_measure`` in Chapter 7).
"""

from __future__ import annotations

import contextlib
import numbers
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from t2i_lib.profiles import Profile
from t2i_lib.train.config import TrainConfig
from t2i_lib.train.history import History

__all__ = ["StopTraining", "TrainState", "Every", "call_hook", "HOOKS"]

HOOKS = ("on_measure", "on_step", "on_eval", "on_end")


class StopTraining(Exception):
    """Raise from a callback to end training cleanly (a checkpoint is written, the History returned).

    Callbacks run in every process of a multi-GPU run; all of them must raise it at the same step (decide
    from values that are the same everywhere, such as ``state.step`` or ``state.loss``), or the processes
    that carry on will wait forever for the ones that stopped.
    """


@dataclass
class TrainState:
    """What a callback sees after each optimizer update."""

    step: int  # updates done so far
    epoch: int  # current epoch (0-based)
    loss: float  # this update's loss (mean over micro-batches and processes)
    lr: float  # the learning rate this update used
    grad_norm: float  # global gradient norm before clipping
    metrics: dict[str, float]  # this update's metrics
    model: nn.Module  # the model itself (not a DDP wrapper)
    optimizer: torch.optim.Optimizer
    history: History
    cfg: TrainConfig
    profile: Profile
    rank: int = 0
    world_size: int = 1
    ema: Any = None  # the run's t2i_lib.train.ema.EMA (None unless TrainConfig(ema_decay=...))


def call_hook(cb, name: str, *args) -> None:
    """Call ``cb.<name>(*args)`` if ``cb`` has it; a plain callable counts as ``on_step``."""
    fn = getattr(cb, name, None)
    if fn is not None:
        fn(*args)
    elif name == "on_step" and callable(cb):
        cb(*args)


class Every:
    """Run ``fn(model, state)`` after every ``n``-th update and record the numbers it returns.

    ``fn`` runs in eval mode and under ``torch.no_grad()`` (training mode comes back afterwards), with
    the EMA weights swapped in if ``ema=True`` (needs ``TrainConfig(ema_decay=...)``). If it returns a
    dict of numbers (``{"fid": 31.2}``), they go into the History as a record of split ``split``:
    ``history.series("fid", "callback")``. It runs before the step's checkpoint is written, so its record
    is in the checkpoint and a resumed run does not run it again for a step already done::

        def score(model, state):
            return {"fid": fid_of(model.sample(256))}
        train(model, data, cfg, callbacks=[Every(500, score, ema=True)])

    Defined in Chapter 7.
    """

    def __init__(self, n: int, fn: Callable[[nn.Module, TrainState], dict | None], *, split: str = "callback",
                 ema: bool = False):
        if not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"Every(n, fn): n must be a positive int, got {n!r}")
        self.n, self.fn, self.split, self.ema = int(n), fn, split, ema

    def due(self, step: int) -> bool:
        return step % self.n == 0

    def on_measure(self, state: TrainState) -> None:
        if not self.due(state.step):
            return
        model = state.model
        with contextlib.ExitStack() as stack:
            if self.ema:
                if state.ema is None:
                    raise ValueError("Every(..., ema=True) needs an EMA of the weights: set "
                                     "TrainConfig(ema_decay=...), e.g. 0.999.")
                stack.enter_context(state.ema.swapped_in(model))
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    out = self.fn(model, state)
            finally:
                model.train(was_training)
        if out:
            state.history.add(state.step, self.split, **{k: float(v) for k, v in out.items()})

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        return f"Every({self.n}, {name}, split={self.split!r}" + (", ema=True)" if self.ema else ")")
