"""The data order: seeded per epoch, split between processes like DistributedSampler, resumable anywhere."""

import torch
from torch.utils.data import TensorDataset

from t2i_lib.train.order import (EPOCH_SEED_MULTIPLIER, SEED_MODULUS, EpochPlan, batch_stream, epoch_seed,
                                 rng_fork, to_device)


def test_epoch_seeds_are_distinct_and_valid():
    assert epoch_seed(3, 7) == 3 * EPOCH_SEED_MULTIPLIER + 7
    assert 0 <= epoch_seed(2**62, 5) < SEED_MODULUS
    seeds = {epoch_seed(s, e) for s in range(5) for e in range(1000)}
    assert len(seeds) == 5000


def test_processes_split_each_global_batch_and_together_cover_it():
    one = EpochPlan(22, 4, 1, 0, seed=1, shuffle=True, drop_last=True)
    two = [EpochPlan(22, 2, 2, r, seed=1, shuffle=True, drop_last=True) for r in range(2)]
    assert one.batches_per_epoch == two[0].batches_per_epoch == 5 and one.global_batch == 4
    for epoch in range(3):
        for whole, a, b in zip(one.batches(epoch), two[0].batches(epoch), two[1].batches(epoch)):
            assert sorted(a + b) == sorted(whole) and a == whole[0::2] and b == whole[1::2]
    assert one.permutation(0) != one.permutation(1)  # a new order every epoch
    assert one.describe() == {"seed": 1, "shuffle": True, "drop_last": True, "global_batch": 4,
                              "batches_per_epoch": 5, "dataset_len": 22}
    padded = EpochPlan(5, 2, 2, 1, seed=0, shuffle=False, drop_last=False)
    assert padded.batches(0) == [[1, 3], [0]]  # the last, incomplete batch is padded so each process gets one


def test_the_stream_resumes_at_any_position():
    data = TensorDataset(torch.arange(10))
    plan = EpochPlan(10, 3, 1, 0, seed=4, shuffle=True, drop_last=True)
    full = batch_stream(plan, data, None, 0, False)
    first = [next(full) for _ in range(8)]  # 3 batches an epoch: this crosses two epoch boundaries
    later = batch_stream(plan, data, None, 0, False, *first[3][:2])  # from (epoch 1, 1 batch consumed)
    for want, got in zip(first[4:], later):
        assert want[:2] == got[:2] and torch.equal(want[2][0], got[2][0])


def test_rng_fork_puts_the_generators_back():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with rng_fork(torch.device("cpu"), seed=9):
        torch.rand(100)
    assert torch.equal(torch.rand(3), expected)
    assert to_device({"a": (torch.ones(1), "s")}, torch.device("cpu"))["a"][1] == "s"
