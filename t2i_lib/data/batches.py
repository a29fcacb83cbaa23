"""Batches and datasets as tensors.

- ``images_of``: the image tensor of any batch the datasets here yield (a tensor, a tuple, a dict)
- ``stack_dataset``: a whole (image, label) dataset as two tensors

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
