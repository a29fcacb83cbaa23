"""The scorer: pixels back to attributes, exact on renders and tolerant of noise."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch

from t2i_lib.data.shapes.captions import parse_caption
from t2i_lib.data.shapes.rendering import cell_of, relation_margin, sprite, sprite_diameter
from t2i_lib.data.shapes.world import (BACKGROUND, COLOURS, PALETTE, POSITIONS, SHAPES, SIZES, Scene,
                                       ShapeObject, VALID_SIZES, scene_agrees)


@dataclass
class ScoreResult:
    scene: Scene                 # best guess, in canonical order (see Scene.canonical)
    valid: bool                  # False when the image does not look like a Shapes image
    problems: tuple[str, ...] = ()   # why not valid (empty when valid)
    fit: tuple[float, ...] = ()      # per object: IoU with its best-matching sprite (1.0 on renders)


# How far outside [0, 1] a float image may stray (noise on a render) before it is refused as another range.
FLOAT_RANGE_SLACK = 0.5


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
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    else:
        a = a.astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        # Noise on a [0, 1] image may stray a little outside it (and is clipped below); values far outside
        # mean another convention, which would otherwise be silently judged invalid.
        if hi > FLOAT_RANGE_SLACK + 1 or lo < -FLOAT_RANGE_SLACK:
            hint = ("it looks like 0-255 values: divide by 255, or pass a uint8 image" if hi > 2 else
                    "it looks like [-1, 1] values: map them with (x + 1) / 2" if lo < -FLOAT_RANGE_SLACK else
                    "clamp it to [0, 1]")
            raise ValueError(f"score() reads float images in [0, 1] (or uint8 images in 0-255); this one has "
                             f"values from {lo:.3g} to {hi:.3g}: {hint}")
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


# What a valid picture may hold besides its objects (Chapter 4, section 4.6, states both): pixels near no
# palette colour (the blur a decoder leaves at edges), and coloured specks too small to be objects.
MAX_UNKNOWN_FRACTION = 0.15
MAX_SPECK_FRACTION = 0.02


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
    if unknown.mean() > MAX_UNKNOWN_FRACTION:
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
    if stray > MAX_SPECK_FRACTION * S * S:
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
        objs[0] = replace(objs[0], position=POSITIONS[3 * cell_of(cy, S) + cell_of(cx, S)])
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
