"""Drawing a scene: fixed binary sprites, the layout rules, the renderer."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from t2i_lib.data.shapes.world import (BACKGROUND, COLOURS, PALETTE, POSITIONS, PortableRng, RELATIONS,
                                       SHAPES, Scene, ShapeObject, VALID_SIZES)


def check_render_size(image_size) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or int(image_size) not in VALID_SIZES:
        raise ValueError(f"Shapes renders exactly at image sizes {VALID_SIZES} only (32 for the quick "
                         f"profile, 64 for colab); got image_size={image_size!r}.")
    return int(image_size)


def sprite_diameter(size: str, image_size: int) -> int:
    """Side of an object's bounding box in pixels: odd, so every shape has a centre pixel column.
    Small ~22% of the image, large ~40%: 7/13 px at 32, 15/25 at 64, 29/51 at 128."""
    frac = {"small": 0.22, "large": 0.40}[size]
    return 2 * int(round((frac * image_size - 1) / 2)) + 1


@lru_cache(maxsize=None)
def sprite(shape: str, size: str, image_size: int) -> np.ndarray:
    """The (d, d) bool mask of one object. Its bounding box is exactly d x d (tested)."""
    d = sprite_diameter(size, image_size)
    c = (np.arange(d) + 0.5)                 # pixel-centre coordinates in [0, d]
    y, x = np.meshgrid(c, c, indexing="ij")  # (d, d) each
    h = d / 2
    if shape == "square":
        m = np.ones((d, d), bool)
    elif shape == "circle":
        m = (x - h) ** 2 + (y - h) ** 2 <= h * h
    elif shape == "triangle":   # apex up, base along the bottom row
        m = np.abs(x - h) <= y / 2
    elif shape == "diamond":
        m = np.abs(x - h) + np.abs(y - h) <= h
    elif shape == "cross":      # a plus sign, arms a third of the width thick
        m = (np.abs(x - h) <= d / 6) | (np.abs(y - h) <= d / 6)
    else:
        raise ValueError(f"unknown shape {shape!r}; shapes: {SHAPES}")
    m.setflags(write=False)
    return m


@dataclass(frozen=True)
class Placement:
    obj: ShapeObject
    top: int   # row of the sprite's top-left pixel
    left: int  # column of the sprite's top-left pixel

    def centre(self, image_size: int) -> tuple[float, float]:
        d = sprite_diameter(self.obj.size, image_size)
        return self.top + d / 2, self.left + d / 2  # (row, column), continuous


def cell_of(coord: float, image_size: int) -> int:
    """Which third (0, 1, 2) of the image a centre coordinate falls in."""
    return min(2, max(0, int(3 * coord // image_size)))


@lru_cache(maxsize=None)
def _cell_offsets(image_size: int, d: int) -> tuple[tuple[int, ...], ...]:
    """For each third of the image, the sprite offsets whose centre lies inside it, at least
    image_size/32 (1 px at 32) away from the cell borders: the scorer then never sits on a border."""
    S = image_size
    cells = [[], [], []]
    for o in range(0, S - d + 1):
        # centre c = o + d/2; in units of 1/(32*6) px to stay in integers:
        c6 = 6 * o + 3 * d                      # 6 * centre
        for k in range(3):
            lo, hi = 2 * k * S, 2 * (k + 1) * S  # 6 * cell borders
            if 32 * lo + 3 * S <= 32 * c6 <= 32 * hi - 3 * S:
                cells[k].append(o)
    if not all(cells):
        raise ValueError(f"no room to place a {d}px object in every grid cell at {S}px")
    return tuple(tuple(c) for c in cells)


def _place_single(obj: ShapeObject, S: int, rng: PortableRng) -> tuple[Placement, ...]:
    d = sprite_diameter(obj.size, S)
    row, col = divmod(POSITIONS.index(obj.position), 3)
    offs = _cell_offsets(S, d)
    return (Placement(obj, rng.choice(offs[row]), rng.choice(offs[col])),)


def relation_margin(image_size: int) -> float:
    """How much the dominant axis must win by: for "A left of B", ``dx >= |dy| + this`` (2 px at 32)."""
    return image_size / 16


def _gap(image_size: int) -> int:
    """Empty pixels kept between two objects' bounding boxes (2 px at 32): they never touch."""
    return max(2, image_size // 16)


def _place_pair(a: ShapeObject, b: ShapeObject, relation: str, S: int, rng: PortableRng,
                max_tries: int = 100_000) -> tuple[Placement, ...]:
    da, db = sprite_diameter(a.size, S), sprite_diameter(b.size, S)
    g, m = _gap(S), relation_margin(S)
    for _ in range(max_tries):
        ta, la = rng.randint(S - da + 1), rng.randint(S - da + 1)
        tb, lb = rng.randint(S - db + 1), rng.randint(S - db + 1)
        apart = (lb >= la + da + g or la >= lb + db + g or tb >= ta + da + g or ta >= tb + db + g)
        if not apart:
            continue
        dy = (tb + db / 2) - (ta + da / 2)   # b's centre minus a's, rows grow downwards
        dx = (lb + db / 2) - (la + da / 2)
        ok = {"left of": dx >= abs(dy) + m, "right of": -dx >= abs(dy) + m,
              "above": dy >= abs(dx) + m, "below": -dy >= abs(dx) + m}[relation]
        if ok:
            return (Placement(a, ta, la), Placement(b, tb, lb))
    raise RuntimeError(f"could not place {a} {relation} {b} at {S}px")  # cannot happen at VALID_SIZES


def layout_scene(scene: Scene, image_size: int, rng: PortableRng | int = 0) -> tuple[Placement, ...]:
    """Pixel placements for a fully specified scene. ``rng`` may be an int seed."""
    S = check_render_size(image_size)
    if isinstance(rng, (int, np.integer)):
        rng = PortableRng("layout", int(rng), scene)
    for o in scene.objects:
        if None in (o.shape, o.colour, o.size):
            raise ValueError(f"cannot draw {o}: shape, colour and size must all be given")
    if len(scene.objects) == 1:
        if scene.objects[0].position is None:
            raise ValueError("a one-object scene needs a position to be drawn")
        return _place_single(scene.objects[0], S, rng)
    if len(scene.objects) == 2:
        if scene.relation not in RELATIONS:
            raise ValueError(f"a two-object scene needs a relation from {RELATIONS}")
        return _place_pair(scene.objects[0], scene.objects[1], scene.relation, S, rng)
    raise ValueError(f"scenes hold 1 or 2 objects, got {len(scene.objects)}")


def render_layout(layout: tuple[Placement, ...], image_size: int) -> np.ndarray:
    """Draw placements on the background. Returns uint8 (S, S, 3)."""
    S = check_render_size(image_size)
    img = np.empty((S, S, 3), np.uint8)
    img[:] = BACKGROUND
    for p in layout:
        m = sprite(p.obj.shape, p.obj.size, S)
        d = m.shape[0]
        img[p.top:p.top + d, p.left:p.left + d][m] = PALETTE[COLOURS.index(p.obj.colour)]
    return img


def render(scene: Scene, image_size: int = 32, seed: int = 0) -> torch.Tensor:
    """Draw a fully specified scene: FloatTensor (3, S, S) in [0, 1]. Defined in Chapter 7."""
    img = render_layout(layout_scene(scene, image_size, seed), image_size)
    return torch.from_numpy(img).permute(2, 0, 1).float().div_(255)  # (3, S, S)
