"""The training loop. It knows nothing about the model it trains.

A trainable model is any ``nn.Module`` with a method ``loss(batch) -> (loss, metrics)``: ``loss`` is a
scalar tensor to minimise, ``metrics`` a dict of scalars worth logging (``{"recon": ..., "kl": ...}``).
``batch`` is whatever the DataLoader yields, already moved to the device. Everything else (what the
model is, what the loss means) stays in the model's file; this file only does the bookkeeping that
every chapter needs::

    from t2i_lib.train import TrainConfig, train
    cfg = TrainConfig(steps=2000, batch_size=64, lr=2e-3, schedule="cosine", warmup_steps=100,
                      eval_every=500, ckpt_dir="checkpoints/ch01")
    history = train(model, train_set, cfg, eval_dataset=test_set, live_plot=True)
    history.plot()

What one optimizer update does:

1. sets the learning rate from the schedule (:mod:`t2i_lib.train.schedules`);
2. runs ``grad_accum`` micro-batches: forward under ``profile.autocast()`` (fp32 on the CPU, bf16 or
   fp16 on a GPU), ``backward`` of ``loss / grad_accum`` (scaled by a ``GradScaler`` in fp16, whose
   small range would otherwise flush small gradients to zero);
3. stops with :class:`NonFiniteLossError` if the loss (averaged over the micro-batches) is NaN or
   infinite, *before* the weights are touched, so the last good checkpoint is still the last good one;
4. unscales the gradients, measures their norm (logged as ``grad_norm``) and clips it if
   ``clip_grad_norm`` is set (unscaling first matters: clipping scaled gradients would clip against a
   threshold 65,536 times too small);
5. takes the AdamW step.

Around that: a progress bar with the running loss, a :class:`History` of logged values, evaluation every
``eval_every`` steps, a live loss plot in notebooks, callbacks, and checkpoints that resume *exactly*.

Exact resume: a checkpoint holds the model, optimizer, loss scaler, learning-rate schedule, step,
the random-number generators (Python, NumPy, torch CPU and CUDA), the history, and the data position.
The data order is a permutation derived from ``(seed, epoch)`` alone, so the position is just
``(epoch, batches consumed in that epoch)`` and a resumed run continues with the very next batch. On the
CPU, an interrupted-and-resumed run ends with bit-for-bit the same weights as an uninterrupted one (the
tests check this, with dropout and gradient accumulation). Two caveats: with ``num_workers > 0``, random
augmentations done inside worker processes do not replay exactly; and on a GPU some kernels are not
deterministic, so there it is "the same run" rather than "the same bits".

Evaluation and callbacks run inside a saved-and-restored random state: they may sample freely without
changing the training run, and evaluation always sees the same noise (seeded with ``cfg.seed``), so
successive evaluation losses are comparable.

Multi-GPU: run the same script under ``torchrun``; see :mod:`t2i_lib.train.distributed` for the how-to.

Defined in Chapter 1 (every later chapter trains through it).
"""

from __future__ import annotations

import contextlib
import io
import math
import numbers
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader

from t2i_lib.profiles import Profile, get_profile
from t2i_lib.storage.checkpoint import (CheckpointError, capture_rng_state, load_checkpoint, load_model_state,
                                        restore_rng_state, save_checkpoint)
from t2i_lib.train import distributed as tdist
from t2i_lib.train.schedules import Schedule, make_schedule

