"""giqa's own grounded-text format: write boxes into text, read them back, fuse them into text.

Grid style (the paper's Disc-Coord, default): ``[tower](<35, 319>)``; several boxes of one
phrase share the parentheses: ``[buildings](<60, 230>, <111, 219>)``. ``<idx_l, idx_r>`` are the
top-left and bottom-right cells of an ``n`` x ``m`` row-major grid
(:class:`giqa.geometry.GridCodec`). Norm style (the paper's Norm-Coord ablation):
``[phrase](0.12, 0.30, 0.55, 0.80)``, several boxes separated by ``"; "``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Optional, Sequence

import numpy as np

from giqa.errors import FormatError, InvalidBoxError
from giqa.types import Box, GroundedPhrase
from giqa.text.mentions import iter_mentions
from giqa.text.parsed import ParsedText
from giqa.text.scanner import grid_codec, scan_giqa

__all__ = [
    "FuseReport",
    "as_boxes",
    "format_boxes",
    "format_phrase",
    "fuse",
    "fuse_report",
    "parse_grounded",
]

Style = Literal["grid", "norm"]
_FORBIDDEN = frozenset("[]\n")


def as_boxes(boxes: Iterable[Any], *, nonempty: bool = False) -> list[Box]:
    """``Box`` objects or ``(4,)`` sequences (normalised xyxy) -> ``list[Box]`` (validated).

    Raises :class:`InvalidBoxError` for anything that is not a valid normalised box, and
    (``nonempty=True``, as every writer asks) :class:`FormatError` when there is no box.
    """
    out = _as_boxes(boxes)
    if nonempty and not out:
        raise FormatError("no boxes to write")
    return out


def _as_boxes(boxes: Iterable[Any]) -> list[Box]:
    if isinstance(boxes, Box):
        raise TypeError("expected a sequence of boxes, got a single Box (wrap it in a list)")
    if isinstance(boxes, np.ndarray):
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InvalidBoxError(f"expected (N, 4) boxes as xyxy, got {boxes.shape}")
        return [Box.from_xyxy(row.tolist()) for row in boxes]
    out = []
    for b in boxes:
        if isinstance(b, Box):
            out.append(b)
        elif isinstance(b, (int, float, np.number)):
            raise InvalidBoxError("expected a sequence of boxes, got a single box's numbers (wrap it in a list)")
        else:
            try:
                out.append(Box.from_xyxy(b))
            except TypeError as exc:
                raise InvalidBoxError(f"a box must be 4 numbers (x1, y1, x2, y2), got {b!r}") from exc
    return out


def _check_phrase(phrase: str) -> str:
    if not isinstance(phrase, str):
        raise TypeError(f"phrase must be a str, got {type(phrase).__name__}")
    if not phrase.strip():
        raise FormatError("phrase is empty")
    bad = _FORBIDDEN.intersection(phrase)
    if bad:
        raise FormatError(f"phrase {phrase!r} contains {sorted(bad)!r}, which the [phrase](...) format cannot hold")
    return phrase


def _check_style(style: str) -> None:
    if style not in ("grid", "norm"):
        raise ValueError(f"style must be 'grid' or 'norm', got {style!r}")


def format_boxes(boxes: Sequence[Any], *, style: Style = "grid", n: int = 20, m: int = 20) -> str:
    """The coordinate group alone: ``"(<35, 319>, <60, 230>)"`` or ``"(0.12, 0.30, 0.55, 0.80)"``.

    Grid indices come from :meth:`giqa.geometry.GridCodec.encode` (floor per axis, border
    clamped); norm values are written with two decimals (``format(v, ".2f")``: the exact binary
    value rounded half to even, so 0.125 -> ``0.12``, 0.375 -> ``0.38``).
    """
    _check_style(style)
    bs = as_boxes(boxes, nonempty=True)
    if style == "grid":
        # The scalar encoder applies GridCodec.encode's rules to one float64 box without
        # building arrays (a few boxes per phrase: array set-up would dominate).
        encode_box = grid_codec(n, m).encode_box
        body = ", ".join("<%d, %d>" % encode_box(b.x1, b.y1, b.x2, b.y2) for b in bs)
    else:
        body = "; ".join(", ".join(f"{v:.2f}" for v in b.as_tuple()) for b in bs)
    return f"({body})"


def format_phrase(phrase: str, boxes: Sequence[Any], *, style: Style = "grid", n: int = 20, m: int = 20) -> str:
    """``[phrase](<a, b>, <c, d>)`` (grid) or ``[phrase](x1, y1, x2, y2; ...)`` (norm).

    ``boxes``: :class:`giqa.types.Box` objects or ``(4,)`` sequences, normalised xyxy.
    Raises :class:`FormatError` for an empty phrase, one containing ``[``, ``]`` or a line
    break, or no boxes; :class:`InvalidBoxError` for a bad box.

    >>> format_phrase("tower", [(0.78, 0.08, 0.97, 0.77)])
    '[tower](<35, 319>)'
    """
    return f"[{_check_phrase(phrase)}]{format_boxes(boxes, style=style, n=n, m=m)}"


def parse_grounded(text: str, *, n: int = 20, m: int = 20, strict: bool = False) -> ParsedText:
    """Split giqa grounded text into clean text and grounded spans (grid and norm style).

    ``"the [tower](<35, 319>) is"`` -> ``ParsedText(text="the tower is", spans=[GroundedSpan(
    "tower", 4, 9, boxes=[cell-centre box], indices=[(35, 319)])])``. Grid boxes decode to cell
    centres on the ``n`` x ``m`` grid; the style is told apart per group (``<a, b>`` vs four
    decimals).

    Lenient (default) works around and records in ``issues``: any spacing (``< 35 ,319 >``,
    ``[tower] (<35,319>)``), missing ``<``/``>``, ``(``/``)``, ``[`` or ``]`` where the intent is
    unambiguous, out-of-range or non-integer indices (box dropped), swapped corners (mended),
    coordinates without a phrase (kept as a span with phrase ``""``), truncated output at the
    end of the text. ``strict=True`` raises :class:`giqa.errors.ParseError` at the first such
    issue, with its offset, line and column. Runs in time linear in ``len(text)``.
    """
    return scan_giqa(text, n=n, m=m, strict=strict)


# -- fusion --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FuseReport:
    """What :func:`fuse_report` did: the fused ``text``, the phrases written (with the
    ``[start, end)`` range of the mention in the input text) and those left out with why."""

    text: str
    placed: list[tuple[GroundedPhrase, tuple[int, int]]] = field(default_factory=list)
    skipped: list[tuple[GroundedPhrase, str]] = field(default_factory=list)


def _overlaps(a: int, b: int, claims: list) -> bool:
    return any(a < c[1] and c[0] < b for c in claims)


def _find_mention(text: str, phrase: str, claims) -> Optional[tuple[int, int]]:
    """The first mention (:mod:`giqa.text.mentions`) not overlapping a phrase already placed."""
    for a, b in iter_mentions(phrase, text):
        if not _overlaps(a, b, claims):
            return a, b
    return None


def fuse_report(
    text: str,
    phrases: Sequence[GroundedPhrase],
    *,
    style: Style = "grid",
    n: int = 20,
    m: int = 20,
    formatter: Any = None,
) -> FuseReport:
    """Like :func:`fuse`, and say which phrases were written where and which were left out.

    ``formatter(mention, boxes) -> str`` replaces the giqa writer (used to fuse in another
    model's format, see :meth:`giqa.text.formats.BoxFormat.fuse`).
    """
    _check_style(style)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    write = formatter or (lambda mention, boxes: format_phrase(mention, boxes, style=style, n=n, m=m))
    claims: list[tuple[int, int, GroundedPhrase, str]] = []
    skipped: list[tuple[GroundedPhrase, str]] = []
    order = [p for p in phrases if p.span is not None] + [p for p in phrases if p.span is None]
    for p in order:
        if not p.boxes:
            skipped.append((p, "no boxes"))
            continue
        if p.span is not None:
            a, b = p.span
            if b > len(text) or a == b:
                skipped.append((p, f"span {p.span} lies outside the text (length {len(text)})"))
                continue
            if _overlaps(a, b, claims):
                skipped.append((p, f"span {p.span} overlaps a phrase already placed"))
                continue
        else:
            needle = p.phrase.strip()
            found = _find_mention(text, needle, claims) if needle else None
            if found is None:
                skipped.append((p, "no free word-bounded mention in the text"))
                continue
            a, b = found
        mention = text[a:b]
        try:
            piece = write(mention, p.boxes)
        except FormatError as exc:
            skipped.append((p, f"mention {mention!r} cannot be written: {exc}"))
            continue
        claims.append((a, b, p, piece))
    claims.sort(key=lambda c: c[0])
    parts: list[str] = []
    placed: list[tuple[GroundedPhrase, tuple[int, int]]] = []
    pos = 0
    for a, b, p, piece in claims:
        parts.append(text[pos:a])
        parts.append(piece)
        placed.append((p, (a, b)))
        pos = b
    parts.append(text[pos:])
    return FuseReport("".join(parts), placed, skipped)


def fuse(
    text: str,
    phrases: Sequence[GroundedPhrase],
    *,
    style: Style = "grid",
    n: int = 20,
    m: int = 20,
) -> str:
    """Write each phrase's boxes into ``text`` at its mention (the paper's Stage-4 fusion).

    The mention is the phrase's ``span`` (``[start, end)`` in ``text``) when set, else the
    first mention not already grounded, by the rule of :mod:`giqa.text.mentions` (case
    folding, whole words, regular plurals; the one DES and the VQA filter use too). The mention
    keeps the text's own spelling: ``fuse("The Towers are tilted.", [GroundedPhrase(
    phrase="tower", boxes=...)])`` -> ``"The [Towers](<35, 319>) are tilted."``. Phrases with no
    boxes or no mention are left out; :func:`fuse_report` says which and why.
    """
    return fuse_report(text, phrases, style=style, n=n, m=m).text
