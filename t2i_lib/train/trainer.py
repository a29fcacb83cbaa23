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

``train()`` builds a :class:`Trainer` and calls :meth:`Trainer.fit`, whose loop reads as the list below;
each line is one method:

1. ``set_lr``: the learning rate from the schedule (:mod:`t2i_lib.train.schedules`);
2. ``update``: ``grad_accum`` micro-batches, forward under ``profile.autocast()`` (fp32 on the CPU, bf16
   or fp16 on a GPU), ``backward`` of ``loss / grad_accum`` (scaled by a ``GradScaler`` in fp16); then
   the gradients are unscaled, their norm measured (logged as ``grad_norm``) and clipped if
   ``clip_grad_norm`` is set (:mod:`t2i_lib.train.update`);
3. ``guard``: stops with :class:`NonFiniteLossError` if the loss (averaged over the micro-batches) is NaN
   or infinite, *before* the weights are touched, so the last good checkpoint is still the last good one;
4. ``apply``: the AdamW step, then the EMA of the weights if ``TrainConfig(ema_decay=...)``
   (:mod:`t2i_lib.train.ema`);
5. ``record``: the progress bar, a :class:`History` record every ``log_every`` steps, the live plot;
6. ``maybe_evaluate`` every ``eval_every`` steps; the callbacks' ``on_measure`` (e.g.
   :class:`t2i_lib.train.callbacks.Every`); ``maybe_save`` every ``ckpt_every`` steps; the callbacks'
   ``on_step``.

