"""The data order: which examples make up each batch, replayable from ``(seed, epoch)`` alone.

Exact resume rests on this. The permutation of an epoch depends only on ``(seed, epoch)``, so a position
in the run is just ``(epoch, batches consumed in that epoch)``: a resumed run rebuilds the same
permutation and continues with the very next batch. Also here: moving a batch to the device, and
:func:`rng_fork`, which lets evaluation and callbacks draw random numbers without shifting the training
run's streams.

Defined in Chapter 1.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader

from t2i_lib.storage.checkpoint import capture_rng_state, restore_rng_state

__all__ = ["EpochPlan", "batch_stream", "epoch_seed", "make_loader", "rng_fork", "to_device",
           "EPOCH_SEED_MULTIPLIER", "SEED_MODULUS"]

# An epoch's seed is seed * EPOCH_SEED_MULTIPLIER + epoch (mod SEED_MODULUS). The multiplier is a prime
# above any epoch count, so runs with neighbouring seeds never share an epoch's permutation; the modulus
# keeps the result a valid (non-negative int64) torch seed.
EPOCH_SEED_MULTIPLIER = 1_000_003
SEED_MODULUS = 2**63


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


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s permutation (and of its DataLoader workers)."""
    return (int(seed) * EPOCH_SEED_MULTIPLIER + int(epoch)) % SEED_MODULUS


class EpochPlan:
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
        g.manual_seed(epoch_seed(self.seed, epoch))
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

    def describe(self) -> dict:
        """The data setup a checkpoint records, to warn when a resumed run's differs."""
        return {"seed": self.seed, "shuffle": self.shuffle, "drop_last": self.drop_last,
                "global_batch": self.global_batch, "batches_per_epoch": self.batches_per_epoch,
                "dataset_len": self.n}


def make_loader(dataset, batches: list[list[int]], collate_fn, num_workers: int, pin: bool,
                seed: int) -> DataLoader:
    """A DataLoader that yields exactly ``batches`` (lists of indices), in order."""
    # The explicit generator matters for exact resume: without one, every new DataLoader iterator draws its
    # worker seed from torch's *global* generator, and a resumed run (which builds one more iterator than
    # the uninterrupted run did) would shift every random number after it.
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn, num_workers=num_workers,
                      pin_memory=pin, generator=g)


def batch_stream(plan: EpochPlan, dataset, collate_fn: Callable | None, num_workers: int, pin: bool,
                 epoch: int = 0, index: int = 0) -> Iterator[tuple[int, int, Any]]:
    """Batches from position ``(epoch, index)`` on, forever, as ``(epoch, batches consumed, batch)``."""
    while True:
        batches = plan.batches(epoch)[index:]
        for b in make_loader(dataset, batches, collate_fn, num_workers, pin, epoch_seed(plan.seed, epoch)):
            index += 1
            yield epoch, index, b
        epoch, index = epoch + 1, 0


@contextlib.contextmanager
def rng_fork(device: torch.device, seed: int | None = None):
    """Run a block with its own random numbers, then put every generator back as it was."""
    saved = capture_rng_state(device)
    try:
        if seed is not None:
            torch.manual_seed(seed)
        yield
    finally:
        restore_rng_state(saved, device)
