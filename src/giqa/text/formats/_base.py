"""The :class:`BoxFormat` base shared by every model's text box format."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from giqa.errors import FormatError
from giqa.types import Box, GroundedPhrase
from giqa.text.grounded import fuse_report
from giqa.text.parsed import GroundedSpan, ParsedText

__all__ = ["BoxFormat", "render"]


class BoxFormat:
    """One model's way of writing boxes into text (read and write).

    Subclasses set ``name``, ``rounding`` (the exact quantisation rule, in words), ``source``
    (the reference code followed) and implement :meth:`format_boxes` and :meth:`parse`.
    Boxes are :class:`giqa.types.Box` or ``(4,)`` sequences, normalised xyxy in ``[0, 1]``.
    """

    name: ClassVar[str] = ""
    rounding: ClassVar[str] = ""
    source: ClassVar[str] = ""

    # -- writing ---------------------------------------------------------------------------
    def format_box(self, box: Any) -> str:
        """One box in this format's syntax."""
        return self.format_boxes([box])

    def format_boxes(self, boxes: Sequence[Any]) -> str:
        """The coordinate group of one phrase (all its boxes)."""
        raise NotImplementedError

    def format_phrase(self, phrase: str, boxes: Sequence[Any]) -> str:
        """A phrase with its boxes, e.g. ``<ref>dog</ref><box>(1,2),(3,4)</box>``."""
        raise NotImplementedError

    def fuse(self, text: str, phrases: Sequence[GroundedPhrase]) -> str:
        """Write ``phrases`` into ``text`` at their mentions (see :func:`giqa.text.fuse`)."""
        return fuse_report(text, phrases, formatter=self.format_phrase).text

    # -- reading ---------------------------------------------------------------------------
    def parse(self, text: str, *, strict: bool = False) -> ParsedText:
        """Clean text plus grounded spans; ``strict`` raises :class:`giqa.errors.ParseError`."""
        raise NotImplementedError

    def strip(self, text: str) -> str:
        """The clean text (never raises on malformed input)."""
        return self.parse(text).text

    def render(self, parsed: ParsedText) -> str:
        """Write a parsed text back in this format (the second half of :func:`convert`)."""
        return render(self, parsed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _check_text(phrase: str, forbidden: str, fmt: str) -> str:
    if not isinstance(phrase, str):
        raise TypeError(f"phrase must be a str, got {type(phrase).__name__}")
    if not phrase.strip():
        raise FormatError("phrase is empty")
    bad = sorted(set(forbidden).intersection(phrase))
    if bad:
        raise FormatError(f"phrase {phrase!r} contains {bad!r}, which the {fmt} format cannot hold")
    return phrase


def render(fmt: BoxFormat, parsed: ParsedText) -> str:
    """``parsed.text`` with each span's boxes written in ``fmt`` (spans without boxes stay plain)."""
    text = parsed.text
    parts: list[str] = []
    pos = 0
    for span in sorted(parsed.spans, key=lambda s: s.start):
        if not span.boxes or span.start < pos:
            continue
        parts.append(text[pos:span.start])
        if span.phrase:
            parts.append(fmt.format_phrase(text[span.start:span.end], span.boxes))
        else:
            if parts and parts[-1] and not parts[-1][-1].isspace():
                parts.append(" ")
            parts.append(fmt.format_boxes(span.boxes))
        pos = span.end
    parts.append(text[pos:])
    return "".join(parts)


def make_span(phrase_raw: str, start: int, boxes: list[Box], indices, issues: list[str]) -> GroundedSpan:
    """A span for ``phrase_raw`` emitted at clean offset ``start`` (whitespace trimmed)."""
    lead = len(phrase_raw) - len(phrase_raw.lstrip())
    phrase = phrase_raw.strip()
    s = start + lead
    return GroundedSpan(phrase, s, s + len(phrase), boxes, list(indices), issues)


def read_index_tokens(s: str, i: int, prefix: str, limit: int | None = None) -> tuple[int, list[int]]:
    """Consecutive ``<prefixDIGITS>`` tokens from ``s[i:]`` (at most ``limit``): ``(end, values)``.

    Linear in the text read; a run of more than 9 digits reads as 10**9 (out of every range).
    """
    vals: list[int] = []
    size = len(s)
    while (limit is None or len(vals) < limit) and s.startswith(prefix, i):
        j = i + len(prefix)
        d = j
        while d < size and "0" <= s[d] <= "9":
            d += 1
        if d == j or d >= size or s[d] != ">":
            break
        vals.append(int(s[j:d]) if d - j <= 9 else 10**9)
        i = d + 1
    return i, vals
