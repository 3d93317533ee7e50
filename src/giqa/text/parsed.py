"""Result types of every grounded-text parser: :class:`ParsedText` and :class:`GroundedSpan`.

Plain frozen dataclasses (no validation beyond what the parsers guarantee): a parser builds
them once and callers only read them. Boxes are :class:`giqa.types.Box` (normalised xyxy in
``[0, 1]``); ``start``/``end`` are ``[start, end)`` character offsets into ``ParsedText.text``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from giqa.types import Box, GroundedPhrase

__all__ = ["GroundedSpan", "ParsedText"]


@dataclass(frozen=True)
class GroundedSpan:
    """One grounded mention found in a text.

    ``phrase`` is the mention with surrounding whitespace removed (``""`` for coordinates that
    came without a phrase); ``text[start:end] == phrase``. ``boxes`` are the readable boxes
    (unreadable or out-of-range ones are dropped and reported in ``issues``). ``indices`` are
    the integer pairs as written, one per box, for the index formats (giqa grid
    ``(idx_l, idx_r)``, Kosmos-2 ``(ul, lr)`` patches); empty for the other formats.
    """

    phrase: str
    start: int
    end: int
    boxes: list[Box] = field(default_factory=list)
    indices: list[tuple[int, int]] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ParsedText:
    """A grounded text split into its clean text and its grounded mentions.

    ``text`` is the text with every coordinate group and grounding bracket removed (what
    BLEU and the LLM judge see). ``spans`` are sorted by ``start``. ``issues`` holds every
    problem the (lenient) parser worked around, each starting with ``"offset N:"``, the
    character offset in the *input* text.
    """

    text: str
    spans: list[GroundedSpan] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)

    def to_phrases(self) -> list[GroundedPhrase]:
        """Spans as :class:`giqa.types.GroundedPhrase` (``span`` set; phrase-less spans skipped)."""
        return [
            GroundedPhrase(phrase=s.phrase, boxes=tuple(s.boxes), span=(s.start, s.end))
            for s in self.spans
            if s.phrase
        ]

    @property
    def boxes(self) -> list[Box]:
        """Every readable box, in text order (phrase-less ones included)."""
        return [b for s in self.spans for b in s.boxes]

    @property
    def ok(self) -> bool:
        """True when the parser found nothing to work around."""
        return not self.issues
