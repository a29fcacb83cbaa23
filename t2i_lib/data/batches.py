"""Batches and datasets as tensors.

- ``images_of``: the image tensor of any batch the datasets here yield (a tensor, a tuple, a dict)
- ``stack_dataset``: a whole (image, label) dataset as two tensors
- ``stack_items``: the first N items' images (or another field) of any dataset as one tensor (Chapter 4)
- ``batched``: a function applied to a large tensor in slices, without gradients, gathered on the CPU (Chapter 4)
- ``RGBDataset``: a grey (1-channel) dataset seen as 3 channels, for ImageNet trunks (Chapter 4)

Defined in Chapter 1.
"""

from __future__ import annotations

import torch


def stack_dataset(dataset, max_items: int | None = None, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """All (image, label) items of a dataset as two tensors: images (N, C, H, W) and labels (N,).

    ``max_items`` keeps the first N items (the datasets' orders are fixed, so this is reproducible).

    Defined in Chapter 1.
    """
    n = len(dataset) if max_items is None else min(len(dataset), max_items)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=batch_size)
    xs, ys = zip(*[(x, torch.as_tensor(y)) for x, y in loader])
    return torch.cat(xs), torch.cat(ys)


def images_of(batch):
    """The image tensor of a DataLoader batch: a tensor, the first item of a tuple/list, or batch['image'].

    Every dataset here yields one of these three forms, so models and metrics accept all of them.
    """
    import torch

    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict):
        if "image" not in batch:
            raise ValueError(f"a dict batch needs an 'image' key; received keys {sorted(batch)}")
        return batch["image"]
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise TypeError(f"cannot find images in a batch of type {type(batch).__name__}; yield tensors (B, C, H, W), "
                    f"(images, labels) tuples or dicts with an 'image' key")


def stack_items(dataset, n: int | None = None, key: str = "image", *, start: int = 0) -> torch.Tensor:
    """The ``key`` field of items ``start .. start + n - 1`` of a dataset, stacked into one tensor (n, ...).

    Works on every dataset here: a dict item gives ``item[key]``, an ``(image, label)`` tuple its first
    entry, a bare tensor itself. ``n=None`` (or an ``n`` past the end) takes every item up to the end.

    Defined in Chapter 4.
    """
    stop = len(dataset) if n is None else min(len(dataset), start + n)
    if stop <= start:
        raise ValueError(f"stack_items: no items in [{start}, {stop}) of a dataset of {len(dataset)}")

    def field(item):
        if isinstance(item, dict):
            if key not in item:
                raise KeyError(f"stack_items: the items have no {key!r}; keys: {sorted(item)}")
            return torch.as_tensor(item[key])
        return images_of(item)

    return torch.stack([field(dataset[i]) for i in range(start, stop)])


@torch.no_grad()
def batched(fn, x: torch.Tensor, batch_size: int = 500, *, device=None) -> torch.Tensor:
    """``fn`` applied to ``x`` in slices of ``batch_size`` rows, without gradients; results concatenated on the CPU.

    ``device``: where each slice is moved before the call (the model's device); floating-point results
    are returned as float32 (an fp16 autocast output included), integer ones (tokens) as they are.

    Defined in Chapter 4.
    """
    if len(x) == 0:
        raise ValueError("batched: x is empty")
    out = []
    for i in range(0, len(x), batch_size):
        part = x[i:i + batch_size]
        y = fn(part if device is None else part.to(device)).cpu()
        out.append(y.float() if y.is_floating_point() else y)
    return torch.cat(out)


class RGBDataset(torch.utils.data.Dataset):
    """A dataset of grey (1, H, W) ``(image, label)`` items seen as colour ones: (3, H, W), the channel repeated.

    MNIST is grey; an ImageNet trunk (the report's ResNet VQ-VAE) expects three channels.

    Defined in Chapter 4.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i]
        if x.shape[0] != 1:
            raise ValueError(f"RGBDataset wraps grey images (1, H, W); item {i} has shape {tuple(x.shape)}")
        return x.expand(3, -1, -1), y
