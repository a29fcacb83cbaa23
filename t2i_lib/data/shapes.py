"""Shapes: a small, fully known world of captioned images, drawn on demand.

Each image shows one or two coloured objects on a black background, and its caption says what is
there: "a small red circle in the top left", "a blue square above a green triangle". Nothing is
downloaded; item ``i`` of a split is drawn from ``(seed, split, i)`` alone, so it is the same picture
with the same caption on every machine and every call.

Why a synthetic set at all: on real captioned photos (COCO) nobody can say whether a generated
image "matches" its caption. Here we can. Every image is drawn without anti-aliasing, from a six-colour
palette, with objects that never touch, so :func:`score` reads the attributes back from the pixels
exactly, and :func:`matches` tells whether a generated picture shows what its caption asked for.
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

Defined in Chapter 7 (the text-to-image chapters 7-9 train and judge their models on it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

# ----------------------------------------------------------------------------------------------------
# The world's vocabulary of attributes. Order matters: the integer encoding uses these indices.

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


# ----------------------------------------------------------------------------------------------------
# Scenes: what an image shows (or what a caption asks for; then a field may be None = "not said").

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

    def describe(self) -> str:
        """The full canonical caption (every attribute said)."""
        return _caption_from_template(self, "full", _FirstChoice())[0]


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


# ----------------------------------------------------------------------------------------------------
# A portable random stream. NumPy promises stream stability only for its legacy RandomState, and
# Python's `random` could change too; a hash-seeded SplitMix64 is a few lines and is the same on every
# platform and version, which is what "item i is the same everywhere" needs.

class _Rng:
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


class _FirstChoice:
    """Stands in for an _Rng where the canonical (first) wording is wanted."""

    def choice(self, seq):
        return seq[0]


# ----------------------------------------------------------------------------------------------------
# Sprites: every (shape, size) is one fixed binary mask at a given image size. Pixels are in or out by
# testing the pixel centre against the exact geometry, with no anti-aliasing, so a sprite looks
# identical wherever it is placed and the scorer can recognise it by comparison.

def _check_size(image_size) -> int:
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


# ----------------------------------------------------------------------------------------------------
# Layout: where, in pixels, each object of a scene goes.

@dataclass(frozen=True)
class Placement:
    obj: ShapeObject
    top: int   # row of the sprite's top-left pixel
    left: int  # column of the sprite's top-left pixel

    def centre(self, image_size: int) -> tuple[float, float]:
        d = sprite_diameter(self.obj.size, image_size)
        return self.top + d / 2, self.left + d / 2  # (row, column), continuous


def _cell_of(coord: float, image_size: int) -> int:
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


def _place_single(obj: ShapeObject, S: int, rng: _Rng) -> tuple[Placement, ...]:
    d = sprite_diameter(obj.size, S)
    row, col = divmod(POSITIONS.index(obj.position), 3)
    offs = _cell_offsets(S, d)
    return (Placement(obj, rng.choice(offs[row]), rng.choice(offs[col])),)


def relation_margin(image_size: int) -> float:
    """How much the dominant axis must win by: for "A left of B", dx >= |dy| + this (2 px at 32)."""
    return image_size / 16


def _gap(image_size: int) -> int:
    """Empty pixels kept between two objects' bounding boxes (2 px at 32): they never touch."""
    return max(2, image_size // 16)


def _place_pair(a: ShapeObject, b: ShapeObject, relation: str, S: int, rng: _Rng,
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


def layout_scene(scene: Scene, image_size: int, rng: _Rng | int = 0) -> tuple[Placement, ...]:
    """Pixel placements for a fully specified scene. ``rng`` may be an int seed."""
    S = _check_size(image_size)
    if isinstance(rng, (int, np.integer)):
        rng = _Rng("layout", int(rng), scene)
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
    S = _check_size(image_size)
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


# ----------------------------------------------------------------------------------------------------
# Captions: several templates and synonyms, picked per item by its random stream.

_DETERMINERS = ("a", "one", "a single")
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
_SHAPE_WORDS = {"circle": ("circle", "disc"), "square": ("square", "box"), "triangle": ("triangle",),
                "diamond": ("diamond", "rhombus"), "cross": ("cross", "plus")}
_POSITION_PHRASES = {
    "top left": ("in the top left", "in the top left corner", "at the upper left"),
    "top": ("at the top", "near the top", "at the top centre"),
    "top right": ("in the top right", "in the top right corner", "at the upper right"),
    "left": ("on the left", "at the left", "on the left side"),
    "centre": ("in the centre", "in the middle", "in the center"),
    "right": ("on the right", "at the right", "on the right side"),
    "bottom left": ("in the bottom left", "in the bottom left corner", "at the lower left"),
    "bottom": ("at the bottom", "near the bottom", "at the bottom centre"),
    "bottom right": ("in the bottom right", "in the bottom right corner", "at the lower right"),
}
# "A <phrase> B"
_RELATION_PHRASES = {"left of": ("left of", "to the left of"), "right of": ("right of", "to the right of"),
                     "above": ("above", "over"), "below": ("below", "under", "beneath")}
# "A with B <phrase>": the phrase says where B is relative to A.
_RELATION_ITS = {"left of": ("to its left",), "right of": ("to its right",),
                 "above": ("above it",), "below": ("below it", "under it")}

# name -> (objects, format, which attributes the caption states). Attributes not stated are None
# in what the parser returns; the caption test checks parse(caption) against exactly this.
CAPTION_TEMPLATES = {
    "colour_shape":          (1, "{det} {colour0} {shape0}", ("shape", "colour")),
    "size_colour_shape":     (1, "{det} {size0} {colour0} {shape0}", ("shape", "colour", "size")),
    "colour_shape_pos":      (1, "{det} {colour0} {shape0} {pos}", ("shape", "colour", "position")),
    "size_colour_shape_pos": (1, "{det} {size0} {colour0} {shape0} {pos}", ("shape", "colour", "size", "position")),
    "there_is":              (1, "there is {det} {size0} {colour0} {shape0} {pos}", ("shape", "colour", "size", "position")),
    "pos_first":             (1, "{pos} there is {det} {size0} {colour0} {shape0}", ("shape", "colour", "size", "position")),
    "pair":                  (2, "a {colour0} {shape0} {rel} a {colour1} {shape1}", ("shape", "colour")),
    "pair_sized":            (2, "a {size0} {colour0} {shape0} {rel} a {size1} {colour1} {shape1}", ("shape", "colour", "size")),
    "pair_there_is":         (2, "there is a {size0} {colour0} {shape0} {rel} a {size1} {colour1} {shape1}", ("shape", "colour", "size")),
    "pair_with":             (2, "a {size0} {colour0} {shape0} with a {size1} {colour1} {shape1} {rel_its}", ("shape", "colour", "size")),
    "pair_with_short":       (2, "a {colour0} {shape0} with a {colour1} {shape1} {rel_its}", ("shape", "colour")),
}
# The canonical one-sentence forms used by captions="full" (and Scene.describe): every attribute said.
_FULL_TEMPLATE = {1: "size_colour_shape_pos", 2: "pair_sized"}


def _caption_from_template(scene: Scene, name: str, rng) -> tuple[str, Scene]:
    """Fill a template (``name`` or "full") with ``rng``'s word choices.
    Returns (caption, the scene as the caption states it: unstated fields None)."""
    if name == "full":
        name = _FULL_TEMPLATE[len(scene.objects)]
    n, fmt, says = CAPTION_TEMPLATES[name]
    if n != len(scene.objects):
        raise ValueError(f"template {name!r} describes {n} object(s), the scene has {len(scene.objects)}")
    words = {"det": rng.choice(_DETERMINERS)}
    for k, o in enumerate(scene.objects):
        words[f"shape{k}"] = rng.choice(_SHAPE_WORDS[o.shape])
        words[f"colour{k}"] = o.colour
        words[f"size{k}"] = rng.choice(_SIZE_WORDS[o.size])
    if n == 1:
        words["pos"] = rng.choice(_POSITION_PHRASES[scene.objects[0].position])
    else:
        words["rel"] = rng.choice(_RELATION_PHRASES[scene.relation])
        # "A with B to its left" says where B is: B <inverse> A.
        words["rel_its"] = rng.choice(_RELATION_ITS[INVERSE_RELATION[scene.relation]])
    stated = Scene(
        tuple(ShapeObject(o.shape if "shape" in says else None, o.colour if "colour" in says else None,
                          o.size if "size" in says else None,
                          o.position if "position" in says else None) for o in scene.objects),
        scene.relation if n == 2 else None)
    return fmt.format(**words), stated


def make_caption(scene: Scene, rng: _Rng | int = 0, style: str = "varied") -> str:
    """A caption for a scene: ``style="varied"`` picks a template and synonyms from ``rng``;
    ``"full"`` gives the one canonical sentence that states every attribute."""
    if isinstance(rng, (int, np.integer)):
        rng = _Rng("caption", int(rng), scene)
    if style == "full":
        return _caption_from_template(scene, "full", _FirstChoice())[0]
    if style != "varied":
        raise ValueError(f"caption style must be 'varied' or 'full', got {style!r}")
    names = [k for k, v in CAPTION_TEMPLATES.items() if v[0] == len(scene.objects)]
    return _caption_from_template(scene, rng.choice(names), rng)[0]


def _vocabulary() -> tuple[str, ...]:
    words = set(COLOURS)
    for table in (_SIZE_WORDS, _SHAPE_WORDS, _POSITION_PHRASES, _RELATION_PHRASES, _RELATION_ITS):
        for phrases in table.values():
            for p in phrases:
                words.update(p.split())
    for d in _DETERMINERS:
        words.update(d.split())
    for _, fmt, _ in CAPTION_TEMPLATES.values():
        words.update(w for w in fmt.split() if "{" not in w)
    return tuple(sorted(words))


# Every word a caption can contain (lower case, no punctuation): for the word-level tokenisers.
VOCAB = _vocabulary()


# ----------------------------------------------------------------------------------------------------
# Caption parser: text -> the scene it asks for (unsaid attributes None).

_WORD_TO_SHAPE = {w: s for s, ws in _SHAPE_WORDS.items() for w in ws}
_WORD_TO_SIZE = {w: s for s, ws in _SIZE_WORDS.items() for w in ws}
_COLOUR_SET = set(COLOURS)
_DIRECT_REL = {"left": "left of", "right": "right of", "above": "above", "over": "above",
               "below": "below", "under": "below", "beneath": "below"}


def parse_caption(caption: str) -> Scene:
    """Read a caption back into the scene it describes. Defined in Chapter 7.

    Attributes are found per object: the size and colour words between the previous shape word and
    this object's shape word. Position words ("top", "left", "middle", ...) count in one-object
    captions, relation words in two-object ones; "A with B to its left" is turned round into
    "A right of B". Raises ValueError when the caption names no shape, more than two, or has two
    objects and no single relation.
    """
    tokens = re.sub(r"[^a-z]+", " ", caption.lower()).split()
    shape_at = [i for i, t in enumerate(tokens) if t in _WORD_TO_SHAPE]
    if not shape_at:
        raise ValueError(f"no shape word in caption {caption!r}; shape words: {sorted(_WORD_TO_SHAPE)}")
    if len(shape_at) > 2:
        raise ValueError(f"caption {caption!r} names {len(shape_at)} objects; Shapes scenes have 1 or 2")
    objects, start = [], 0
    for i in shape_at:
        seg = tokens[start:i]
        colours = [t for t in seg if t in _COLOUR_SET]
        sizes = [_WORD_TO_SIZE[t] for t in seg if t in _WORD_TO_SIZE]
        objects.append([_WORD_TO_SHAPE[tokens[i]], colours[-1] if colours else None,
                        sizes[-1] if sizes else None, None])
        start = i + 1
    relation = None
    if len(objects) == 1:
        v = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
        vert = [v[t] for t in tokens if t in v]
        horiz = [t for t in tokens if t in ("left", "right")]
        centre = any(t in ("centre", "center", "middle") for t in tokens)
        if vert or horiz:
            r = vert[-1] if vert else None
            c = horiz[-1] if horiz else None
            objects[0][3] = " ".join(w for w in (r, c) if w) or "centre"
        elif centre:
            objects[0][3] = "centre"
    else:
        text = " ".join(tokens)
        its = re.search(r"\bto its (left|right)\b|\b(above|over|below|under|beneath) it\b", text)
        if its:
            where_b = _DIRECT_REL[its.group(1) or its.group(2)]   # B <where_b> A
            relation = INVERSE_RELATION[where_b]
        else:
            between = tokens[shape_at[0] + 1:shape_at[1]]
            found = {_DIRECT_REL[t] for t in between if t in _DIRECT_REL}
            if len(found) != 1:
                raise ValueError(f"caption {caption!r} names two objects but "
                                 f"{'no' if not found else 'more than one'} relation between them; "
                                 f"relations: {RELATIONS}")
            relation = found.pop()
    return Scene(tuple(ShapeObject(*o) for o in objects), relation)


# ----------------------------------------------------------------------------------------------------
# Scorer: pixels -> attributes, exact on renders and tolerant of noise.

@dataclass
class ScoreResult:
    scene: Scene                 # best guess, in canonical order (see Scene.canonical)
    valid: bool                  # False when the image does not look like a Shapes image
    problems: tuple[str, ...] = ()   # why not valid (empty when valid)
    fit: tuple[float, ...] = ()      # per object: IoU with its best-matching sprite (1.0 on renders)


def _to_hwc01(image) -> np.ndarray:
    """Accept (3, S, S) / (S, S, 3) tensors or arrays, float in [0, 1] or uint8; return float (S, S, 3)."""
    if isinstance(image, torch.Tensor):
        image = image.detach().to("cpu")
        image = image.float().numpy() if image.dtype != torch.uint8 else image.numpy()
    a = np.asarray(image)
    if a.ndim != 3 or 3 not in (a.shape[0], a.shape[-1]):
        raise ValueError(f"expected one RGB image shaped (3, S, S) or (S, S, 3), got {tuple(a.shape)}")
    if a.shape[0] == 3 and a.shape[-1] != 3:  # (3, S, S) -> (S, S, 3); Shapes images are >= 32 px
        a = a.transpose(1, 2, 0)
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"expected a square image, got {a.shape[0]}x{a.shape[1]}")
    return np.clip(a, 0.0, 1.0)


@lru_cache(maxsize=None)
def _templates(image_size: int):
    return [(shape, size, sprite(shape, size, image_size)) for shape in SHAPES for size in SIZES]


def _best_template(mask: np.ndarray, image_size: int):
    """mask: a component's bool mask cropped to its bounding box. Returns (shape, size, iou, dy, dx)
    where (dy, dx) is the sprite's top-left relative to the crop's top-left at the best fit."""
    h, w = mask.shape
    area = int(mask.sum())
    best = None
    for shape, size, t in _templates(image_size):
        d = t.shape[0]
        if (h, w) == (d, d) and np.array_equal(mask, t):
            return shape, size, 1.0, 0, 0          # exact: a rendered sprite
        tarea = int(t.sum())
        oy0, ox0 = (h - d) // 2, (w - d) // 2
        for dy in (oy0 - 1, oy0, oy0 + 1, oy0 + (h - d) % 2):
            for dx in (ox0 - 1, ox0, ox0 + 1, ox0 + (w - d) % 2):
                # overlap of mask [0,h)x[0,w) with template at [dy, dy+d) x [dx, dx+d)
                y0, y1 = max(0, dy), min(h, dy + d)
                x0, x1 = max(0, dx), min(w, dx + d)
                inter = 0
                if y1 > y0 and x1 > x0:
                    inter = int((mask[y0:y1, x0:x1] & t[y0 - dy:y1 - dy, x0 - dx:x1 - dx]).sum())
                iou = inter / (area + tarea - inter)
                if best is None or iou > best[2]:
                    best = (shape, size, iou, dy, dx)
    return best


def score(image, *, max_colour_dist: float = 0.3, min_fit: float = 0.6) -> ScoreResult:
    """Recover shapes, colours, sizes, position and relation from an image. Defined in Chapter 7.

    Steps: classify each pixel to the nearest palette colour or the background (pixels further than
    ``max_colour_dist`` from all of them, in [0, 1] RGB, are "unknown"); find the connected regions of
    each colour; drop specks (smaller than 40% of the smallest sprite); match each remaining region
    against every (shape, size) sprite by IoU. On a rendered image every region matches a sprite
    exactly (IoU 1). On a generated one the answer is a best guess, and ``valid`` says whether it is
    believable: one or two objects, each fitting a sprite with IoU >= ``min_fit``, few unknown
    pixels, a clear relation.
    """
    from scipy import ndimage

    img = _to_hwc01(image)
    S = img.shape[0]
    if S not in VALID_SIZES:
        raise ValueError(f"score() reads Shapes images of size {VALID_SIZES}, got {S}x{S}")
    colours = np.concatenate([BACKGROUND[None], PALETTE]).astype(np.float32) / 255.0   # (7, 3)
    dist = np.linalg.norm(img[:, :, None, :] - colours[None, None], axis=-1)          # (S, S, 7)
    cls = dist.argmin(-1)                                                               # (S, S)
    unknown = dist.min(-1) > max_colour_dist
    cls[unknown] = -1
    problems = []
    if unknown.mean() > 0.15:
        problems.append(f"{unknown.mean():.0%} of pixels are far from every palette colour")

    min_area = 0.4 * min(int(sprite(s, "small", S).sum()) for s in SHAPES)
    eight = np.ones((3, 3), bool)
    regions, stray = [], 0
    for c in range(1, len(COLOURS) + 1):
        lab, n = ndimage.label(cls == c, structure=eight)
        if n == 0:
            continue
        slices = ndimage.find_objects(lab)
        for k, sl in enumerate(slices, start=1):
            comp = lab[sl] == k
            a = int(comp.sum())
            if a < min_area:
                stray += a
                continue
            regions.append((a, c - 1, sl, comp))
    if stray > 0.02 * S * S:
        problems.append(f"{stray} pixels in coloured specks")
    regions.sort(key=lambda r: -r[0])
    if not 1 <= len(regions) <= 2:
        problems.append(f"found {len(regions)} objects (a Shapes image has 1 or 2)")
    regions = regions[:2]

    objs, centres, fits = [], [], []
    for _, colour, sl, comp in regions:
        shape, size, iou, dy, dx = _best_template(comp, S)
        d = sprite_diameter(size, S)
        centres.append((sl[0].start + dy + d / 2, sl[1].start + dx + d / 2))
        objs.append(ShapeObject(shape, COLOURS[colour], size))
        fits.append(iou)
        if iou < min_fit:
            problems.append(f"a {COLOURS[colour]} region fits no shape well (best: {shape}, IoU {iou:.2f})")

    relation = None
    if len(objs) == 1:
        cy, cx = centres[0]
        objs[0] = replace(objs[0], position=POSITIONS[3 * _cell_of(cy, S) + _cell_of(cx, S)])
    elif len(objs) == 2:
        (ya, xa), (yb, xb) = centres
        dy, dx = yb - ya, xb - xa
        if abs(abs(dx) - abs(dy)) < relation_margin(S) / 4:
            problems.append("the two objects are diagonal to each other: the relation is ambiguous")
        if abs(dx) >= abs(dy):
            relation = "left of" if dx > 0 else "right of"
        else:
            relation = "above" if dy > 0 else "below"
    scene = Scene(tuple(objs), relation).canonical()
    return ScoreResult(scene, not problems, tuple(problems), tuple(fits))


def _as_target(target) -> Scene:
    if isinstance(target, Scene):
        return target
    if isinstance(target, str):
        return parse_caption(target)
    if isinstance(target, dict) and "attrs" in target:
        return Scene.decode(target["attrs"])
    return Scene.decode(target)


def matches(image, caption_or_attrs, **score_kw) -> bool:
    """Does the image show what the caption (or attribute encoding, or Scene) says?
    False when the image is not a valid Shapes image. Defined in Chapter 7."""
    result = score(image, **score_kw)
    return result.valid and scene_agrees(result.scene, _as_target(caption_or_attrs))


def match_rate(images, captions_or_attrs, **score_kw) -> float:
    """Fraction of images that match their captions / attribute encodings: the text-to-image
    chapters' alignment score. ``images``: (B, 3, S, S) tensor or a sequence of images."""
    if isinstance(captions_or_attrs, torch.Tensor) and captions_or_attrs.ndim == 1:
        raise ValueError("pass one caption or attribute row per image: got a single 1-D encoding")
    n = len(images)
    if n != len(captions_or_attrs):
        raise ValueError(f"{n} images but {len(captions_or_attrs)} captions/attributes")
    if n == 0:
        raise ValueError("match_rate needs at least one image")
    return sum(matches(images[i], captions_or_attrs[i], **score_kw) for i in range(n)) / n


# ----------------------------------------------------------------------------------------------------
# The dataset.

@dataclass
class ShapesConfig:
    image_size: int = 32          # 32 (quick profile) or 64 (colab); see VALID_SIZES
    split: str = "train"          # train | val | test | heldout (alias test_unseen)
    length: int | None = None     # items per epoch; None -> DEFAULT_LENGTHS[split]
    seed: int = 0                 # with (split, index), fixes every item
    p_two_objects: float = 0.5    # chance a scene has two objects and a relation
    max_objects: int = 2          # 1 -> one-object scenes only (an easier warm-up set)
    captions: str = "varied"      # "varied": templates + synonyms; "full": one canonical sentence


def _sample_scene(rng: _Rng, heldout: bool, p_two: float, max_objects: int) -> Scene:
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

    ``attrs`` is :meth:`Scene.encode` of the scene in caption order (fields in ``ATTR_FIELDS``);
    ``dataset.scene(i)`` gives the structured record. Defined in Chapter 7.
    """

    def __init__(self, config: ShapesConfig | None = None, **kw):
        cfg = replace(config, **kw) if config is not None else ShapesConfig(**kw)
        cfg.split = SPLIT_ALIASES.get(cfg.split, cfg.split)
        if cfg.split not in SPLITS:
            raise ValueError(f"unknown Shapes split {cfg.split!r}; splits: {SPLITS} "
                             f"(aliases: {SPLIT_ALIASES})")
        _check_size(cfg.image_size)
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
        return _sample_scene(_Rng("scene", c.seed, c.split, i), c.split == "heldout",
                             c.p_two_objects, c.max_objects)

    def layout(self, i: int) -> tuple[Placement, ...]:
        c = self.config
        i = self._check_index(i)
        return layout_scene(self.scene(i), c.image_size, _Rng("layout", c.seed, c.split, i))

    def caption(self, i: int) -> str:
        c = self.config
        i = self._check_index(i)
        return make_caption(self.scene(i), _Rng("caption", c.seed, c.split, i), c.captions)

    def image_uint8(self, i: int) -> np.ndarray:
        """The rendered image, uint8 (S, S, 3)."""
        return render_layout(self.layout(i), self.config.image_size)

    def __getitem__(self, i: int) -> dict:
        c = self.config
        i = self._check_index(i)
        scene = self.scene(i)
        layout = layout_scene(scene, c.image_size, _Rng("layout", c.seed, c.split, i))
        img = render_layout(layout, c.image_size)
        caption = make_caption(scene, _Rng("caption", c.seed, c.split, i), c.captions)
        return dict(image=torch.from_numpy(img).permute(2, 0, 1).float().div_(255),  # (3, S, S)
                    caption=caption,
                    attrs=torch.tensor(scene.encode(), dtype=torch.long))            # (9,)

    def __repr__(self) -> str:
        c = self.config
        return (f"ShapesDataset(split={c.split!r}, n={c.length}, image_size={c.image_size}, "
                f"seed={c.seed}, captions={c.captions!r})")
