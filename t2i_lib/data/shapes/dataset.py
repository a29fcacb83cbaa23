"""ShapesDataset: item i of a split drawn from (seed, split, i) alone."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from t2i_lib.data.shapes.captions import VOCAB, make_caption
from t2i_lib.data.shapes.rendering import Placement, check_render_size, layout_scene, render_layout
from t2i_lib.data.shapes.world import (COLOURS, DEFAULT_LENGTHS, HELDOUT_PAIRS, POSITIONS, PortableRng,
                                       RELATIONS, SHAPES, SIZES, SPLITS, SPLIT_ALIASES, Scene, ShapeObject)


@dataclass
class ShapesConfig:
    image_size: int = 32          # 32 (quick profile) or 64 (colab); see VALID_SIZES
    split: str = "train"          # train | val | test | heldout (alias test_unseen)
    length: int | None = None     # items per epoch; None -> DEFAULT_LENGTHS[split]
    seed: int = 0                 # with (split, index), fixes every item
    p_two_objects: float = 0.5    # chance a scene has two objects and a relation
    max_objects: int = 2          # 1 -> one-object scenes only (an easier warm-up set)
    captions: str = "varied"      # "varied": templates + synonyms; "full": one canonical sentence


def _sample_scene(rng: PortableRng, heldout: bool, p_two: float, max_objects: int) -> Scene:
    # Rejection sampling: draw from the whole world and keep scenes on the split's side of the
    # held-out rule. This is exactly the uniform distribution restricted to that side.
    while True:
        n = 2 if (max_objects >= 2 and rng.random() < p_two) else 1
        objs = []
        for _ in range(n):
            objs.append(ShapeObject(rng.choice(SHAPES), rng.choice(COLOURS), rng.choice(SIZES),
                                    rng.choice(POSITIONS) if n == 1 else None))
        relation = rng.choice(RELATIONS) if n == 2 else None
        unseen = any((o.shape, o.colour) in HELDOUT_PAIRS for o in objs)
        if unseen == heldout:
            return Scene(tuple(objs), relation)


class ShapesDataset(Dataset):
    """Items: dict(image=FloatTensor (3, S, S) in [0, 1], caption=str, attrs=LongTensor (9,)).

    ``attrs`` is :meth:`~t2i_lib.data.shapes.world.Scene.encode` of the scene in caption order (fields in ``ATTR_FIELDS``);
    ``dataset.scene(i)`` gives the structured record. Defined in Chapter 7.
    """

    def __init__(self, config: ShapesConfig | None = None, **kw):
        cfg = replace(config, **kw) if config is not None else ShapesConfig(**kw)
        cfg.split = SPLIT_ALIASES.get(cfg.split, cfg.split)
        if cfg.split not in SPLITS:
            raise ValueError(f"unknown Shapes split {cfg.split!r}; splits: {SPLITS} "
                             f"(aliases: {SPLIT_ALIASES})")
        check_render_size(cfg.image_size)
        if cfg.captions not in ("varied", "full"):
            raise ValueError(f"captions must be 'varied' or 'full', got {cfg.captions!r}")
        if cfg.max_objects not in (1, 2):
            raise ValueError(f"max_objects must be 1 or 2, got {cfg.max_objects}")
        if not 0.0 <= cfg.p_two_objects <= 1.0:
            raise ValueError(f"p_two_objects must be in [0, 1], got {cfg.p_two_objects}")
        if cfg.length is None:
            cfg.length = DEFAULT_LENGTHS[cfg.split]
        if cfg.length < 1:
            raise ValueError(f"length must be positive, got {cfg.length}")
        self.config = cfg
        self.vocab = VOCAB

    def __len__(self) -> int:
        return self.config.length

    def _check_index(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a Shapes split of length {len(self)}")
        return i % len(self)

    def scene(self, i: int) -> Scene:
        c = self.config
        i = self._check_index(i)
        return _sample_scene(PortableRng("scene", c.seed, c.split, i), c.split == "heldout",
                             c.p_two_objects, c.max_objects)

    def layout(self, i: int) -> tuple[Placement, ...]:
        c = self.config
        i = self._check_index(i)
        return layout_scene(self.scene(i), c.image_size, PortableRng("layout", c.seed, c.split, i))

    def caption(self, i: int) -> str:
        c = self.config
        i = self._check_index(i)
        return make_caption(self.scene(i), PortableRng("caption", c.seed, c.split, i), c.captions)

    def image_uint8(self, i: int) -> np.ndarray:
        """The rendered image, uint8 (S, S, 3)."""
        return render_layout(self.layout(i), self.config.image_size)

    def __getitem__(self, i: int) -> dict:
        c = self.config
        i = self._check_index(i)
        scene = self.scene(i)
        layout = layout_scene(scene, c.image_size, PortableRng("layout", c.seed, c.split, i))
        img = render_layout(layout, c.image_size)
        caption = make_caption(scene, PortableRng("caption", c.seed, c.split, i), c.captions)
        return dict(image=torch.from_numpy(img).permute(2, 0, 1).float().div_(255),  # (3, S, S)
                    caption=caption,
                    attrs=torch.tensor(scene.encode(), dtype=torch.long))            # (9,)

    def __repr__(self) -> str:
        c = self.config
        return (f"ShapesDataset(split={c.split!r}, n={c.length}, image_size={c.image_size}, "
                f"seed={c.seed}, captions={c.captions!r})")