__all__ = ["TrainConfig", "train", "evaluate", "History", "TrainState", "NonFiniteLossError",
           "StopTraining", "to_device", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "last.pt"  # the file in cfg.ckpt_dir that train() writes and resumes from
_FORMAT = 1  # checkpoint layout version


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


class NonFiniteLossError(FloatingPointError):
    """Training hit a NaN or infinite loss (or gradient norm) and stopped before updating the weights."""


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
    history: "History"
    cfg: TrainConfig
    profile: Profile
    rank: int = 0
    world_size: int = 1


# ----------------------------------------------------------------------------------------------------
# History
# ----------------------------------------------------------------------------------------------------

class History:
    """Logged values: a list of dicts ``{"step", "split" ("train"|"eval"), "loss", "lr", **metrics}``.

    Train records are means over the ``log_every`` steps before ``step``; eval records are means over the
    evaluation set at ``step``. Defined in Chapter 1.
    """

    def __init__(self, records: Iterable[dict] | None = None):
        self.records: list[dict] = [dict(r) for r in (records or [])]

    def log(self, step: int, split: str, loss: float, lr: float, **metrics: float) -> dict:
        rec = {"step": int(step), "split": split, "loss": float(loss), "lr": float(lr)}
        rec.update({k: float(v) for k, v in metrics.items()})
        self.records.append(rec)
        return rec

    def series(self, key: str = "loss", split: str = "train") -> tuple[list[int], list[float]]:
        """(steps, values) of ``key`` in ``split``'s records. Empty lists if that split has no records."""
        rows = [r for r in self.records if r["split"] == split]
        pairs = [(r["step"], r[key]) for r in rows if key in r]
        if rows and not pairs:
            raise KeyError(f"No {split!r} record has {key!r}; keys logged for {split!r}: {self.keys(split)}")
        return [s for s, _ in pairs], [v for _, v in pairs]

    def last(self, key: str = "loss", split: str = "train") -> float:
        """The most recent value of ``key`` in ``split``."""
        for r in reversed(self.records):
            if r["split"] == split and key in r:
                return r[key]
        raise KeyError(f"No {split!r} record has {key!r} yet; keys logged for {split!r}: {self.keys(split)}")

    def keys(self, split: str = "train") -> list[str]:
        out: dict[str, None] = {}
        for r in self.records:
            if r["split"] == split:
                out.update(dict.fromkeys(k for k in r if k not in ("step", "split")))
        return list(out)

    def plot(self, keys: str | Iterable[str] = ("loss",), ax=None, logy: bool = False):
        """Train curves as lines and eval values as dots, one pair per key. Returns the matplotlib Axes."""
        if ax is None:
            import matplotlib.pyplot as plt
            _, ax = plt.subplots(figsize=(6, 3.5))
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        for key in keys:
            for split, style in (("train", "-"), ("eval", "o--")):
                rows = [(r["step"], r[key]) for r in self.records if r["split"] == split and key in r]
                if rows:
                    ax.plot([s for s, _ in rows], [v for _, v in rows], style, ms=4, label=f"{split} {key}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(keys[0] if len(keys) == 1 else "value")
        if logy:
            ax.set_yscale("log")
        if ax.lines:
            ax.legend()
        ax.grid(alpha=0.3)
        return ax

    def state_dict(self) -> list[dict]:
        return [dict(r) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        n_train = sum(r["split"] == "train" for r in self.records)
        n_eval = len(self.records) - n_train
        tail = f", last train loss {self.last():.4g}" if n_train else ""
        return f"History({n_train} train records, {n_eval} eval records{tail})"


# ----------------------------------------------------------------------------------------------------
# Batches: device moves and the seeded data order
# ----------------------------------------------------------------------------------------------------

def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor inside tuples / lists / dicts to ``device``; leave everything else (strings) alone.

    Defined in Chapter 1 (the trainer calls it on every batch before ``model.loss``).
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        moved = {k: to_device(v, device, non_blocking) for k, v in batch.items()}
        return moved if type(batch) is dict else type(batch)(moved)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63)


class _EpochPlan:
    """Which dataset indices make up each batch, for any epoch, on any process.

    Every process computes the same permutation from ``(seed, epoch)``; global batch ``j`` is the slice
    ``perm[j*G:(j+1)*G]`` with ``G = batch_size * world_size``, and process ``r`` takes every
    ``world_size``-th index of it starting at ``r`` (``DistributedSampler``'s split). Batches are counted
    globally, so a position ``(epoch, j)`` means the same thing for any number of processes.
    """

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int, seed: int, shuffle: bool,
                 drop_last: bool):
        self.n, self.batch_size, self.world_size, self.rank = n, batch_size, world_size, rank
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        g = batch_size * world_size
        self.global_batch = g
        self.batches_per_epoch = n // g if drop_last else -(-n // g)
        if self.batches_per_epoch == 0:
            procs = f" x {world_size} processes" if world_size > 1 else ""
            raise ValueError(
                f"The dataset has {n} examples, fewer than one batch of {batch_size}{procs}, and drop_last=True "
                f"drops that incomplete batch, leaving nothing to train on. Lower batch_size, or set "
                f"TrainConfig(drop_last=False).")

    def permutation(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator()
        g.manual_seed(_epoch_seed(self.seed, epoch))
        return torch.randperm(self.n, generator=g).tolist()

    def batches(self, epoch: int) -> list[list[int]]:
        perm, g, w = self.permutation(epoch), self.global_batch, self.world_size
        out = []
        for j in range(self.batches_per_epoch):
            chunk = perm[j * g:(j + 1) * g]
            if len(chunk) % w:  # last incomplete batch, several processes: pad so each gets the same count
                pad = w - len(chunk) % w
                chunk = chunk + (perm * (pad // len(perm) + 1))[:pad]
            out.append(chunk[self.rank::w])
        return out


def _loader(dataset, batches: list[list[int]], collate_fn, num_workers: int, pin: bool, seed: int) -> DataLoader:
    # The explicit generator matters for exact resume: without one, every new DataLoader iterator draws its
    # worker seed from torch's *global* generator, and a resumed run (which builds one more iterator than
    # the uninterrupted run did) would shift every random number after it.
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn, num_workers=num_workers,
                      pin_memory=pin, generator=g)


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------

def _unpack(out, where: str = "model.loss(batch)") -> tuple[torch.Tensor, dict]:
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], dict)):
        raise TypeError(f"{where} must return (loss, metrics) with metrics a dict, e.g. "
                        f"`return loss, {{'recon': recon.detach()}}`; got {type(out).__name__}")
    loss, metrics = out
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise TypeError(f"{where} must return a scalar loss tensor; got {shape}. Reduce it, e.g. with .mean().")
    return loss.reshape(()), metrics


