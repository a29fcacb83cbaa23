"""Shapes: a small, fully known world of captioned images, drawn on demand.

- ``world``: the attributes (shapes, colours, sizes, positions, relations), held-out pairs, scenes (Chapter 4)
- ``rendering``: fixed binary sprites, the layout rules, the renderer (Chapter 4)
- ``captions``: caption templates and synonyms, and the parser that reads a caption back (Chapter 4)
- ``scoring``: the scorer, pixels back to attributes; whether an image matches a caption (Chapter 4)
- ``dataset``: ``ShapesDataset``, item i of a split drawn from (seed, split, i) alone (Chapter 4)

Each image shows one or two coloured objects on a black background, and its caption says what is there:
"a small red circle in the top left", "a blue square above a green triangle". Nothing is downloaded. On
real captioned photos nobody can say whether a generated image matches its caption; here the scorer can,
which turns "does the text-to-image model work?" into a number (Chapters 7-9 judge their models on it).
"""

from t2i_lib.data.shapes.captions import CAPTION_TEMPLATES, VOCAB, describe, make_caption, parse_caption
from t2i_lib.data.shapes.dataset import ShapesConfig, ShapesDataset
from t2i_lib.data.shapes.rendering import (Placement, layout_scene, relation_margin, render, render_layout, sprite,
                                           sprite_diameter)
from t2i_lib.data.shapes.scoring import ScoreResult, match_rate, matches, score
from t2i_lib.data.shapes.world import (ATTR_FIELDS, BACKGROUND, COLOURS, HELDOUT_PAIRS, INVERSE_RELATION, PALETTE,
                                       POSITIONS, RELATIONS, SHAPES, SIZES, SPLITS, VALID_SIZES, PortableRng, Scene,
                                       ShapeObject, scene_agrees)

__all__ = ["ATTR_FIELDS", "BACKGROUND", "CAPTION_TEMPLATES", "COLOURS", "HELDOUT_PAIRS", "INVERSE_RELATION", "PALETTE",
           "POSITIONS", "Placement", "PortableRng", "RELATIONS", "SHAPES", "SIZES", "SPLITS", "Scene", "ScoreResult",
           "ShapeObject", "ShapesConfig", "ShapesDataset", "VALID_SIZES", "VOCAB", "describe", "layout_scene",
           "make_caption", "match_rate", "matches", "parse_caption", "relation_margin", "render", "render_layout",
           "scene_agrees", "score", "sprite", "sprite_diameter"]
