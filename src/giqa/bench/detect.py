"""Which box format a model answer is written in, read from its markup (``--format auto``).

Each of the eight formats :mod:`giqa.text.formats` reads has markup no plain prose has:

* ``giqa`` ``[face](<26, 172>)``; ``giqa-norm`` ``[face](0.12, 0.30, 0.55, 0.80)``;
* ``kosmos2`` ``<phrase>..</phrase><object><patch_index_0042>..``; ``qwen-vl`` ``<ref>..</ref>``
  / ``<box>(..)</box>``; ``florence2`` ``<loc_120>``; ``paligemma`` ``<loc0256>``;
* ``shikra`` ``[0.120,0.340,0.560,0.780]`` (four decimals in brackets); ``ferret``
  ``[120, 340, 560, 780]`` (four integers in brackets).

:func:`markup_formats` lists the formats whose markup a text carries; :func:`detect_format`
picks one: the only one, or, when markups of several formats meet in one text, the one whose
parser reads the most boxes (ties: the order above). A text with no markup has no format
(None) and is read as plain text. Detection is per answer, so a file may mix formats.
Linear in the text: a few substring tests and regex searches with no nested repetition.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

__all__ = ["FORMATS", "markup_formats", "detect_format"]

#: The formats in detection priority order (ties go to the earlier one).
FORMATS = ("giqa", "giqa-norm", "kosmos2", "qwen-vl", "florence2", "paligemma", "shikra", "ferret")

_NUM = r"\s*\d*\.\d+\s*"
_INT = r"\s*\d{1,4}\s*"
_PATTERNS: dict[str, re.Pattern] = {
    "giqa": re.compile(r"\]\(\s*<\s*\d+\s*,\s*\d+\s*>"),
    "giqa-norm": re.compile(r"\]\(" + ",".join([_NUM] * 4)),
    "kosmos2": re.compile(r"<object>\s*<patch_index_\d+>|<phrase>[^<]*</phrase>|<grounding>"),
    "qwen-vl": re.compile(r"<ref>|<box>\s*\(\s*\d"),
    "florence2": re.compile(r"<loc_\d+>"),
    "paligemma": re.compile(r"<loc\d{4}>"),
    "shikra": re.compile(r"\[" + ",".join([_NUM] * 4) + r"[\];]"),
    "ferret": re.compile(r"\[" + ",".join([_INT] * 4) + r"\]"),
}
def markup_formats(text: str) -> list[str]:
    """The formats whose markup occurs in ``text``, in :data:`FORMATS` order."""
    square, angle = "[" in text, "<" in text
    if not square and not angle:
        return []
    # substrings each markup cannot do without: most texts fail these cheap tests
    maybe: list[str] = []
    if square and "](" in text:
        maybe += ("giqa", "giqa-norm")
    if angle:
        if "<object>" in text or "<phrase>" in text or "<grounding>" in text:
            maybe.append("kosmos2")
        if "<ref>" in text or "<box>" in text:
            maybe.append("qwen-vl")
        if "<loc" in text:
            maybe += ("florence2", "paligemma")
    if square:
        maybe += ("shikra", "ferret")
    return [name for name in maybe if _PATTERNS[name].search(text) is not None]


def detect_format(text: str, parse: Optional[Callable[[str, str], int]] = None) -> Optional[str]:
    """The format ``text`` is written in, or None when it carries no box markup.

    ``parse(text, fmt)`` -> number of boxes read; it settles texts with markup of several
    formats (default: :mod:`giqa.text.formats` parsers on the 20 x 20 grid).
    """
    found = markup_formats(text)
    if len(found) <= 1:
        return found[0] if found else None
    count = parse or _count_boxes
    best, best_n = found[0], -1
    for name in found:
        n = count(text, name)
        if n > best_n:
            best, best_n = name, n
    return best


def _count_boxes(text: str, fmt: str) -> int:
    from giqa.text.formats import get_format

    return sum(len(s.boxes) for s in get_format(fmt).parse(text).spans)
