"""Formats that write the boxes right after the phrase, with nothing marking where the phrase
begins: Shikra ``dog [0.120,0.340,0.560,0.780]``, Ferret ``dog [120, 340, 560, 780]`` and
Florence-2 ``dog<loc_120><loc_340><loc_560><loc_780>``.

The phrase of a box group is read as the text between the previous boundary and the group:
the previous box group, the start of the text, or the last of ``. , ; : ! ? ( ) [ ]`` and line
breaks (so ``"The sky is clear, the tower [..]"`` gives ``"the tower"``), skipping leading
joining words (``and``, ``or``, ``but``, ``while``, ``with``, ``then``, ``also``, ``as``, ``so``). This matches
Florence-2's own phrase-grounding parser on Florence-2 output (``phrase<loc..>phrase<loc..>``)
and is a heuristic inside running text: a sentence written as ``"The texture of the tower
[..]"`` gives the phrase ``"The texture of the tower"``.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from giqa.types import Box
from giqa.text.formats._base import BoxFormat, _check_text, make_span, read_index_tokens
from giqa.text.grounded import as_boxes
from giqa.text.parsed import GroundedSpan, ParsedText
from giqa.text.scanner import IssueLog, TextBuilder, box_from_corners

_BOUNDARY = ".,;:!?()[]\n"
# Leading words that join clauses rather than name things ("... and buildings [..]").
_LEADING_JOINERS = frozenset({"and", "or", "but", "while", "with", "then", "also", "as", "so"})


def _phrase_cut(before: str) -> int:
    """Where the phrase starts in ``before`` (the clean text since the previous group)."""
    cut = max(before.rfind(c) for c in _BOUNDARY) + 1
    while True:
        j = cut
        while j < len(before) and before[j].isspace():
            j += 1
        e = j
        while e < len(before) and not before[e].isspace():
            e += 1
        if e < len(before) and before[j:e].lower() in _LEADING_JOINERS:
            cut = e
        else:
            return cut


class SuffixFormat(BoxFormat):
    """Common scanner: find a box group, take the phrase before it, drop the group."""

    trigger: str = "["
    joiner: str = " "  # written between phrase and group
    forbidden: str = "[]"

    def _read(self, s: str, k: int, log: IssueLog, issues: list[str]) -> Optional[tuple[int, list[Box]]]:
        raise NotImplementedError

    def _more(self, s: str, i: int) -> int:
        """Where a further group of the same phrase starts after ``i``, or -1."""
        return -1

    def format_phrase(self, phrase: str, boxes: Sequence[Any]) -> str:
        _check_text(phrase, self.forbidden + "\n", self.name)
        return f"{phrase}{self.joiner}{self.format_boxes(boxes)}"

    def _prepare(self, text: str) -> str:
        return text

    def parse(self, text: str, *, strict: bool = False) -> ParsedText:
        if not isinstance(text, str):
            raise TypeError(f"expected a str, got {type(text).__name__}")
        s = self._prepare(text)
        log = IssueLog(s, strict)
        out = TextBuilder()
        spans: list[GroundedSpan] = []
        seg = i = 0
        while True:
            k = s.find(self.trigger, i)
            if k < 0:
                break
            issues: list[str] = []
            got = self._read(s, k, log, issues)
            if got is None:
                i = k + 1
                continue
            end, boxes = got
            while True:
                nxt = self._more(s, end)
                if nxt < 0:
                    break
                more = self._read(s, nxt, log, issues)
                if more is None:
                    break
                end, extra = more
                boxes = boxes + extra
            t = k
            while t > seg and s[t - 1] in " \t":
                t -= 1
            before = s[seg:t]
            cut = _phrase_cut(before)
            out.emit(before[:cut])
            start = out.length
            phrase_raw = before[cut:]
            out.emit(phrase_raw)
            span = make_span(phrase_raw, start, boxes, [], issues)
            if not span.phrase:
                log.add(k, "box without a phrase before it", issues)
            spans.append(span)
            seg = i = end
            if end < len(s) and s[end].isalnum() and out.last_char().isalnum():
                out.emit(" ")
        out.emit(s[seg:])
        return ParsedText(out.build(), spans, log.all)


def _bracket_body(s: str, k: int, allowed: str) -> Optional[tuple[int, str]]:
    """``(end, body)`` of the ``[...]`` at ``k`` when it holds only ``allowed`` characters."""
    j = k + 1
    size = len(s)
    while j < size and s[j] in allowed:
        j += 1
    if j >= size or s[j] != "]" or j == k + 1:
        return None
    return j + 1, s[k + 1:j]


class Shikra(SuffixFormat):
    """Shikra ``[x1,y1,x2,y2]``, 3 decimals, several boxes ``[..;..]``."""

    name = "shikra"
    rounding = "format(v, '.3f') (the exact binary value rounded to 3 decimals, ties to even); read back as float"
    source = "shikras/shikra mllm/dataset/process_function/box_process_function.py (PlainBoxFormatter, precision=3)"

    def format_boxes(self, boxes: Sequence[Any]) -> str:
        bs = as_boxes(boxes, nonempty=True)
        return "[" + ";".join(",".join(f"{v:.3f}" for v in b.as_tuple()) for b in bs) + "]"

    def _read(self, s, k, log, issues):
        got = _bracket_body(s, k, "0123456789.,; \t")
        if got is None:
            return None
        end, body = got
        boxes = []
        canonical = []
        for part in body.split(";"):
            vals = [v.strip() for v in part.split(",")]
            canonical.append(",".join(vals))
            if len(vals) != 4 or not all(v and v.count(".") <= 1 and v != "." for v in vals):
                log.add(k, f"unreadable box {part!r}; dropped", issues)
                continue
            nums = [float(v[:24]) for v in vals]
            if not all(0.0 <= v <= 1.0 for v in nums):
                log.add(k, f"box {part!r} outside [0, 1]; dropped", issues)
                continue
            box, swapped = box_from_corners(*nums)
            if swapped:
                log.add(k, f"swapped corners in {part!r} mended", issues)
            boxes.append(box)
        if not boxes and not issues:
            return None
        if body != ";".join(canonical):
            log.add(k, f"non-canonical box syntax [{body}]", issues)
        return end, boxes


def _floor_1000(v: float) -> int:
    # v * 1000 computed in binary can land just under an integer (0.29 * 1000 = 289.99999999999994)
    return min(max(math.floor(v * 1000 + 1e-9), 0), 999)


class Ferret(SuffixFormat):
    """Ferret ``[x1, y1, x2, y2]``, integers 0-999, several boxes ``[..], [..]``."""

    name = "ferret"
    rounding = "q = min(int(v * 1000), 999) (truncation, float error of 1e-9 forgiven); decoded as q / 1000"
    source = "apple/ml-ferret ferret/eval/model_refcoco.py (VOCAB_IMAGE_W = 1000, resize_bbox) and the serve/eval scripts"

    def format_boxes(self, boxes: Sequence[Any]) -> str:
        bs = as_boxes(boxes, nonempty=True)
        return ", ".join("[" + ", ".join(str(_floor_1000(v)) for v in b.as_tuple()) + "]" for b in bs)

    def _more(self, s, i):
        j = i
        if j < len(s) and s[j] == ",":
            j += 1
            while j < len(s) and s[j] in " \t":
                j += 1
            if j < len(s) and s[j] == "[":
                return j
        return -1

    def _read(self, s, k, log, issues):
        got = _bracket_body(s, k, "0123456789, \t")
        if got is None:
            return None
        end, body = got
        vals = [v.strip() for v in body.split(",")]
        if len(vals) != 4 or not all(vals):
            return None  # e.g. a citation "[3]" or a list "[1, 2]"
        if body != ", ".join(vals):
            log.add(k, f"non-canonical box syntax [{body}]", issues)
        nums = [int(v) if len(v) <= 9 else 10**9 for v in vals]
        if max(nums) > 1000:
            log.add(k, f"box [{body}] has values above 1000; dropped", issues)
            return end, []
        box, swapped = box_from_corners(*(v / 1000 for v in nums))
        if swapped:
            log.add(k, f"swapped corners in [{body}] mended", issues)
        return end, [box]


class Florence2(SuffixFormat):
    """Florence-2 ``phrase<loc_x1><loc_y1><loc_x2><loc_y2>``, 1000 bins per axis."""

    name = "florence2"
    trigger = "<loc_"
    joiner = ""
    forbidden = "<>"
    rounding = "q = clamp(floor(v * 1000), 0, 999); decoded to the bin centre (q + 0.5) / 1000"
    source = "transformers models/florence2/processing_florence2.py (Florence2PostProcessor.quantize / dequantize)"

    def format_boxes(self, boxes: Sequence[Any]) -> str:
        bs = as_boxes(boxes, nonempty=True)
        return "".join("".join(f"<loc_{min(max(math.floor(v * 1000), 0), 999)}>" for v in b.as_tuple()) for b in bs)

    def _prepare(self, text: str) -> str:
        # Florence-2's post-processor drops these first; offsets refer to the text without them.
        return text.replace("<s>", "").replace("</s>", "").replace("<pad>", "")

    def _read(self, s, k, log, issues):
        i, vals = read_index_tokens(s, k, "<loc_")
        if len(vals) < 4:
            return None
        if len(vals) % 4:
            log.add(k, f"{len(vals)} <loc_> tokens is not a multiple of 4; the rest ignored", issues)
        boxes = []
        for q in range(0, len(vals) - len(vals) % 4, 4):
            quad = vals[q:q + 4]
            if max(quad) > 999:
                log.add(k, f"<loc_> value above 999 in {quad}; box dropped", issues)
                continue
            box, swapped = box_from_corners(*((v + 0.5) / 1000 for v in quad))
            if swapped:
                log.add(k, f"swapped corners in {quad} mended", issues)
            boxes.append(box)
        return i, boxes
