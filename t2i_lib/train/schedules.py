"""Learning-rate schedules: the learning rate as a plain function of the optimizer step.

A schedule here is stateless: ``schedule(step, base_lr)`` returns the learning rate for optimizer update
number ``step`` (0-based: the first update is step 0). Because nothing but the step is needed, resuming
from a checkpoint only has to restore the step, and a schedule can be plotted before training starts.

Four shapes cover the book:

- :class:`Constant`       - an optional linear warm-up, then ``base_lr``.
- :class:`WarmupLinear`   - warm-up, then a straight line down to ``final_frac * base_lr`` at ``total_steps``.
- :class:`WarmupCosine`   - warm-up, then half a cosine down to ``final_frac * base_lr``.
- :class:`LinearWithRestarts` - the piecewise schedule of the source report's text-to-image run: a
  linear decay that is *restarted* at given steps at a new (lower) value, each piece still heading for 0
  at ``total_steps``. With ``base_lr=0.003``::

      LinearWithRestarts(total_steps=50_000, warmup_steps=10,
                         restarts=((10_000, 0.0018), (25_000, 0.0015)))

  gives 0 -> 0.003 over 10 warm-up steps, a linear decay, a jump to 0.0018 at step 10,000, to 0.0015 at
  step 25,000, and 0 at step 50,000. (The report got this shape by stopping and restarting its run with a
  new learning rate; here it is one function, so an interrupted run resumes onto the same curve.)
  The report calls both restarts increases. Read this way (every piece aimed at 0 at step 50,000) the
  first one is in fact a drop, from about 0.0024 to 0.0018, and only the second a rise, from about
  0.0011 to 0.0015; the report's figure is too coarse to settle which reading it ran.

Warm-up follows Hugging Face's ``get_linear_schedule_with_warmup``, which the report used: during
warm-up ``lr = base_lr * step / warmup_steps``, so the very first update runs at learning rate 0. That
wastes one update; we keep it so the numbers match the report's recipe exactly.

Defined in Chapter 1 (constant, linear, cosine); the restart schedule is the one rebuilt in Chapter 7.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

__all__ = ["Schedule", "Constant", "WarmupLinear", "WarmupCosine", "LinearWithRestarts",
           "make_schedule", "SCHEDULES"]


def _warmup(step: int, warmup_steps: int, base_lr: float) -> float | None:
    """The warm-up value at ``step``, or None once warm-up is over."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    return None


class Schedule:
    """Base class: subclasses implement ``__call__(step, base_lr) -> lr``.

    ``state_dict()`` describes the schedule with plain values (it goes into checkpoints so a resumed
    run can tell whether the schedule changed).
    """

    def __call__(self, step: int, base_lr: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict:
        d = asdict(self) if hasattr(self, "__dataclass_fields__") else {}
        # tuples of tuples become lists of lists: plain values that torch.load(weights_only=True) accepts
        d = {k: ([list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, (list, tuple)) else v)
             for k, v in d.items()}
        return {"kind": type(self).__name__, **d}

    def values(self, base_lr: float, steps: int) -> list[float]:
        """The learning rate at steps 0 .. steps-1 (handy for plotting a schedule before training)."""
        return [self(t, base_lr) for t in range(steps)]


def _check_common(total_steps: int | None, warmup_steps: int) -> None:
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if total_steps is not None:
        if total_steps <= 0:
            raise ValueError(f"total_steps must be > 0, got {total_steps}")
        if warmup_steps > total_steps:
            raise ValueError(f"warmup_steps ({warmup_steps}) is longer than the whole run "
                             f"(total_steps={total_steps}); lower warmup_steps.")


@dataclass
class Constant(Schedule):
    warmup_steps: int = 0  # linear ramp from 0 over this many steps, then flat

    def __post_init__(self):
        _check_common(None, self.warmup_steps)

    def __call__(self, step: int, base_lr: float) -> float:
        w = _warmup(step, self.warmup_steps, base_lr)
        return base_lr if w is None else w


@dataclass
class _WarmupDecay(Schedule):
    """Linear warm-up from 0, then a decay from base_lr to final_frac * base_lr at total_steps."""
    total_steps: int  # the step at which the decay reaches final_frac * base_lr
    warmup_steps: int = 0  # linear ramp from 0 over this many steps
    final_frac: float = 0.0  # where the decay ends, as a fraction of base_lr

    def __post_init__(self):
        _check_common(self.total_steps, self.warmup_steps)

    def _shape(self, progress: float) -> float:
        """1 at progress 0 (end of warm-up), 0 at progress 1 (total_steps)."""
        raise NotImplementedError

    def __call__(self, step: int, base_lr: float) -> float:
        w = _warmup(step, self.warmup_steps, base_lr)
        if w is not None:
            return w
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)  # 0 -> 1
        return base_lr * (self.final_frac + (1.0 - self.final_frac) * self._shape(progress))


