"""Grounded-text codec: boxes written into text and read back.

giqa's own format is ``[phrase](<idx_l, idx_r>, ...)`` on a 20 x 20 grid (the paper's
Disc-Coord) or ``[phrase](x1, y1, x2, y2)`` with two decimals (Norm-Coord).
:mod:`giqa.text.formats` reads and writes other grounding models' formats by name.
:mod:`giqa.text.mentions` is the one rule for whether a text mentions a phrase
(:func:`is_mentioned`, :func:`find_mention`), shared by fusion, DES and the VQA filter.

Light: imports neither torch nor transformers (nor Numba).
"""

from giqa.text.grounded import (
    FuseReport,
    format_boxes,
    format_phrase,
    fuse,
    fuse_report,
    parse_grounded,
    strip_coordinates,
)
from giqa.text.mentions import find_mention, is_mentioned, iter_mentions
from giqa.text.parsed import GroundedSpan, ParsedText


def __getattr__(name: str):
    if name in ("get_format", "available_formats", "convert"):
        from giqa.text import formats

        return getattr(formats, name)
    raise AttributeError(f"module 'giqa.text' has no attribute {name!r}")


__all__ = [
    "FuseReport",
    "GroundedSpan",
    "ParsedText",
    "available_formats",
    "convert",
    "find_mention",
    "format_boxes",
    "format_phrase",
    "fuse",
    "fuse_report",
    "get_format",
    "is_mentioned",
    "iter_mentions",
    "parse_grounded",
    "strip_coordinates",
]
