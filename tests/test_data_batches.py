"""t2i_lib.data.batches: stacking dataset items, batched inference, the grey-to-RGB view (Chapter 4)."""

from __future__ import annotations

import pytest
import torch

from t2i_lib.data.batches import RGBDataset, batched, stack_items


class _Dicts(torch.utils.data.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"image": torch.full((3, 2, 2), float(i)), "caption": f"c{i}", "attrs": torch.tensor([i, 2 * i])}


def test_stack_items_takes_dict_tuple_and_tensor_items():
    x = stack_items(_Dicts(), 3)
    assert x.shape == (3, 3, 2, 2) and torch.equal(x[:, 0, 0, 0], torch.tensor([0.0, 1.0, 2.0]))
    assert torch.equal(stack_items(_Dicts(), 2, key="attrs"), torch.tensor([[0, 0], [1, 2]]))
    pairs = [(torch.full((1, 2, 2), float(i)), i) for i in range(4)]
    assert torch.equal(stack_items(pairs, None, start=1)[:, 0, 0, 0], torch.tensor([1.0, 2.0, 3.0]))
    assert stack_items([torch.zeros(2)] * 3, 10).shape == (3, 2)  # n past the end: every item
    with pytest.raises(KeyError, match="caption"):
        stack_items(_Dicts(), 2, key="label")
    with pytest.raises(ValueError, match="no items"):
        stack_items(_Dicts(), 0)


def test_batched_equals_one_call_and_keeps_integer_outputs():
    x = torch.randn(11, 4)
    w = torch.randn(4, 3, requires_grad=True)
    calls = []

    def fn(part):
        calls.append(len(part))
        return part @ w

    y = batched(fn, x, batch_size=4)
    assert calls == [4, 4, 3] and not y.requires_grad
    assert torch.allclose(y, x @ w.detach())
    assert batched(lambda p: p.argmax(1), x, 5).dtype == torch.int64
    assert batched(lambda p: p.half(), x, 5).dtype == torch.float32  # fp16 results come back as float32
    with pytest.raises(ValueError, match="empty"):
        batched(fn, x[:0])


def test_rgb_dataset_repeats_the_grey_channel():
    ds = RGBDataset([(torch.rand(1, 4, 4), 7)])
    x, y = ds[0]
    assert len(ds) == 1 and y == 7 and x.shape == (3, 4, 4)
    assert torch.equal(x[0], x[2])
    with pytest.raises(ValueError, match="grey"):
        RGBDataset([(torch.rand(3, 4, 4), 0)])[0]