def _scalar(v, name: str) -> torch.Tensor | float:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise TypeError(f"metric {name!r} must be a scalar; got a tensor of shape {tuple(v.shape)}")
        return v.detach().reshape(()).float()
    if isinstance(v, numbers.Real):  # Python and NumPy numbers
        return float(v)
    raise TypeError(f"metric {name!r} must be a number or a scalar tensor; got {type(v).__name__}")


@contextlib.contextmanager
def _rng_fork(device: torch.device, seed: int | None = None):
    """Run a block with its own random numbers, then put every generator back as it was."""
    saved = capture_rng_state(device)
    try:
        if seed is not None:
            torch.manual_seed(seed)
        yield
    finally:
        restore_rng_state(saved, device)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


class _LivePlot:
    """A loss plot that redraws in place in a notebook (one output, updated through its display_id)."""

    def __init__(self, enabled: bool, min_interval_s: float = 1.0):
        self.enabled = enabled and _in_notebook()
        self.handle = None
        self.min_interval_s = min_interval_s
        self._last = -math.inf

    def update(self, history: History, force: bool = False) -> None:
        if not self.enabled or not history.records:
            return
        now = time.monotonic()
        if not force and now - self._last < self.min_interval_s:
            return
        self._last = now
        from IPython.display import Image, display
        from matplotlib.figure import Figure

        # A bare Figure (not pyplot) so the inline backend does not also show it when the cell ends.
        fig = Figure(figsize=(6, 3.5))
        ax = fig.add_subplot()
        history.plot(ax=ax)
        last = history.records[-1]
        ax.set_title(f"step {last['step']}: {last['split']} loss {last['loss']:.4g}", fontsize=10)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        img = Image(data=buf.getvalue(), format="png")
        if self.handle is None:
            self.handle = display(img, display_id=True)
        else:
            self.handle.update(img)


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
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


def _total_norm(params: list[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    if max_norm is not None:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if hasattr(torch.nn.utils, "get_total_norm"):
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


def _config_dict(cfg: TrainConfig) -> dict:
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


def _check_config(cfg: TrainConfig) -> None:
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
    need(cfg.eval_batches is None or cfg.eval_batches >= 1, f"eval_batches must be >= 1 or None")


def _call(cb, name: str, *args) -> None:
    fn = getattr(cb, name, None)
    if fn is not None:
        fn(*args)
    elif name == "on_step" and callable(cb):
        cb(*args)


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, batch_size: int, profile: Profile | None = None,
             collate_fn: Callable | None = None, max_batches: int | None = None, seed: int = 0,
             num_workers: int = 0) -> dict[str, float]:
    """Mean loss and metrics of ``model.loss`` over ``dataset`` (its first ``max_batches`` batches).

    Eval mode, no gradients, the profile's autocast; batches in dataset order; means are weighted by batch
    size, so they are per-example means for losses that average over the batch. Random numbers inside
    (a VAE's sampling, say) come from ``seed`` and the caller's random state is left as it was.

    Defined in Chapter 1.
    """
    profile = profile or get_profile()
    device = next(model.parameters()).device if any(True for _ in model.parameters()) else profile.device
    n = len(dataset)
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    if max_batches is not None:
        batches = batches[:max_batches]
    if not batches:
        raise ValueError("evaluate(): the evaluation dataset is empty.")
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor | float] = {}
    count = 0
    try:
        with _rng_fork(device, seed):
            loader = _loader(dataset, batches, collate_fn, num_workers, device.type == "cuda", seed)
            for idx, batch in zip(batches, loader):
                batch = to_device(batch, device, non_blocking=True)
                with profile.autocast():
                    loss, metrics = _unpack(model.loss(batch))
                k = len(idx)
                sums["loss"] = sums.get("loss", 0.0) + loss.detach().float() * k
                for name, v in metrics.items():
                    sums[name] = sums.get(name, 0.0) + _scalar(v, name) * k
                count += k
    finally:
        model.train(was_training)
    return {name: float(v) / count for name, v in sums.items()}


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------

