"""Qwen-VL: ``<ref>the dog</ref><box>(221,425),(511,889)</box>`` with integers in ``[0, 1000)``.

Follows Qwen-VL's ``tokenization_qwen.py`` (``from_list_format`` writes
``<ref>..</ref>`` then one ``<box>(%d,%d),(%d,%d)</box>`` per box; ``draw_bbox_on_latest_picture``
reads a value back as ``v / 1000 * size``) and the paper ("normalized within [0, 1000)").

* encode: ``q = min(round(v * 1000), 999)`` (Python ``round``: ties to even);
* decode: ``v = q / 1000`` (values up to 1000 are accepted; Qwen-VL's RefCOCO evaluation
  divides by 999 instead, a difference of at most 0.1 %).
"""

from __future__ import annotations

from typing import Any, Sequence

from giqa.types import Box
from giqa.text.formats._base import BoxFormat, _check_text, make_span
from giqa.text.grounded import as_boxes
from giqa.text.parsed import GroundedSpan, ParsedText
from giqa.text.scanner import IssueLog, TextBuilder, box_from_corners

_REF, _END_REF, _BOX, _END_BOX = "<ref>", "</ref>", "<box>", "</box>"


def encode(v: float) -> int:
    return min(max(round(v * 1000), 0), 999)


def decode(q: int) -> float:
    return q / 1000


def _read_box(s: str, k: int, log: IssueLog, issues: list[str]) -> tuple[int, Box | None] | None:
    """The ``<box>..</box>`` at ``k``: ``(end, box or None)`` or None when it is not one."""
    e = s.find("<", k + len(_BOX))
    if e < 0:
        log.add(k, "truncated <box> at the end of the text", issues)
        return len(s), None
    if not s.startswith(_END_BOX, e):
        return None
    body = s[k + len(_BOX):e]
    nums: list[str] = []
    cur: list[str] = []
    for ch in body:
        if "0" <= ch <= "9":
            cur.append(ch)
        else:
            if cur:
                nums.append("".join(cur))
                cur = []
            if ch not in "(), \t":
                log.add(k, f"unreadable box {body!r}; dropped", issues)
                return e + len(_END_BOX), None
    if cur:
        nums.append("".join(cur))
    if len(nums) != 4:
        log.add(k, f"box {body!r} does not hold 4 numbers; dropped", issues)
        return e + len(_END_BOX), None
    if body != "({},{}),({},{})".format(*nums):
        log.add(k, f"non-canonical box syntax {body!r}", issues)
    vals = [int(v) if len(v) <= 9 else 10**9 for v in nums]
    if max(vals) > 1000:
        log.add(k, f"box {body!r} has values above 1000; dropped", issues)
        return e + len(_END_BOX), None
    box, swapped = box_from_corners(*(decode(v) for v in vals))
    if swapped:
        log.add(k, f"swapped corners in {body!r} mended", issues)
    return e + len(_END_BOX), box


class QwenVL(BoxFormat):
    """Qwen-VL's ``<ref>``/``<box>`` tags, coordinates as integers in ``[0, 1000)``."""

    name = "qwen-vl"
    rounding = "q = min(round(v * 1000), 999) (ties to even); decoded as q / 1000"
    source = "Qwen-VL tokenization_qwen.py (from_list_format, draw_bbox_on_latest_picture) and the Qwen-VL paper"

    def format_boxes(self, boxes: Sequence[Any]) -> str:
        bs = as_boxes(boxes, nonempty=True)
        return "".join(
            _BOX + "({},{}),({},{})".format(*(encode(v) for v in b.as_tuple())) + _END_BOX for b in bs
        )

    def format_phrase(self, phrase: str, boxes: Sequence[Any]) -> str:
        _check_text(phrase, "<>", "Qwen-VL")
        return f"{_REF}{phrase}{_END_REF}{self.format_boxes(boxes)}"

    def _boxes_after(self, s: str, i: int, log: IssueLog, issues: list[str]) -> tuple[int, list[Box], bool]:
        boxes: list[Box] = []
        found = False
        while True:
            j = i
            while j < len(s) and s[j] in " \t":
                j += 1
            if not s.startswith(_BOX, j):
                return i, boxes, found
            got = _read_box(s, j, log, issues)
            if got is None:
                return i, boxes, found
            found = True
            i, box = got
            if box is not None:
                boxes.append(box)

    def parse(self, text: str, *, strict: bool = False) -> ParsedText:
        if not isinstance(text, str):
            raise TypeError(f"expected a str, got {type(text).__name__}")
        s = text
        log = IssueLog(s, strict)
        out = TextBuilder()
        spans: list[GroundedSpan] = []
        seg = i = 0
        while True:
            k = s.find("<", i)
            if k < 0:
                break
            if s.startswith(_REF, k):
                e = s.find("<", k + len(_REF))
                if e >= 0 and not s.startswith(_END_REF, e):
                    i = k + 1
                    continue
                issues: list[str] = []
                out.emit(s[seg:k])
                if e < 0:  # "<ref>the d" cut by the end of the text
                    log.add(k, "truncated <ref> at the end of the text", issues)
                    phrase_raw, end = s[k + len(_REF):], len(s)
                else:
                    phrase_raw, end = s[k + len(_REF):e], e + len(_END_REF)
                start = out.length
                out.emit(phrase_raw)
                end, boxes, found = self._boxes_after(s, end, log, issues)
                if not found and e >= 0:
                    log.add(k, "<ref> without a <box>", issues)
                spans.append(make_span(phrase_raw, start, boxes, [], issues))
                seg = i = end
            elif s.startswith(_BOX, k):
                issues = []
                end, boxes, found = self._boxes_after(s, k, log, issues)
                if not found:
                    i = k + 1
                    continue
                log.add(k, "<box> without a <ref>", issues)
                t = k
                while t > seg and s[t - 1] in " \t":
                    t -= 1
                out.emit(s[seg:t])
                spans.append(GroundedSpan("", out.length, out.length, boxes, [], issues))
                seg = i = end
            else:
                i = k + 1
        out.emit(s[seg:])
        return ParsedText(out.build(), spans, log.all)