Exact resume: everything about the run in progress that is not the model, optimizer or schedule is one
object, :class:`RunState` (step, data position, history, the log window, the loss scaler, the EMA, the
random-number generators of every process), and a checkpoint is that plus the model, optimizer and
schedule (see :meth:`Trainer.state_dict`). The data order is a permutation derived from
``(seed, epoch)`` alone (:mod:`t2i_lib.train.order`), so the position is just ``(epoch, batches consumed
in that epoch)`` and a resumed run continues with the very next batch. On the CPU, an
interrupted-and-resumed run ends with bit-for-bit the same weights (and EMA) as an uninterrupted one (the
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
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from t2i_lib.profiles import Profile, get_profile
from t2i_lib.storage.checkpoint import (CheckpointError, capture_rng_state, load_checkpoint, load_model_state,
                                        restore_rng_state, save_checkpoint)
from t2i_lib.train import distributed as tdist
from t2i_lib.train.callbacks import StopTraining, TrainState, call_hook
from t2i_lib.train.config import TrainConfig, check_config, config_dict
from t2i_lib.train.ema import EMA
from t2i_lib.train.history import History, LivePlot
from t2i_lib.train.order import EpochPlan, batch_stream, make_loader, rng_fork, to_device
from t2i_lib.train.schedules import make_schedule
from t2i_lib.train.update import (NonFiniteLossError, StepResult, check_finite, make_optimizer, scalar,
                                  total_norm, unpack)

__all__ = ["Trainer", "RunState", "train", "evaluate", "CHECKPOINT_NAME", "CHECKPOINT_FORMAT",
           # defined in the modules beside this one; importable from here as before the split
           "TrainConfig", "History", "TrainState", "NonFiniteLossError", "StopTraining", "to_device"]

CHECKPOINT_NAME = "last.pt"  # the file in cfg.ckpt_dir that train() writes and resumes from
CHECKPOINT_FORMAT = 2  # checkpoint layout version (2 added "ema" and "skipped_in_a_row"; 1 still loads)
PROGRESS_SMOOTHING = 0.9  # the progress bar's loss is an exponential moving average with this decay
CHANGED_SETTINGS_NOTED = ("lr", "schedule", "warmup_steps", "weight_decay", "clip_grad_norm", "grad_accum",
                          "steps", "ema_decay")  # said aloud when a resumed run changes them


@dataclass
class RunState:
    """A run in progress, apart from the model, optimizer and schedule. The checkpoint holds it whole."""

    step: int = 0  # optimizer updates done
    epoch: int = 0  # the data position: epoch, and batches of it consumed
    index: int = 0
    history: History = field(default_factory=History)
    window: dict[str, list[float]] = field(default_factory=dict)  # values since the last History record
    window_lr: float = 0.0  # the lr of the last update in the window
    running: float | None = None  # the progress bar's smoothed loss
    skipped_in_a_row: int = 0  # fp16 steps the loss scaler skipped (inf/NaN gradients) in a row
    scaler: torch.amp.GradScaler | None = None
    ema: EMA | None = None
    rng: list[dict] | None = None  # every process's random state, as saved (or loaded) last

    def state_dict(self) -> dict:
        """The state to save: what :meth:`load_state_dict` restores."""
        return {"step": self.step, "data": {"epoch": self.epoch, "index": self.index},
                "history": self.history.state_dict(),
                # the steps since the last History record, so a resumed run logs the same means
                "log_window": {"values": {k: list(v) for k, v in self.window.items()}, "lr": self.window_lr,
                               "running": self.running},
                "skipped_in_a_row": self.skipped_in_a_row,
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": self.rng}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`RunState.state_dict` (format 1 checkpoints have no EMA and no skip count)."""
        self.step, self.history = int(state["step"]), History(state.get("history", []))
        self.epoch, self.index = int(state["data"]["epoch"]), int(state["data"]["index"])
        lw = state.get("log_window") or {}
        self.window = {k: list(v) for k, v in lw.get("values", {}).items()}
        self.window_lr, self.running = lw.get("lr", self.window_lr), lw.get("running")
        self.skipped_in_a_row = int(state.get("skipped_in_a_row", 0))
        if self.scaler is not None and self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.rng = state["rng"]


class Trainer:
    """One training run. ``Trainer(model, dataset, cfg, ...).fit()`` is what :func:`train` does.

    The arguments are :func:`train`'s. After :meth:`fit`, ``run`` is the final :class:`RunState`
    (``run.history``, ``run.ema``). Defined in Chapter 1.
    """

    def __init__(self, model: nn.Module, dataset, cfg: TrainConfig, *, profile: Profile | None = None,
                 eval_dataset=None, collate_fn: Callable | None = None, callbacks: Iterable = (),
                 live_plot: bool = False, resume: bool = True, progress: bool = True):
        self.profile = profile or get_profile()
        check_config(cfg)
        if not callable(getattr(model, "loss", None)):
            raise TypeError(f"{type(model).__name__} has no loss(batch) method. The trainer needs one returning "
                            f"(loss, metrics); see the model contract in t2i_lib/train/trainer.py.")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError("train() needs a map-style dataset (with __len__ and __getitem__), so that the data "
                            "order can be replayed exactly on resume.")
        self.model, self.dataset, self.cfg, self.eval_dataset = model, dataset, cfg, eval_dataset
        self.collate_fn, self.callbacks, self.resume = collate_fn, list(callbacks), resume
        self.ctx = tdist.setup(self.profile.device)
        self.device = self.ctx.device
        self.show = progress and self.ctx.is_main
        self.was_training = model.training
        model.to(self.device)
        self.optimizer = make_optimizer(model, cfg)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.schedule = make_schedule(cfg.schedule, cfg.steps, cfg.warmup_steps)
        self.plan = EpochPlan(len(dataset), cfg.batch_size, self.ctx.world_size, self.ctx.rank, cfg.seed,
                              cfg.shuffle, cfg.drop_last)
        self.run = RunState(window_lr=cfg.lr,
                            scaler=torch.amp.GradScaler(self.device.type, enabled=self.profile.use_grad_scaler))
        self.ckpt_path = Path(cfg.ckpt_dir).expanduser() / CHECKPOINT_NAME if cfg.ckpt_dir is not None else None
        self.pin = self.device.type == "cuda"
        self.ddp: nn.Module | None = None
        self.forward: Callable = model.loss
        self.live = LivePlot(live_plot and self.ctx.is_main)
        self.last_eval: dict | None = None
        self.lr = float(cfg.lr)

    # ---- the loop ----------------------------------------------------------------------------------

    def fit(self) -> History:
        """Train (or resume and finish) to ``cfg.steps`` updates; returns the History."""
        ckpt = self.load()
        if ckpt is not None and int(ckpt["step"]) >= self.cfg.steps:
            return self.already_done(ckpt)
        self.prepare(ckpt)
        batches = batch_stream(self.plan, self.dataset, self.collate_fn, self.cfg.num_workers, self.pin,
                               self.run.epoch, self.run.index)
        self.start()
        try:
            while self.run.step < self.cfg.steps:
                lr = self.set_lr()
                result = self.update(batches)  # forward/backward x grad_accum, unscale, clip
                self.guard(result, lr)  # NaN/inf: raises before the weights change
                self.apply(result)  # optimizer step, loss scaler, EMA; step += 1
                self.record(result, lr)  # log window, progress bar, History, live plot
                evaluated = self.maybe_evaluate(lr)
                state = self.train_state(result, lr)
                stop = self.hooks("on_measure", state)  # Every(...): recorded before the checkpoint
                saved = self.maybe_save()
                stop = stop or self.hooks("on_step", state, evaluated)
                if stop is not None:
                    self.stop_early(stop, lr, evaluated, saved)
                    break
        finally:
            self.pbar.close()
            self.model.train(self.was_training)
        return self.end()

    # ---- before the loop ---------------------------------------------------------------------------

    def load(self) -> dict | None:
        """The checkpoint to resume from (its weights already loaded into the model), or None."""
        path = self.ckpt_path
        if path is None or not path.exists():
            return None
        if not self.resume:
            if self.show:
                print(f"resume=False: starting from scratch; {path} will be overwritten.")
            return None
        ckpt = load_checkpoint(path)
        load_model_state(self.model, ckpt["model"], path)
        return ckpt

    def already_done(self, ckpt: dict) -> History:
        """A checkpoint at (or past) ``cfg.steps``: its weights are loaded; return its History (and EMA)."""
        if self.show:
            print(f"{self.ckpt_path} is already at step {ckpt['step']} (cfg.steps={self.cfg.steps}): loaded its "
                  f"weights, nothing left to train. Pass resume=False (or another ckpt_dir) to train again.")
        self.model.train(self.was_training)
        if ckpt.get("ema"):
            self.run.ema = EMA(self.model, float(ckpt["ema"]["decay"]))
        self.run.load_state_dict(ckpt)
        self.run.history.ema = self.run.ema
        return self.run.history

    def prepare(self, ckpt: dict | None) -> None:
        """Wrap the model for DDP, start the EMA, restore the checkpoint's run state, say what will run."""
        if self.ctx.enabled:
            self.ddp = self.forward = tdist.wrap_model(self.model, self.ctx, self.cfg.find_unused_parameters)
        if self.cfg.ema_decay is not None:  # after DDP, which gives every process rank 0's weights
            self.run.ema = EMA(self.model, self.cfg.ema_decay)
        if ckpt is not None:
            self.restore(ckpt)
        self.run.history.ema = self.run.ema
        if self.show:
            self.announce()

    def restore(self, ckpt: dict) -> None:
        path, cfg, ctx = self.ckpt_path, self.cfg, self.ctx
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(
                f"{path}: the saved optimizer state does not fit this run ({e}). Changing which "
                f"parameters train, or switching weight_decay between 0 and > 0, changes the optimizer's "
                f"parameter groups; resume with the original settings or start over with resume=False.") from e
        self.run.load_state_dict(ckpt)
        _warn_on_changes(ckpt["data"], ckpt.get("config", {}), cfg, self.plan, path, ctx.is_main, self.show)
        if self.run.ema is not None:
            self.run.ema.decay = float(cfg.ema_decay)  # a changed decay applies from here
            if not ckpt.get("ema") and self.show:
                print(f"Note: {path} has no EMA of the weights; the EMA starts from the weights at step "
                      f"{self.run.step}.")
        if len(self.run.rng) != ctx.world_size and self.show:
            print(f"Note: {path} was written by {len(self.run.rng)} process(es), this run has {ctx.world_size}; "
                  f"random streams (dropout, noise) continue from rank 0's, so they will not replay exactly.")
        if self.show:
            print(f"Resuming from {path} at step {self.run.step}/{cfg.steps} (epoch {self.run.epoch}, "
                  f"batch {self.run.index}).")

    def announce(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        n_params = sum(p.numel() for p in self.params)
        per_update = cfg.batch_size * cfg.grad_accum * ctx.world_size
        epochs = cfg.steps * cfg.grad_accum / self.plan.batches_per_epoch
        procs = f" x {ctx.world_size} processes" if ctx.enabled else ""
        sched = self.schedule.state_dict()["kind"]
        ema = f" | EMA {cfg.ema_decay:g}" if cfg.ema_decay is not None else ""
        print(f"train: {type(self.model).__name__}, {n_params:,} trainable parameters | {cfg.steps} updates of "
              f"{per_update} examples (batch {cfg.batch_size} x accum {cfg.grad_accum}{procs}), "
              f"~{epochs:.3g} epochs of {len(self.dataset):,} | lr {cfg.lr:g} ({sched}){ema} | "
              f"{self.profile.precision} on {self.device} | checkpoints: "
              f"{self.ckpt_path.parent if self.ckpt_path else 'off'}")

    def start(self) -> None:
        """Progress bar, clock, training mode, no stale gradients, and the saved random state back."""
        from tqdm.auto import tqdm

        self.pbar = tqdm(total=self.cfg.steps, initial=self.run.step, desc="train", disable=not self.show,
                         dynamic_ncols=True)
        self.t0, self.start_step = time.monotonic(), self.run.step
        self.lr = float(self.schedule(self.run.step, float(self.cfg.lr)))
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)  # gradients left over from earlier code would add in
        rngs = self.run.rng
        if rngs is not None:
            restore_rng_state(rngs[self.ctx.rank] if len(rngs) == self.ctx.world_size else rngs[0], self.device)

    # ---- one update --------------------------------------------------------------------------------

    def set_lr(self) -> float:
        self.lr = float(self.schedule(self.run.step, float(self.cfg.lr)))
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        return self.lr

    def update(self, batches: Iterator) -> StepResult:
        """Forward and backward over ``grad_accum`` micro-batches; unscale, measure and clip the gradients."""
        cfg, scaler = self.cfg, self.run.scaler
        loss_sum = torch.zeros((), device=self.device)
        metric_sums: dict[str, torch.Tensor | float] = {}
        for micro in range(cfg.grad_accum):
            epoch, index, batch = next(batches)
            batch = to_device(batch, self.device, non_blocking=self.pin)
            # In DDP, gradients are averaged across processes only on the last micro-batch.
            last = micro == cfg.grad_accum - 1
            sync = self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()
            with sync:
                with self.profile.autocast():
                    loss, metrics = unpack(self.forward(batch))
                if not loss.requires_grad:
                    raise RuntimeError("model.loss returned a loss that does not require grad: was it "
                                       "computed under torch.no_grad(), or detached?")
                scaler.scale(loss / cfg.grad_accum).backward()
            loss_sum = loss_sum + loss.detach().float()
            for name, v in metrics.items():
                metric_sums[name] = metric_sums.get(name, 0.0) + scalar(v, name)
        scaler.unscale_(self.optimizer)
        grad_norm = total_norm(self.params, cfg.clip_grad_norm)
        return self.mean_over_processes(loss_sum, grad_norm, metric_sums, epoch, index)

    def mean_over_processes(self, loss_sum, grad_norm, metric_sums, epoch: int, index: int) -> StepResult:
        """One device-to-host transfer per step: loss, grad norm and metrics, averaged over processes."""
        names = sorted(metric_sums)
        accum = self.cfg.grad_accum
        vec = torch.stack([loss_sum, grad_norm.to(self.device).float().reshape(())]
                          + [torch.as_tensor(metric_sums[k], device=self.device, dtype=torch.float32)
                             for k in names])
        vec = vec / torch.tensor([accum, 1] + [accum] * len(names), device=self.device, dtype=torch.float32)
        vals = tdist.all_reduce_mean(vec).tolist()
        return StepResult(vals[0], vals[1], dict(zip(names, vals[2:])), epoch, index)

    def guard(self, result: StepResult, lr: float) -> None:
        """The NaN guard (:func:`t2i_lib.train.update.check_finite`)."""
        self.run.skipped_in_a_row = check_finite(result, step=self.run.step, lr=lr, grad_accum=self.cfg.grad_accum,
                                                 scaler=self.run.scaler, skipped_in_a_row=self.run.skipped_in_a_row,
                                                 ckpt_path=self.ckpt_path)

    def apply(self, result: StepResult) -> None:
        """The optimizer step (the fp16 scaler skips it on inf/NaN gradients), then the EMA."""
        run = self.run
        run.scaler.step(self.optimizer)
        run.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if run.ema is not None and math.isfinite(result.grad_norm):  # a skipped step moved no weight
            run.ema.update(self.model)
        run.step += 1
        run.epoch, run.index = result.epoch, result.index

    # ---- around the update -------------------------------------------------------------------------

    def record(self, result: StepResult, lr: float) -> None:
        """The log window, the progress bar, and a History record every ``log_every`` steps."""
        run = self.run
        run.window.setdefault("loss", []).append(result.loss)
        if math.isfinite(result.grad_norm):
            run.window.setdefault("grad_norm", []).append(result.grad_norm)
        for k, v in result.metrics.items():
            run.window.setdefault(k, []).append(v)
        run.window_lr = lr
        run.running = result.loss if run.running is None else (
            PROGRESS_SMOOTHING * run.running + (1 - PROGRESS_SMOOTHING) * result.loss)
        self.pbar.update(1)
        post = {"loss": f"{run.running:.4g}", "lr": f"{lr:.2e}"}
        if self.last_eval is not None:
            post["eval"] = f"{self.last_eval['loss']:.4g}"
        self.pbar.set_postfix(post, refresh=False)
        if run.step % self.cfg.log_every == 0 or run.step == self.cfg.steps:
            self.flush_window()
            self.live.update(run.history)

    def flush_window(self) -> None:
        """A train record: the means of the values logged since the last one."""
        means = {k: sum(v) / len(v) for k, v in self.run.window.items()}
        self.run.history.log(self.run.step, "train", means.pop("loss"), self.run.window_lr, **means)
        self.run.window = {}

    def maybe_evaluate(self, lr: float) -> bool:
        step, cfg = self.run.step, self.cfg
        due = self.eval_dataset is not None and ((cfg.eval_every and step % cfg.eval_every == 0)
                                                 or step == cfg.steps)
        if due:
            self.last_eval = self.evaluate_now(lr)
        return bool(due)

    def evaluate_now(self, lr: float) -> dict | None:
        """Evaluate (rank 0 only) and log it; returns the eval record."""
        if self.eval_dataset is None or not self.ctx.is_main:
            return None
        cfg = self.cfg
        res = evaluate(self.model, self.eval_dataset, batch_size=cfg.batch_size, profile=self.profile,
                       collate_fn=self.collate_fn, max_batches=cfg.eval_batches, seed=cfg.seed,
                       num_workers=cfg.num_workers)
        rec = self.run.history.log(self.run.step, "eval", res.pop("loss"), lr, **res)
        self.live.update(self.run.history, force=True)
        return rec

    def maybe_save(self) -> bool:
        step, cfg = self.run.step, self.cfg
        due = self.ckpt_path is not None and ((cfg.ckpt_every and step % cfg.ckpt_every == 0)
                                              or step == cfg.steps)
        if due:
            self.save()
        return bool(due)

    def save(self) -> None:
        """Write the checkpoint (rank 0), atomically: a crash mid-save leaves the previous one intact."""
        self.run.rng = tdist.gather_objects(capture_rng_state(self.device))  # a collective: every rank takes part
        if self.ctx.is_main:
            save_checkpoint(self.ckpt_path, self.state_dict())

    def state_dict(self) -> dict:
        """The checkpoint: the model, optimizer and schedule, the :class:`RunState`, and notes on the run."""
        ckpt = {"format": CHECKPOINT_FORMAT, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": {**self.schedule.state_dict(), "step": self.run.step},
                **self.run.state_dict(),
                "config": config_dict(self.cfg), "world_size": self.ctx.world_size,
                "torch_version": str(torch.__version__)}
        ckpt["data"].update(self.plan.describe())
        return ckpt

    def train_state(self, result: StepResult, lr: float) -> TrainState:
        return TrainState(step=self.run.step, epoch=result.epoch, loss=result.loss, lr=lr,
                          grad_norm=result.grad_norm, metrics=result.metrics, model=self.model,
                          optimizer=self.optimizer, history=self.run.history, cfg=self.cfg, profile=self.profile,
                          rank=self.ctx.rank, world_size=self.ctx.world_size, ema=self.run.ema)

    def hooks(self, name: str, state: TrainState, evaluated: bool = False) -> StopTraining | None:
        """Run every callback's ``name`` hook (``on_eval`` first, after an evaluation) in a forked RNG.

        Returns the :class:`StopTraining` one of them raised, or None.
        """
        callbacks = [cb for cb in self.callbacks if name == "on_step" or hasattr(cb, name)]
        if not callbacks:
            return None
        try:
            with rng_fork(self.device):
                for cb in callbacks:
                    if evaluated and self.last_eval is not None:
                        call_hook(cb, "on_eval", state, self.last_eval)
                    call_hook(cb, name, state)
        except StopTraining as stop:
            return stop
        return None

    def stop_early(self, stop: StopTraining, lr: float, evaluated: bool, saved: bool) -> None:
        """A callback raised StopTraining: log, evaluate and save what this step has not yet."""
        if self.show:
            print(f"Stopped by a callback at step {self.run.step}" + (f": {stop}" if str(stop) else "."))
        if self.run.window:
            self.flush_window()
        if self.eval_dataset is not None and not evaluated:
            self.last_eval = self.evaluate_now(lr)
        if self.ckpt_path is not None and not saved:
            self.save()

    def end(self) -> History:
        """The last plot, the callbacks' ``on_end``, the summary line; returns the History."""
        run = self.run
        self.live.update(run.history, force=True)
        try:
            last_loss = run.history.last()
        except KeyError:
            last_loss = math.nan
        final = TrainState(step=run.step, epoch=run.epoch, loss=last_loss, lr=self.lr, grad_norm=math.nan,
                           metrics={}, model=self.model, optimizer=self.optimizer, history=run.history,
                           cfg=self.cfg, profile=self.profile, rank=self.ctx.rank, world_size=self.ctx.world_size,
                           ema=run.ema)
        for cb in self.callbacks:
            call_hook(cb, "on_end", final)
        if self.show:
            secs, done = time.monotonic() - self.t0, run.step - self.start_step
            ev = (f", eval loss {run.history.last('loss', 'eval'):.4g}"
                  if any(r["split"] == "eval" for r in run.history.records) else "")
            print(f"done: {done} updates in {secs:.1f} s ({done / max(secs, 1e-9):.2f} it/s), "
                  f"final train loss {last_loss:.4g}{ev}")
        run.history.ema = run.ema
        return run.history


def train(model: nn.Module, dataset, cfg: TrainConfig, *, profile: Profile | None = None, eval_dataset=None,
          collate_fn: Callable | None = None, callbacks: Iterable = (), live_plot: bool = False,
          resume: bool = True, progress: bool = True) -> History:
    """Train ``model`` (which has ``loss(batch) -> (loss, metrics)``) on ``dataset`` for ``cfg.steps`` updates.

    ``profile`` picks device and precision (default: :func:`t2i_lib.profiles.get_profile`).
    ``eval_dataset`` is evaluated every ``cfg.eval_every`` steps and at the end.
    ``callbacks``: callables ``cb(state: TrainState)`` run after every update, or objects with any of
    ``on_measure(state)``, ``on_step(state)``, ``on_eval(state, results)``, ``on_end(state)`` (see
    :mod:`t2i_lib.train.callbacks`; :class:`~t2i_lib.train.callbacks.Every` samples or scores every n
    steps); raise :class:`StopTraining` in one to end early. ``live_plot``: redraw a loss plot in place
    while training (notebooks only). ``resume``: continue from ``cfg.ckpt_dir/last.pt`` if it exists (a
    finished run just loads its weights). ``progress``: show the progress bar and the start/end summary
    lines.

    Returns the :class:`History`; with ``cfg.ema_decay`` set, ``history.ema`` is the
    :class:`~t2i_lib.train.ema.EMA` of the weights (``with history.ema.swapped_in(model): ...``).
    Raises :class:`NonFiniteLossError` on a NaN/inf loss (no checkpoint is written for that step, so the
    last one on disk stays good).

    Defined in Chapter 1.
    """
    return Trainer(model, dataset, cfg, profile=profile, eval_dataset=eval_dataset, collate_fn=collate_fn,
                   callbacks=callbacks, live_plot=live_plot, resume=resume, progress=progress).fit()


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, batch_size: int, profile: Profile | None = None,
             collate_fn: Callable | None = None, max_batches: int | None = None, seed: int = 0,
             num_workers: int = 0) -> dict[str, float]:
    """Mean loss and metrics of ``model.loss`` over ``dataset`` (its first ``max_batches`` batches).

    Eval mode, no gradients, the profile's autocast; batches in dataset order; means are weighted by batch
    size, so they are per-example means for losses that average over the batch. Random numbers inside
    (a VAE's sampling, say) come from ``seed`` and the caller's random state is left as it was. To
    evaluate the EMA weights: ``with history.ema.swapped_in(model): evaluate(model, ...)``.

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
        with rng_fork(device, seed):
            loader = make_loader(dataset, batches, collate_fn, num_workers, device.type == "cuda", seed)
            for idx, batch in zip(batches, loader):
                batch = to_device(batch, device, non_blocking=True)
                with profile.autocast():
                    loss, metrics = unpack(model.loss(batch))
                k = len(idx)
                sums["loss"] = sums.get("loss", 0.0) + loss.detach().float() * k
                for name, v in metrics.items():
                    sums[name] = sums.get(name, 0.0) + scalar(v, name) * k
                count += k
    finally:
        model.train(was_training)
    return {name: float(v) / count for name, v in sums.items()}


def _warn_on_changes(data: dict, saved_cfg: dict, cfg: TrainConfig, plan: EpochPlan, path: Path, main: bool,
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
                      stacklevel=6)  # the caller of train()
    if show and saved_cfg:
        notes = [f"{k}: {saved_cfg[k]} -> {v}" for k, v in config_dict(cfg).items()
                 if k in CHANGED_SETTINGS_NOTED and k in saved_cfg and saved_cfg[k] != v]
        if notes:
            print("Note: settings changed since the checkpoint (the new ones apply from here): " + "; ".join(notes))
