"""Kosmos-2: ``<phrase>a snowman</phrase><object><patch_index_0044><patch_index_0863></object>``.

Follows transformers' ``models/kosmos2/processing_kosmos2.py`` (itself copied from
microsoft/unilm ``kosmos-2/demo/decode_string.py``): 32 x 32 patches, row-major.

* encode: ``ul = floor(y1*32)*32 + floor(x1*32)``, ``lr = ceil(y2*32 - 1)*32 + ceil(x2*32 - 1)``
  (``coordinate_to_patch_index``). The reference rejects boxes with ``x2 <= x1`` or
  ``y2 <= y1``; giqa clamps instead (each patch coordinate to ``[0, 31]``, ``lr`` no smaller than
  ``ul`` per axis), so degenerate boxes get a one-patch-wide box.
* decode (``patch_index_to_coordinate``): if ``ul == lr`` or the two patches share a row or a
  column, the box covers the patches' outer edges; otherwise it joins the two patch centres.
* clean text: every ``<...>`` tag on one line is removed (``re.sub("<.*?>", "", text)``), then
  surrounding whitespace is stripped; phrase spans are shifted and trimmed exactly as the
  reference's ``_cleanup_spaces`` does.
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Optional, Sequence

from giqa.text.formats._base import BoxFormat, _check_text
from giqa.text.grounded import as_boxes
from giqa.text.parsed import GroundedSpan, ParsedText
from giqa.text.scanner import IssueLog, box_from_corners

_P = 32
_OBJ, _END_OBJ = "<object>", "</object>"
_PHRASE, _END_PHRASE = "<phrase>", "</phrase>"
_PATCH = "<patch_index_"
_DELIM = "</delimiter_of_multi_objects/>"
_WS = " \t\r\n"


def encode(box: Any, p: int = _P) -> tuple[int, int]:
    """Box -> ``(ul, lr)`` patch indices (see the module docstring)."""
    x1, y1, x2, y2 = box.as_tuple() if hasattr(box, "as_tuple") else box
    top = p - 1
    ulx = min(max(math.floor(x1 * p), 0), top)
    uly = min(max(math.floor(y1 * p), 0), top)
    lrx = min(max(math.ceil(x2 * p - 1), ulx), top)
    lry = min(max(math.ceil(y2 * p - 1), uly), top)
    return uly * p + ulx, lry * p + lrx


def decode(ul: int, lr: int, p: int = _P) -> tuple[float, float, float, float]:
    """``(ul, lr)`` -> ``(x1, y1, x2, y2)``, exactly as ``patch_index_to_coordinate``."""
    cell = 1.0 / p
    ulx, uly = ul % p, ul // p
    lrx, lry = lr % p, lr // p
    if ul == lr or ulx == lrx or uly == lry:
        return ulx * cell, uly * cell, lrx * cell + cell, lry * cell + cell
    h = cell / 2
    return ulx * cell + h, uly * cell + h, lrx * cell + h, lry * cell + h


def _strip_tags(s: str) -> tuple[str, list[tuple[int, int, int]]]:
    """``re.sub("<.*?>", "", s)`` in linear time, plus the kept segments ``(raw_a, raw_b, clean_a)``."""
    parts: list[str] = []
    segs: list[tuple[int, int, int]] = []
    clean = 0
    seg = 0
    i = 0
    gt = nl = -1
    size = len(s)
    while True:
        k = s.find("<", i)
        if k < 0:
            break
        if gt <= k:
            gt = s.find(">", k + 1)
            if gt < 0:
                break  # no '>' left: no more tags
        if nl <= k:
            nl = s.find("\n", k + 1)
            if nl < 0:
                nl = size + 1
        if nl < gt:
            i = k + 1  # '.' does not match a line break: this '<' is literal
            continue
        if k > seg:
            parts.append(s[seg:k])
            segs.append((seg, k, clean))
            clean += k - seg
        seg = i = gt + 1
    if seg < size:
        parts.append(s[seg:])
        segs.append((seg, size, clean))
    return "".join(parts), segs


def _clean_pos(segs: list[tuple[int, int, int]], starts: list[int], raw: int) -> int:
    j = bisect.bisect_right(starts, raw) - 1
    if j < 0:
        return 0
    a, b, c = segs[j]
    return c + min(raw, b) - a


class Kosmos2(BoxFormat):
    """Kosmos-2's patch-index tokens (32 x 32 patches)."""

    name = "kosmos2"
    rounding = (
        "ul = floor(v1 * 32) per axis, lr = ceil(v2 * 32 - 1) per axis, index = row * 32 + col; "
        "decoded to patch centres, or to patch edges when ul == lr or the patches share a row or column"
    )
    source = "transformers models/kosmos2/processing_kosmos2.py (coordinate_to_patch_index, patch_index_to_coordinate)"

    def format_boxes(self, boxes: Sequence[Any]) -> str:
        pairs = []
        for b in as_boxes(boxes, nonempty=True):
            ul, lr = encode(b)
            pairs.append(f"{_PATCH}{ul:04d}>{_PATCH}{lr:04d}>")
        return _OBJ + _DELIM.join(pairs) + _END_OBJ

    def format_phrase(self, phrase: str, boxes: Sequence[Any]) -> str:
        _check_text(phrase, "<>", "Kosmos-2")
        return f"{_PHRASE}{phrase}{_END_PHRASE}{self.format_boxes(boxes)}"

    # -- reading ---------------------------------------------------------------------------
    def _read_object(self, s: str, k: int, log: IssueLog, issues: list[str]) -> Optional[tuple[int, list, list]]:
        """Patch pairs of the ``<object>`` at ``k``: ``(end, boxes, indices)`` or None."""
        size = len(s)
        i = k + len(_OBJ)
        values: list[int] = []
        spaced = False
        while True:
            j = i
            while j < size and s[j] in _WS:
                j += 1
            spaced |= j > i
            i = j
            if s.startswith(_PATCH, i):
                j = i + len(_PATCH)
                d = j
                while d < size and s[d].isdigit() and s[d].isascii():
                    d += 1
                if d == j or d >= size or s[d] != ">":
                    return None
                values.append(int(s[j:d]) if d - j <= 9 else 10**9)
                i = d + 1
                continue
            if s.startswith(_DELIM, i):
                if len(values) % 2:
                    return None
                i += len(_DELIM)
                continue
            if s.startswith(_END_OBJ, i):
                break
            return None
        if not values or len(values) % 2:
            return None
        if spaced:
            log.add(k, "whitespace inside <object> (Kosmos-2 writes none)", issues)
        boxes, indices = [], []
        for ul, lr in zip(values[::2], values[1::2]):
            if not (0 <= ul < _P * _P and 0 <= lr < _P * _P):
                log.add(k, f"patch index out of range [0, {_P * _P}) in ({ul}, {lr}); box dropped", issues)
                continue
            box, swapped = box_from_corners(*decode(ul, lr))
            if swapped:
                log.add(k, f"swapped corners in ({ul}, {lr}) mended", issues)
            boxes.append(box)
            indices.append((ul, lr))
        return i + len(_END_OBJ), boxes, indices

    def parse(self, text: str, *, strict: bool = False) -> ParsedText:
        if not isinstance(text, str):
            raise TypeError(f"expected a str, got {type(text).__name__}")
        s = text
        log = IssueLog(s, strict)
        processed, segs = _strip_tags(s)
        starts = [a for a, _, _ in segs]
        entities: list[tuple[str, int, int, list, list, list]] = []
        i = 0
        while True:
            k = s.find(_OBJ, i)
            if k < 0:
                break
            issues: list[str] = []
            got = self._read_object(s, k, log, issues)
            if got is None:
                log.add(k, "malformed <object> ignored")
                i = k + 1
                continue
            end, boxes, indices = got
            name, a, b = "", k, k
            q = k - len(_END_PHRASE)
            if q >= 0 and s.startswith(_END_PHRASE, q):
                r = s.rfind("<", 0, q)
                if r >= 0 and s.startswith(_PHRASE, r) and r + len(_PHRASE) < q:
                    a, b = r + len(_PHRASE), q
                    name = s[a:b]
            if not name:
                log.add(k, "<object> without a <phrase>", issues)
            entities.append((name, a, b, boxes, indices, issues))
            i = end
        clean = processed.strip()
        lead = len(processed) - len(processed.lstrip())
        spans: list[GroundedSpan] = []
        for name, a, b, boxes, indices, issues in entities:
            ca = _clean_pos(segs, starts, a) - lead
            cb = _clean_pos(segs, starts, b) - lead
            ca += len(name) - len(name.lstrip())
            cb -= len(name) - len(name.rstrip())
            if not name.strip():
                ca = cb = max(ca, 0)
            spans.append(GroundedSpan(name.strip(), ca, max(ca, cb), boxes, indices, issues))
        return ParsedText(clean, spans, log.all)