def train(model: nn.Module, dataset, cfg: TrainConfig, *, profile: Profile | None = None, eval_dataset=None,
          collate_fn: Callable | None = None, callbacks: Iterable = (), live_plot: bool = False,
          resume: bool = True, progress: bool = True) -> History:
    """Train ``model`` (which has ``loss(batch) -> (loss, metrics)``) on ``dataset`` for ``cfg.steps`` updates.

    ``profile`` picks device and precision (default: :func:`t2i_lib.profiles.get_profile`).
    ``eval_dataset`` is evaluated every ``cfg.eval_every`` steps and at the end.
    ``callbacks``: callables ``cb(state: TrainState)`` run after every update, or objects with any of
    ``on_step(state)``, ``on_eval(state, results)``, ``on_end(state)``; raise :class:`StopTraining` in
    one to end early. ``live_plot``: redraw a loss plot in place while training (notebooks only).
    ``resume``: continue from ``cfg.ckpt_dir/last.pt`` if it exists (a finished run just loads its weights).
    ``progress``: show the progress bar and the start/end summary lines.

    Returns the :class:`History`. Raises :class:`NonFiniteLossError` on a NaN/inf loss (no checkpoint is
    written for that step, so the last one on disk stays good).

    Defined in Chapter 1.
    """
    from tqdm.auto import tqdm

    profile = profile or get_profile()
    _check_config(cfg)
    if not callable(getattr(model, "loss", None)):
        raise TypeError(f"{type(model).__name__} has no loss(batch) method. The trainer needs one returning "
                        f"(loss, metrics); see the model contract in t2i_lib/train/trainer.py.")
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError("train() needs a map-style dataset (with __len__ and __getitem__), so that the data "
                        "order can be replayed exactly on resume.")
    callbacks = list(callbacks)

    ctx = tdist.setup(profile.device)
    device = ctx.device
    show = progress and ctx.is_main
    was_training = model.training
    model.to(device)
    optimizer = _make_optimizer(model, cfg)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    schedule = make_schedule(cfg.schedule, cfg.steps, cfg.warmup_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=profile.use_grad_scaler)
    plan = _EpochPlan(len(dataset), cfg.batch_size, ctx.world_size, ctx.rank, cfg.seed, cfg.shuffle,
                      cfg.drop_last)
    history = History()
    window: dict[str, list[float]] = {}  # values since the last History record
    window_lr = cfg.lr
    running = None  # exponential moving average of the loss, for the progress bar
    step, epoch, index = 0, 0, 0
    rng_to_restore = None
    ckpt_path = Path(cfg.ckpt_dir).expanduser() / CHECKPOINT_NAME if cfg.ckpt_dir is not None else None

    # ---- resume -------------------------------------------------------------------------------------
    if ckpt_path is not None and ckpt_path.exists() and not resume and show:
        print(f"resume=False: starting from scratch; {ckpt_path} will be overwritten.")
    if ckpt_path is not None and resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        load_model_state(model, state["model"], ckpt_path)
        history = History(state.get("history", []))
        step = int(state["step"])
        if step >= cfg.steps:
            if show:
                print(f"{ckpt_path} is already at step {step} (cfg.steps={cfg.steps}): loaded its weights, "
                      f"nothing left to train. Pass resume=False (or another ckpt_dir) to train again.")
            model.train(was_training)
            return history
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(
                f"{ckpt_path}: the saved optimizer state does not fit this run ({e}). Changing which "
                f"parameters train, or switching weight_decay between 0 and > 0, changes the optimizer's "
                f"parameter groups; resume with the original settings or start over with resume=False.") from e
        if scaler.is_enabled() and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        lw = state.get("log_window") or {}
        window = {k: list(v) for k, v in lw.get("values", {}).items()}
        window_lr, running = lw.get("lr", cfg.lr), lw.get("running")
        data = state["data"]
        epoch, index = int(data["epoch"]), int(data["index"])
        _warn_on_changes(data, state.get("config", {}), cfg, plan, ckpt_path, ctx.is_main, show)
        rngs = state["rng"]
        if len(rngs) != ctx.world_size and show:
            print(f"Note: {ckpt_path} was written by {len(rngs)} process(es), this run has {ctx.world_size}; "
                  f"random streams (dropout, noise) continue from rank 0's, so they will not replay exactly.")
        rng_to_restore = rngs[ctx.rank] if len(rngs) == ctx.world_size else rngs[0]
        if show:
            print(f"Resuming from {ckpt_path} at step {step}/{cfg.steps} (epoch {epoch}, batch {index}).")

    # ---- the model as the loop calls it -------------------------------------------------------------
    ddp = tdist.wrap_model(model, ctx, cfg.find_unused_parameters) if ctx.enabled else None
    forward = ddp if ddp is not None else model.loss

    if show:
        n_params = sum(p.numel() for p in params)
        per_update = cfg.batch_size * cfg.grad_accum * ctx.world_size
        epochs = cfg.steps * cfg.grad_accum / plan.batches_per_epoch
        procs = f" x {ctx.world_size} processes" if ctx.enabled else ""
        sched = schedule.state_dict()["kind"]
        print(f"train: {type(model).__name__}, {n_params:,} trainable parameters | {cfg.steps} updates of "
              f"{per_update} examples (batch {cfg.batch_size} x accum {cfg.grad_accum}{procs}), "
              f"~{epochs:.3g} epochs of {len(dataset):,} | lr {cfg.lr:g} ({sched}) | {profile.precision} on "
              f"{device} | checkpoints: {ckpt_path.parent if ckpt_path else 'off'}")

    pin = device.type == "cuda"

    def stream():
        e, i = epoch, index
        while True:
            batches = plan.batches(e)[i:]
            for b in _loader(dataset, batches, collate_fn, cfg.num_workers, pin, _epoch_seed(cfg.seed, e)):
                i += 1
                yield e, i, b
            e, i = e + 1, 0

    def save(step_now: int, pos: tuple[int, int], window: dict, window_lr: float, running: float | None) -> None:
        rngs = tdist.gather_objects(capture_rng_state(device))  # a collective: every rank takes part
        if not ctx.is_main:
            return
        save_checkpoint(ckpt_path, {
            "format": _FORMAT,
            "step": step_now,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": {**schedule.state_dict(), "step": step_now},
            "scaler": scaler.state_dict(),
            "rng": rngs,
            "data": {"epoch": pos[0], "index": pos[1], "seed": cfg.seed, "shuffle": cfg.shuffle,
                     "drop_last": cfg.drop_last, "global_batch": plan.global_batch,
                     "batches_per_epoch": plan.batches_per_epoch, "dataset_len": len(dataset)},
            "history": history.state_dict(),
            # the steps since the last History record, so a resumed run logs the same means
            "log_window": {"values": {k: list(v) for k, v in window.items()}, "lr": window_lr, "running": running},
            "config": _config_dict(cfg),
            "world_size": ctx.world_size,
            "torch_version": str(torch.__version__),
        })

    def run_eval(step_now: int, lr: float) -> dict | None:
        if eval_dataset is None or not ctx.is_main:
            return None
        res = evaluate(model, eval_dataset, batch_size=cfg.batch_size, profile=profile, collate_fn=collate_fn,
                       max_batches=cfg.eval_batches, seed=cfg.seed, num_workers=cfg.num_workers)
        history.log(step_now, "eval", res.pop("loss"), lr, **res)
        live.update(history, force=True)
        return history.records[-1]

    live = _LivePlot(live_plot and ctx.is_main)
    pbar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not show, dynamic_ncols=True)
    last_eval = None
    pos = (epoch, index)
    t0 = time.monotonic()
    start_step = step
    lr = float(schedule(step, float(cfg.lr)))
    it = stream()
    model.train()
    optimizer.zero_grad(set_to_none=True)  # gradients left over from earlier code (or a failed run) would add in
    skipped_in_a_row = 0  # fp16 steps the loss scaler skipped because of inf/NaN gradients
    if rng_to_restore is not None:
        restore_rng_state(rng_to_restore, device)

    try:
        while step < cfg.steps:
            lr = float(schedule(step, float(cfg.lr)))
            for group in optimizer.param_groups:
                group["lr"] = lr

            # -- forward / backward over grad_accum micro-batches
            loss_sum = torch.zeros((), device=device)
            metric_sums: dict[str, torch.Tensor | float] = {}
            for micro in range(cfg.grad_accum):
                e, i, batch = next(it)
                batch = to_device(batch, device, non_blocking=pin)
                # In DDP, gradients are averaged across processes only on the last micro-batch.
                sync = ddp.no_sync() if ddp is not None and micro < cfg.grad_accum - 1 else contextlib.nullcontext()
                with sync:
                    with profile.autocast():
                        loss, metrics = _unpack(forward(batch))
                    if not loss.requires_grad:
                        raise RuntimeError("model.loss returned a loss that does not require grad: was it "
                                           "computed under torch.no_grad(), or detached?")
                    scaler.scale(loss / cfg.grad_accum).backward()
                loss_sum = loss_sum + loss.detach().float()
                for name, v in metrics.items():
                    metric_sums[name] = metric_sums.get(name, 0.0) + _scalar(v, name)

            # -- gradients: unscale (fp16), measure and clip
            scaler.unscale_(optimizer)
            gnorm = _total_norm(params, cfg.clip_grad_norm)

            # -- one device->host transfer per step: loss, grad norm, metrics (averaged over processes)
            names = sorted(metric_sums)
            vec = torch.stack([loss_sum, gnorm.to(device).float().reshape(())]
                              + [torch.as_tensor(metric_sums[k], device=device, dtype=torch.float32)
                                 for k in names]) / torch.tensor([cfg.grad_accum, 1] + [cfg.grad_accum] * len(names),
                                                                 device=device, dtype=torch.float32)
            vals = tdist.all_reduce_mean(vec).tolist()
            loss_val, gnorm_val = vals[0], vals[1]
            step_metrics = dict(zip(names, vals[2:]))

            if not math.isfinite(loss_val):
                bad = [f"{k}={v}" for k, v in step_metrics.items() if not math.isfinite(v)]
                raise NonFiniteLossError(
                    f"Training stopped at step {step + 1} (epoch {e}): the loss is {loss_val} "
                    f"(averaged over {cfg.grad_accum} micro-batch(es))."
                    + (f" Non-finite metrics: {', '.join(bad)}." if bad else "")
                    + f" The weights were not updated with it"
                    + (f", and the last good checkpoint {ckpt_path} was left untouched." if ckpt_path and
                       ckpt_path.exists() else ".")
                    + f" Usual causes: a learning rate too high (lr={lr:.3g} at this step), log/sqrt/division "
                      f"of zero in the loss, or fp16 overflow. Fix the cause and call train() again: it "
                      f"resumes from the last checkpoint.")
            if not math.isfinite(gnorm_val) and not scaler.is_enabled():
                raise NonFiniteLossError(
                    f"Training stopped at step {step + 1} (epoch {e}): the loss is finite ({loss_val:.4g}) but "
                    f"the gradient norm is {gnorm_val}. The weights were not updated with it"
                    + (f"; the last good checkpoint {ckpt_path} was left untouched." if ckpt_path and
                       ckpt_path.exists() else ".")
                    + " Look for an operation with an infinite derivative (sqrt or log at 0) in the loss.")
            # With the fp16 loss scaler an infinite gradient is expected now and then: the scaler skips that
            # step and halves its scale; that is its job, not an error. Twenty skips in a row (a scale a
            # million times smaller) mean the gradients overflow fp16 even unscaled: that is an error.
            skipped_in_a_row = 0 if math.isfinite(gnorm_val) else skipped_in_a_row + 1
            if skipped_in_a_row >= 20:
                raise NonFiniteLossError(
                    f"Training stopped at step {step + 1}: the gradients were inf/NaN for 20 steps in a row "
                    f"under fp16 even with loss scaling (scale now {scaler.get_scale():.3g}), so no update has "
                    f"been applied since step {step + 1 - 20}. Lower the learning rate, or train in bf16/fp32 "
                    f"(get_profile(precision=...)).")

            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            pos = (e, i)

            # -- bookkeeping
            window.setdefault("loss", []).append(loss_val)
            if math.isfinite(gnorm_val):
                window.setdefault("grad_norm", []).append(gnorm_val)
            for k, v in step_metrics.items():
                window.setdefault(k, []).append(v)
            window_lr = lr
            running = loss_val if running is None else 0.9 * running + 0.1 * loss_val
            pbar.update(1)
            post = {"loss": f"{running:.4g}", "lr": f"{lr:.2e}"}
            if last_eval is not None:
                post["eval"] = f"{last_eval['loss']:.4g}"
            pbar.set_postfix(post, refresh=False)

            if step % cfg.log_every == 0 or step == cfg.steps:
                means = {k: sum(v) / len(v) for k, v in window.items()}
                history.log(step, "train", means.pop("loss"), window_lr, **means)
                window = {}
                live.update(history)

            evaluated = False
            if eval_dataset is not None and ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps):
                last_eval = run_eval(step, lr)
                evaluated = True

            saved = False
            if ckpt_path is not None and ((cfg.ckpt_every and step % cfg.ckpt_every == 0) or step == cfg.steps):
                save(step, pos, window, window_lr, running)
                saved = True

            if callbacks:
                state = TrainState(step=step, epoch=e, loss=loss_val, lr=lr, grad_norm=gnorm_val,
                                   metrics=step_metrics, model=model, optimizer=optimizer, history=history,
                                   cfg=cfg, profile=profile, rank=ctx.rank, world_size=ctx.world_size)
                try:
                    with _rng_fork(device):
                        for cb in callbacks:
                            if evaluated and last_eval is not None:
                                _call(cb, "on_eval", state, last_eval)
                            _call(cb, "on_step", state)
                except StopTraining as stop:
                    if show:
                        print(f"Stopped by a callback at step {step}" + (f": {stop}" if str(stop) else "."))
                    if window:
                        means = {k: sum(v) / len(v) for k, v in window.items()}
                        history.log(step, "train", means.pop("loss"), window_lr, **means)
                        window = {}
                    if eval_dataset is not None and not evaluated:
                        last_eval = run_eval(step, lr)
                    if ckpt_path is not None and not saved:
                        save(step, pos, window, window_lr, running)
                    break
    finally:
        pbar.close()
        model.train(was_training)

    live.update(history, force=True)
    for cb in callbacks:
        _call(cb, "on_end", TrainState(step=step, epoch=pos[0], loss=history.last() if len(history) else math.nan,
                                       lr=lr, grad_norm=math.nan, metrics={}, model=model, optimizer=optimizer,
                                       history=history, cfg=cfg, profile=profile, rank=ctx.rank,
                                       world_size=ctx.world_size))
    if show:
        secs = time.monotonic() - t0
        ev = f", eval loss {history.last('loss', 'eval'):.4g}" if any(r["split"] == "eval" for r in history.records) else ""
        print(f"done: {step - start_step} updates in {secs:.1f} s ({(step - start_step) / max(secs, 1e-9):.2f} it/s), "
              f"final train loss {history.last():.4g}{ev}")
    return history


def _warn_on_changes(data: dict, saved_cfg: dict, cfg: TrainConfig, plan: _EpochPlan, path: Path, main: bool,
                     show: bool) -> None:
    """Say what a resume cannot reproduce because the run's settings changed since the checkpoint."""
    changed = []
    for key, now in (("seed", cfg.seed), ("shuffle", cfg.shuffle), ("drop_last", cfg.drop_last),
                     ("global_batch", plan.global_batch), ("dataset_len", plan.n)):
        if key in data and data[key] != now:
            changed.append(f"{key}: {data[key]} -> {now}")
    if changed and main:
        warnings.warn(f"Resuming from {path} with a different data setup ({'; '.join(changed)}): training "
                      f"continues, but not on the batches the interrupted run would have seen next.",
                      stacklevel=3)
    if show and saved_cfg:
        notes = [f"{k}: {saved_cfg[k]} -> {v}" for k, v in _config_dict(cfg).items()
                 if k in ("lr", "schedule", "warmup_steps", "weight_decay", "clip_grad_norm", "grad_accum", "steps")
                 and k in saved_cfg and saved_cfg[k] != v]
        if notes:
            print("Note: settings changed since the checkpoint (the new ones apply from here): " + "; ".join(notes))
