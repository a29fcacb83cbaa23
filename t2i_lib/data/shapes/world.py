"""Shapes: a small, fully known world of captioned images, drawn on demand.

Each image shows one or two coloured objects on a black background, and its caption says what is
there: "a small red circle in the top left", "a blue square above a green triangle". Nothing is
downloaded; item ``i`` of a split is drawn from ``(seed, split, i)`` alone, so it is the same picture
with the same caption on every machine and every call.

Why a synthetic set at all: on real captioned photos (COCO) nobody can say whether a generated
image "matches" its caption. Here we can. Every image is drawn without anti-aliasing, from a six-colour
palette, with objects that never touch, so :func:`~t2i_lib.data.shapes.scoring.score` reads the attributes back from the pixels
exactly, and :func:`~t2i_lib.data.shapes.scoring.matches` tells whether a generated picture shows what its caption asked for.
That turns "does the text-to-image model work?" into a number.

The world
---------
- shapes   : circle, square, triangle, diamond, cross
- colours  : red, green, blue, yellow, purple, cyan (saturated, far apart in RGB)
- sizes    : small, large
- position : for a single object, the cell of a 3x3 grid its centre falls in ("top left" ... "bottom right")
- relation : for two objects, the first is "left of", "right of", "above" or "below" the second

Splits
------
- ``train``, ``val``, ``test``: the same distribution, independent draws. There are about 15,000
  distinct scenes before the pixel jitter, so a val image occasionally equals a train image. Five
  (shape, colour) pairs never occur in these splits, in either object of a scene.
- ``heldout`` (alias ``test_unseen``): every scene contains at least one held-out pair. The held-out
  pairs (``HELDOUT_PAIRS``): blue circle, yellow square, purple triangle, red diamond, green cross.
  Every shape and every colour still appears in training; only these pairings do not. A model that
  memorised the training combinations fails here; one that composes "blue" with "circle" should not.

Defined in Chapter 4 (the text-to-image chapters 7-9 train and judge their models on it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


SHAPES = ("circle", "square", "triangle", "diamond", "cross")


COLOURS = ("red", "green", "blue", "yellow", "purple", "cyan")


SIZES = ("small", "large")


# A 3x3 grid, row by row; index = 3 * row + column.
POSITIONS = ("top left", "top", "top right",
             "left", "centre", "right",
             "bottom left", "bottom", "bottom right")


RELATIONS = ("left of", "right of", "above", "below")


INVERSE_RELATION = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


# uint8 RGB. Chosen so that every pair (background included) is at least ~0.5 apart in [0, 1] RGB
# space: a pixel is classified to the nearest colour, so this is the noise margin the scorer has.
PALETTE = np.array([
    (230, 30, 30),    # red
    (30, 190, 50),    # green
    (40, 80, 240),    # blue
    (245, 215, 25),   # yellow
    (170, 40, 220),   # purple
    (20, 210, 220),   # cyan
], dtype=np.uint8)


BACKGROUND = np.array((0, 0, 0), dtype=np.uint8)


# (shape, colour) pairs that never appear in train/val/test, only in the held-out split.
# One per shape, and cyan keeps all its shapes, so every word is still seen in training.
HELDOUT_PAIRS = frozenset({
    ("circle", "blue"),
    ("square", "yellow"),
    ("triangle", "purple"),
    ("diamond", "red"),
    ("cross", "green"),
})


SPLITS = ("train", "val", "test", "heldout")


SPLIT_ALIASES = {"test_unseen": "heldout", "validation": "val"}


DEFAULT_LENGTHS = {"train": 20_000, "val": 1_000, "test": 1_000, "heldout": 1_000}


# Image sizes the renderer draws exactly (every layout rule below has room at these sizes and the
# scorer's exactness is tested at each). Quick profile: 32, colab profile: 64.
VALID_SIZES = (32, 64, 128)


# The compact integer encoding of a scene (``Scene.encode``): one LongTensor of this many entries,
# -1 where a field does not apply (e.g. the second object of a one-object scene).
ATTR_FIELDS = ("n_objects", "shape0", "colour0", "size0", "position0",
               "shape1", "colour1", "size1", "relation")


@dataclass(frozen=True)
class ShapeObject:
    shape: str | None
    colour: str | None
    size: str | None = None
    position: str | None = None  # grid cell; only one-object scenes give it

    def agrees_with(self, other: "ShapeObject") -> bool:
        """True when every field ``other`` specifies (not None) equals ours."""
        return all(b is None or a == b for a, b in zip(
            (self.shape, self.colour, self.size, self.position),
            (other.shape, other.colour, other.size, other.position)))


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeObject, ...]
    relation: str | None = None  # objects[0] <relation> objects[1]

    def canonical(self) -> "Scene":
        """The same scene stated one fixed way: "A right of B" becomes "B left of A", "A below B"
        becomes "B above A". The scorer cannot know which object a caption names first, so it
        answers in this form; compare canonical forms."""
        if len(self.objects) == 2 and self.relation in ("right of", "below"):
            a, b = self.objects
            return Scene((b, a), INVERSE_RELATION[self.relation])
        return self

    def encode(self) -> list[int]:
        """The scene as ``len(ATTR_FIELDS)`` integers (-1 = not applicable / not said)."""
        def idx(table, value):
            return -1 if value is None else table.index(value)
        codes = [len(self.objects)]
        for k in range(2):
            if k < len(self.objects):
                o = self.objects[k]
                codes += [idx(SHAPES, o.shape), idx(COLOURS, o.colour), idx(SIZES, o.size)]
                if k == 0:
                    codes.append(idx(POSITIONS, o.position))
            else:
                codes += [-1, -1, -1] + ([-1] if k == 0 else [])
        codes.append(idx(RELATIONS, self.relation))
        return codes

    @staticmethod
    def decode(codes) -> "Scene":
        """Inverse of :meth:`encode`; accepts a list, array or LongTensor of ``len(ATTR_FIELDS)``."""
        c = [int(v) for v in (codes.tolist() if hasattr(codes, "tolist") else codes)]
        if len(c) != len(ATTR_FIELDS):
            raise ValueError(f"an attribute encoding has {len(ATTR_FIELDS)} entries {ATTR_FIELDS}, "
                             f"got {len(c)}")

        def val(table, i):
            return None if i < 0 else table[i]
        n = c[0]
        if n not in (1, 2):
            raise ValueError(f"n_objects must be 1 or 2, got {n}")
        objs = [ShapeObject(val(SHAPES, c[1]), val(COLOURS, c[2]), val(SIZES, c[3]), val(POSITIONS, c[4]))]
        if n == 2:
            objs.append(ShapeObject(val(SHAPES, c[5]), val(COLOURS, c[6]), val(SIZES, c[7])))
        return Scene(tuple(objs), val(RELATIONS, c[8]))


def scene_agrees(pred: Scene, target: Scene) -> bool:
    """Does ``pred`` (a fully known scene) satisfy ``target`` (fields may be None = anything goes)?

    Object count must agree; for two objects either order is accepted, with the relation turned
    round accordingly ("A left of B" is "B right of A")."""
    if len(pred.objects) != len(target.objects):
        return False
    if len(pred.objects) == 1:
        return pred.objects[0].agrees_with(target.objects[0])
    a, b = pred.objects
    x, y = target.objects
    rel = target.relation
    forward = a.agrees_with(x) and b.agrees_with(y) and (rel is None or pred.relation == rel)
    swapped = (b.agrees_with(x) and a.agrees_with(y)
               and (rel is None or (pred.relation is not None and INVERSE_RELATION[pred.relation] == rel)))
    return forward or swapped


class PortableRng:
    MASK = (1 << 64) - 1

    def __init__(self, *key):
        self.state = int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little")

    def next64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)

    def randint(self, n: int) -> int:
        """Uniform in [0, n). (The modulo bias is below 2**-50 for the tiny n used here.)"""
        return self.next64() % n

    def random(self) -> float:
        return (self.next64() >> 11) / float(1 << 53)

    def choice(self, seq):
        return seq[self.randint(len(seq))]