@dataclass
class WarmupLinear(_WarmupDecay):
    def _shape(self, progress: float) -> float:
        return 1.0 - progress


@dataclass
class WarmupCosine(_WarmupDecay):
    def _shape(self, progress: float) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class LinearWithRestarts(Schedule):
    """Linear decay to 0 at ``total_steps``, restarted at given steps with new learning rates.

    Piece ``i`` starts at step ``s_i`` with value ``v_i`` and falls on a straight line that reaches 0 at
    ``total_steps``: ``lr(t) = v_i * (total_steps - t) / (total_steps - s_i)``. The first piece starts at
    the end of warm-up with ``base_lr``; ``restarts`` lists the later ``(step, lr)`` pairs, with *absolute*
    learning rates (as the report states them), not fractions of ``base_lr``.
    """

    total_steps: int  # where every piece reaches 0
    warmup_steps: int = 0  # linear ramp from 0 to base_lr
    restarts: tuple[tuple[int, float], ...] = field(default_factory=tuple)  # ((step, lr), ...)

    def __post_init__(self):
        _check_common(self.total_steps, self.warmup_steps)
        self.restarts = tuple((int(s), float(v)) for s, v in self.restarts)
        prev = self.warmup_steps
        for s, v in self.restarts:
            if not prev < s < self.total_steps:
                raise ValueError(
                    f"restart steps must increase and lie strictly between the end of warm-up "
                    f"({self.warmup_steps}) and total_steps ({self.total_steps}); got {s} in {self.restarts}")
            if v <= 0:
                raise ValueError(f"a restart learning rate must be > 0, got {v} at step {s}")
            prev = s

    def __call__(self, step: int, base_lr: float) -> float:
        w = _warmup(step, self.warmup_steps, base_lr)
        if w is not None:
            return w
        start, value = self.warmup_steps, base_lr
        for s, v in self.restarts:
            if step >= s:
                start, value = s, v
        span = max(1, self.total_steps - start)
        return value * max(0.0, (self.total_steps - step) / span)


SCHEDULES = ("constant", "linear", "cosine")


def make_schedule(spec: str | Schedule, total_steps: int, warmup_steps: int = 0) -> Schedule:
    """Turn ``TrainConfig.schedule`` into a :class:`Schedule`.

    A name (``"constant"``, ``"linear"``, ``"cosine"``) is built with the run's ``total_steps`` and
    ``warmup_steps``; a :class:`Schedule` object is returned as it is (it carries its own numbers).

    Defined in Chapter 1.
    """
    if isinstance(spec, Schedule):
        return spec
    if callable(spec):
        raise TypeError("schedule must be a name or a t2i_lib.train.schedules.Schedule; wrap a plain function "
                        "by subclassing Schedule and implementing __call__(step, base_lr).")
    name = str(spec).strip().lower()
    if name == "constant":
        return Constant(warmup_steps=warmup_steps)
    if name == "linear":
        return WarmupLinear(total_steps=total_steps, warmup_steps=warmup_steps)
    if name == "cosine":
        return WarmupCosine(total_steps=total_steps, warmup_steps=warmup_steps)
    raise ValueError(f"Unknown schedule {spec!r}. Valid names: {', '.join(SCHEDULES)}, "
                     f"or pass a Schedule object such as LinearWithRestarts(...).")
