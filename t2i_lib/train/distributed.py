"""Several GPUs (or CPU processes) with PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

How to train a chapter's model on more than one GPU
===================================================

Colab gives you one GPU, and every chapter runs there as it is. On a machine with several GPUs the
same training code runs data-parallel without changes:

1. Put the chapter's code in a script. A notebook is a single process, so it cannot be the N processes
   that data parallelism needs; ``jupyter nbconvert --to script chapter.ipynb`` turns it into
   ``chapter.py`` (delete the plotting cells if you like; only rank 0 would draw anyway).
2. Launch one process per GPU::

       torchrun --standalone --nproc_per_node=4 chapter.py

   (From a notebook cell: ``!torchrun --standalone --nproc_per_node=4 chapter.py``.) ``torchrun``
   starts the processes and gives each of them ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``.
3. That is all. :func:`t2i_lib.train.trainer.train` sees ``WORLD_SIZE > 1`` and:

   - starts the process group (``nccl`` on GPUs, ``gloo`` on the CPU) unless you already did;
   - puts process ``LOCAL_RANK`` on GPU ``cuda:LOCAL_RANK``;
   - wraps the model in ``DistributedDataParallel``, so that after every backward pass the gradients
     are averaged across processes and all copies of the model take the same step. (Calling
     ``model.loss`` directly would bypass DDP's hooks and skip that averaging; the trainer calls it
     through the small :class:`LossWrapper` module instead.)
   - splits each *global* batch between processes: the same seeded permutation of the dataset on every
     process, and process ``r`` takes every ``world_size``-th example of each global batch starting at
     ``r``, as ``torch.utils.data.DistributedSampler`` does;
   - lets only rank 0 print, draw the progress bar and live plot, evaluate, and write checkpoints.

Things to know:

- ``TrainConfig.batch_size`` is *per process*. One update sees
  ``batch_size x grad_accum x world_size`` examples. To keep a recipe's effective batch when you add
  GPUs, divide ``batch_size`` (or ``grad_accum``) by the number of processes; if you keep it and the
  effective batch grows, the learning rate usually has to grow too.
- A checkpoint written by N processes resumes with any number of processes; the data position is
  counted in global batches, so with the same *global* batch size it continues at the same example.
- BatchNorm keeps per-process statistics (each process normalises its own slice of the batch). Use
  ``torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)`` before training if that matters.
- If some parameters receive no gradient in a step (a branch that is not always used), DDP stops with
  an error; set ``TrainConfig(find_unused_parameters=True)``.
- Downloads: :func:`t2i_lib.storage.download.fetch` lets local rank 0 download while the other processes wait,
  so every process can build its dataset the same way.
- To try it without GPUs: ``torchrun --standalone --nproc_per_node=2 script.py`` on a CPU runs two
  processes that talk through ``gloo`` (that is how the tests check this module).

Defined for Chapter 1's note on running beyond Colab; no chapter needs it.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from t2i_lib import env

__all__ = ["DistContext", "setup", "is_distributed", "rank", "world_size", "is_main_process",
           "LossWrapper", "wrap_model", "all_reduce_mean", "gather_objects", "barrier"]


def _env_world_size() -> int:
    return env.world_size()


def is_distributed() -> bool:
    """True inside a multi-process run (a process group exists, or ``torchrun`` set WORLD_SIZE > 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    return _env_world_size() > 1


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return env.rank()


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return _env_world_size()


def is_main_process() -> bool:
    """Rank 0 (or a plain single-process run): the one process that prints, plots and writes files."""
    return rank() == 0


@dataclass
class DistContext:
    rank: int  # this process's index, 0 .. world_size-1
    world_size: int  # number of processes
    local_rank: int  # index on this machine (picks the GPU)
    device: torch.device  # where this process computes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _destroy_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def setup(device: torch.device) -> DistContext:
    """Start (if needed) the process group and pick this process's device.

    Single-process runs get ``DistContext(0, 1, 0, device)`` and nothing else happens. Under ``torchrun``
    the group is created from the environment (``env://``) with ``nccl`` for CUDA and ``gloo`` for the CPU,
    and destroyed when the interpreter exits.
    """
    if not is_distributed():
        return DistContext(0, 1, 0, device)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support.")
    local_rank = env.local_rank()
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible: start at "
                f"most one process per GPU (torchrun --nproc_per_node={torch.cuda.device_count()}).")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy_group)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device)


class LossWrapper(nn.Module):
    """Makes ``model.loss(batch)`` the ``forward`` of a module, so DDP can wrap it.

    DDP only averages gradients for computations that go through its own ``forward``; a call to
    ``ddp.module.loss(...)`` would train each process on its own gradients and the copies would drift
    apart. The wrapped model is stored as ``.model``; its parameters are not copied.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


def wrap_model(model: nn.Module, ctx: DistContext, find_unused_parameters: bool = False) -> nn.Module:
    """DDP around :class:`LossWrapper` (call it with a batch to get ``(loss, metrics)``).

    DDP copies rank 0's parameters and buffers to every process when it is built, so the copies start
    identical even if each process initialised its model with a different seed.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DDP(LossWrapper(model), device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Average ``t`` over processes (in place, and returned). A no-op in a single process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t


def gather_objects(obj) -> list:
    """Every process's ``obj``, in rank order, on every process. ``[obj]`` in a single process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
