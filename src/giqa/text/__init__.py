"""Grounded-text codec: boxes written into text and read back.

giqa's own format is ``[phrase](<idx_l, idx_r>, ...)`` on a 20 x 20 grid (the paper's
Disc-Coord) or ``[phrase](x1, y1, x2, y2)`` with two decimals (Norm-Coord).
:mod:`giqa.text.formats` reads and writes other grounding models' formats by name.
:mod:`giqa.text.mentions` is the one rule for whether a text mentions a phrase
(:func:`is_mentioned`, :func:`find_mention`), shared by fusion, DES and the VQA filter.

Light: imports neither torch nor transformers (nor Numba); each name's module is imported on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from giqa._lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first use
    from giqa.text.formats import available_formats, convert, get_format, strip_coordinates
    from giqa.text.grounded import FuseReport, format_boxes, format_phrase, fuse, fuse_report, parse_grounded
    from giqa.text.mentions import find_mention, is_mentioned, iter_mentions
    from giqa.text.parsed import GroundedSpan, ParsedText

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

_LAZY = {
    "FuseReport": "giqa.text.grounded",
    "format_boxes": "giqa.text.grounded",
    "format_phrase": "giqa.text.grounded",
    "fuse": "giqa.text.grounded",
    "fuse_report": "giqa.text.grounded",
    "parse_grounded": "giqa.text.grounded",
    "find_mention": "giqa.text.mentions",
    "is_mentioned": "giqa.text.mentions",
    "iter_mentions": "giqa.text.mentions",
    "GroundedSpan": "giqa.text.parsed",
    "ParsedText": "giqa.text.parsed",
    "available_formats": "giqa.text.formats",
    "convert": "giqa.text.formats",
    "get_format": "giqa.text.formats",
    "strip_coordinates": "giqa.text.formats",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
