"""Captions: templates and synonyms that say a scene, and the parser that reads one back."""

from __future__ import annotations

import re

import numpy as np

from t2i_lib.data.shapes.world import COLOURS, INVERSE_RELATION, PortableRng, RELATIONS, Scene, ShapeObject


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


def caption_from_template(scene: Scene, name: str, rng) -> tuple[str, Scene]:
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


def make_caption(scene: Scene, rng: PortableRng | int = 0, style: str = "varied") -> str:
    """A caption for a scene: ``style="varied"`` picks a template and synonyms from ``rng``;
    ``"full"`` gives the one canonical sentence that states every attribute."""
    if isinstance(rng, (int, np.integer)):
        rng = PortableRng("caption", int(rng), scene)
    if style == "full":
        return caption_from_template(scene, "full", FirstChoice())[0]
    if style != "varied":
        raise ValueError(f"caption style must be 'varied' or 'full', got {style!r}")
    names = [k for k, v in CAPTION_TEMPLATES.items() if v[0] == len(scene.objects)]
    return caption_from_template(scene, rng.choice(names), rng)[0]


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


class FirstChoice:
    """Stands in for an PortableRng where the canonical (first) wording is wanted."""

    def choice(self, seq):
        return seq[0]



def describe(scene: Scene) -> str:
    """The full canonical caption of ``scene``: every attribute said, in the first wording of each."""
    return caption_from_template(scene, "full", FirstChoice())[0]
