"""PaliGemma: ``<loc0256><loc0128><loc0768><loc0896> cat ; <loc..>x4 dog`` (y first, 1024 bins).

* encode: ``clip(round(v * 1023), 0, 1023)`` with ties to even (big_vision
  ``pp/proj/paligemma/segmentation.py``: ``tf.round(bbox * 1023)``), written ``y1 x1 y2 x2``;
* decode: ``q / 1024`` (big_vision's PaliGemma demo ``extract_objs`` / ``_SEGMENT_DETECT_RE``).
  The two references disagree by one bin at the top of the range; giqa follows each for its
  direction, so ``encode(decode(q))`` can be ``q - 1`` for ``q >= 512``.
* the label is the text after the four tokens (and optional 16 ``<segNNN>`` tokens) up to
  ``;``, ``<``, ``>`` or a line break; ``" ; "`` separates detections. Several boxes of one
  phrase are written as separate detections with the same label, as PaliGemma does.
"""

from __future__ import annotations

from typing import Any, Sequence

from giqa.text.formats._base import BoxFormat, _check_text, make_span, read_index_tokens
from giqa.text.grounded import as_boxes
from giqa.text.parsed import GroundedSpan, ParsedText
from giqa.text.scanner import IssueLog, TextBuilder, box_from_corners


def encode(v: float) -> int:
    return min(max(round(v * 1023), 0), 1023)


def decode(q: int) -> float:
    return q / 1024


class PaliGemma(BoxFormat):
    """PaliGemma's ``<locNNNN>`` tokens, ``y1 x1 y2 x2`` order, 1024 bins."""

    name = "paligemma"
    rounding = "q = clip(round(v * 1023), 0, 1023) (ties to even), order y1 x1 y2 x2; decoded as q / 1024"
    source = "google-research/big_vision pp/proj/paligemma/segmentation.py (encode) and the PaliGemma demo's extract_objs (decode)"

    def format_box(self, box: Any) -> str:
        (b,) = as_boxes([box])
        x1, y1, x2, y2 = b.as_tuple()
        return "".join(f"<loc{encode(v):04d}>" for v in (y1, x1, y2, x2))

    def format_boxes(self, boxes: Sequence[Any]) -> str:
        bs = as_boxes(boxes, nonempty=True)
        return " ; ".join(self.format_box(b) for b in bs)

    def format_phrase(self, phrase: str, boxes: Sequence[Any]) -> str:
        _check_text(phrase, ";<>\n", "PaliGemma")
        bs = as_boxes(boxes, nonempty=True)
        return " ; ".join(f"{self.format_box(b)} {phrase}" for b in bs)

    def parse(self, text: str, *, strict: bool = False) -> ParsedText:
        if not isinstance(text, str):
            raise TypeError(f"expected a str, got {type(text).__name__}")
        s = text
        size = len(s)
        log = IssueLog(s, strict)
        out = TextBuilder()
        spans: list[GroundedSpan] = []
        seg = i = 0
        while True:
            k = s.find("<loc", i)
            if k < 0:
                break
            end, vals = read_index_tokens(s, k, "<loc", 4)
            if len(vals) < 4:
                i = k + 1
                continue
            issues: list[str] = []
            end, segs = read_index_tokens(s, end, "<seg", 16)
            box = None
            if max(vals) > 1023:
                log.add(k, f"<loc> value above 1023 in {vals}; box dropped", issues)
            else:
                y1, x1, y2, x2 = (decode(v) for v in vals)
                box, swapped = box_from_corners(x1, y1, x2, y2)
                if swapped:
                    log.add(k, f"swapped corners in {vals} mended", issues)
            t = k
            while t > seg and s[t - 1] in " \t":
                t -= 1
            out.emit(s[seg:t])
            j = end
            while j < size and s[j] in " \t":
                j += 1
            a = j
            while j < size and s[j] not in ";<>\n":
                j += 1
            label_raw = s[a:j]
            if out.length and label_raw.strip() and not out.last_char().isspace():
                out.emit(" ")
            start = out.length
            out.emit(label_raw.rstrip())
            span = make_span(label_raw.rstrip(), start, [box] if box is not None else [], [], issues)
            if not span.phrase:
                log.add(k, "<loc> box without a label", issues)
            spans.append(span)
            # " ; " between detections
            e = j
            while e < size and s[e] in " \t":
                e += 1
            if e < size and s[e] == ";":
                e += 1
                while e < size and s[e] in " \t":
                    e += 1
                j = e
                if j < size and out.length:
                    out.emit(" ")
            else:
                j = a + len(label_raw.rstrip())
            seg = i = j
        out.emit(s[seg:])
        return ParsedText(out.build(), spans, log.all)
