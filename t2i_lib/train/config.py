"""What a training run is, apart from the model and the data: :class:`TrainConfig` and its checks.

Defined in Chapter 1 (``ema_decay`` in Chapter 7).
"""

from __future__ import annotations

import numbers
import os
from dataclasses import asdict, dataclass

from t2i_lib.train.schedules import Schedule

__all__ = ["TrainConfig", "check_config", "config_dict"]


@dataclass
class TrainConfig:
    """Everything about a training run that is not the model or the data. Defined in Chapter 1."""

    steps: int  # optimizer updates
    batch_size: int  # examples per micro-batch (per process in a multi-GPU run)
    lr: float  # peak learning rate; the schedule shapes it
    weight_decay: float = 0.0  # AdamW's decoupled decay, on weight matrices/kernels only (not biases, norms)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's moment decay rates
    grad_accum: int = 1  # micro-batches per optimizer update (effective batch = batch_size * grad_accum)
    clip_grad_norm: float | None = None  # clip the global gradient norm to this (None: no clipping)
    schedule: str | Schedule = "constant"  # "constant" | "linear" | "cosine" | a Schedule object
    warmup_steps: int = 0  # linear warm-up for the named schedules (a Schedule object has its own)
    eval_every: int = 0  # 0: evaluate once at the end (if eval data given)
    eval_batches: int | None = None  # cap on eval batches (None: the whole eval set)
    log_every: int = 10  # steps between History records (each the mean over those steps)
    ckpt_every: int = 0  # 0: no periodic checkpoints (one is still written at the end if ckpt_dir)
    ckpt_dir: str | os.PathLike | None = None  # where last.pt goes (a Google Drive path works on Colab)
    seed: int = 0  # seeds the data order (and the evaluation noise)
    num_workers: int = 0  # DataLoader worker processes (0: load in the main process)
    shuffle: bool = True  # a new permutation of the data every epoch
    drop_last: bool = True  # drop the last, incomplete batch of each epoch
    find_unused_parameters: bool = False  # multi-GPU only: set if some parameters get no gradient
    ema_decay: float | None = None  # keep an EMA of the weights with this decay, e.g. 0.999 (None: off)


def check_config(cfg: TrainConfig) -> None:
    """Raise ``ValueError("TrainConfig: ...")`` naming the first setting that cannot work."""
    def need(cond, msg):
        if not cond:
            raise ValueError(f"TrainConfig: {msg}")

    def whole(x):
        return isinstance(x, numbers.Integral) and not isinstance(x, bool)

    need(whole(cfg.steps) and cfg.steps > 0, f"steps must be a positive int, got {cfg.steps!r}")
    need(whole(cfg.batch_size) and cfg.batch_size > 0, f"batch_size must be a positive int, got {cfg.batch_size!r}")
    need(whole(cfg.grad_accum) and cfg.grad_accum >= 1, f"grad_accum must be >= 1, got {cfg.grad_accum!r}")
    need(cfg.lr >= 0, f"lr must be >= 0, got {cfg.lr}")
    need(cfg.log_every >= 1, f"log_every must be >= 1, got {cfg.log_every}")
    need(cfg.eval_every >= 0 and cfg.ckpt_every >= 0, "eval_every and ckpt_every must be >= 0")
    need(cfg.clip_grad_norm is None or cfg.clip_grad_norm > 0,
         f"clip_grad_norm must be > 0 or None, got {cfg.clip_grad_norm}")
    need(cfg.eval_batches is None or cfg.eval_batches >= 1, "eval_batches must be >= 1 or None")
    need(cfg.ema_decay is None or 0.0 <= cfg.ema_decay < 1.0,
         f"ema_decay must be in [0, 1) or None, got {cfg.ema_decay}")


def config_dict(cfg: TrainConfig) -> dict:
    """The config as plain values (NumPy numbers, paths and Schedule objects converted) for a checkpoint."""
    def plain(v):
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, numbers.Integral):
            return int(v)
        if isinstance(v, numbers.Real):
            return float(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return str(v)

    d = {k: plain(v) for k, v in asdict(cfg).items() if k != "schedule"}
    d["schedule"] = cfg.schedule.state_dict() if isinstance(cfg.schedule, Schedule) else str(cfg.schedule)
    return d
