"""Hand-written linear scanner for giqa grounded text: ``[phrase](<a, b>, <c, d>)`` and
``[phrase](0.12, 0.30, 0.55, 0.80; ...)``.

Why not one big regex: model output is untrusted and often malformed; a backtracking pattern
with nested optional groups can go quadratic or worse on inputs like ``"[a](<" * 200000``.
The general scanner's only regexes are a single-character class used to jump to the next
character that can start grounding syntax (``[ ] ( < \\n``) and the strict canonical group;
everything else is a forward scan. A failed attempt at a coordinate group stops at the first
character the group grammar cannot contain, and such regions hold at most one trigger
character, so every input character is looked at a bounded number of times: time is linear in
the input size. Before it, a fast path reads texts whose every mention is canonical (what
giqa's own data and well-behaved models write): split at ``[``, one anchored match per
mention (repetitions unambiguous); any other text goes to the general scanner (same result,
tested).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from giqa.errors import GridIndexError, InvalidBoxError, ParseError
from giqa.types import Box
from giqa.text.parsed import GroundedSpan, ParsedText

__all__ = ["IssueLog", "TextBuilder", "grid_codec", "scan_giqa", "box_from_corners", "canonical_mentions"]

_TRIGGER = re.compile(r"[\[\]<(\n]")
# The canonical grid group "(<a, b>, <c, d>)": every repetition starts with the fixed token
# ", <" and digit runs are bounded, so a match attempt is linear (no ambiguous backtracking).
_FAST_GRID = re.compile(r"\(<\d{1,9}, \d{1,9}>(?:, <\d{1,9}, \d{1,9}>)*\)")
_INT = re.compile(r"\d+")
# For _scan_canonical: a text whose every "[" opens a whole canonical mention
# "[phrase](<a, b>, ...)" (its phrase holds no character the scanner stops at, so the general
# scanner reads it as this match does) and whose other text holds nothing that would make the
# general scanner act: a "]", or a "(" / "<" that may start a coordinate group (scan_giqa's
# skip test). The text is split at "[" (a substring search), each piece must start with the
# rest of a mention (an anchored match whose repetitions are unambiguous), and the text
# between mentions is searched for the active characters only where one occurs. Linear.
_MENTION_TAIL = re.compile(r"([^\[\]<(\n]*)\](\(<\d{1,9}, \d{1,9}>(?:, <\d{1,9}, \d{1,9}>)*\))")
_ACTIVE_OUTSIDE = re.compile(r"\([ \t]*[0-9.<-]|<[ \t]*[0-9.-]")
_DIGITS = frozenset("0123456789")
_NUM_CHARS = frozenset("0123456789.-")
_GROUP_WS = frozenset(" \t\r\n")
_SPACE = frozenset(" \t")
# Longest digit run converted with int(); longer runs are out of range by construction
# (and int() of a 5000-digit string raises on Python >= 3.11).
_MAX_INT_DIGITS = 9


@functools.lru_cache(maxsize=16)
def grid_codec(n: int, m: int):
    """The shared :class:`giqa.geometry.GridCodec` for an ``n`` x ``m`` grid."""
    from giqa.geometry import GridCodec

    return GridCodec(n, m)


class IssueLog:
    """Collects parse issues; in strict mode the first one raises :class:`ParseError`."""

    def __init__(self, text: str, strict: bool) -> None:
        self.text = text
        self.strict = strict
        self.all: list[str] = []

    def add(self, pos: int, msg: str, sink: Optional[list[str]] = None) -> None:
        if self.strict:
            line = self.text.count("\n", 0, pos) + 1
            col = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
            raise ParseError(f"{msg} (offset {pos}, line {line}, column {col})")
        entry = f"offset {pos}: {msg}"
        self.all.append(entry)
        if sink is not None:
            sink.append(entry)


class TextBuilder:
    """The clean text under construction (append-only, tracks its length)."""

    __slots__ = ("parts", "length")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0

    def emit(self, s: str) -> None:
        if s:
            self.parts.append(s)
            self.length += len(s)

    def last_char(self) -> str:
        return self.parts[-1][-1] if self.parts else ""

    def build(self) -> str:
        return "".join(self.parts)


def box_from_corners(x1: float, y1: float, x2: float, y2: float) -> tuple[Box, bool]:
    """A :class:`Box` from possibly swapped corners; returns ``(box, swapped)``.

    Raises :class:`InvalidBoxError` when a coordinate is outside ``[0, 1]``.
    """
    swapped = x1 > x2 or y1 > y2
    if x1 > x2:
        x1, x2 = x2, x1
    if y1 > y2:
        y1, y2 = y2, y1
    return Box.from_xyxy((x1, y1, x2, y2)), swapped


# -- coordinate groups ---------------------------------------------------------------------


@dataclass
class _Group:
    end: int
    boxes: list[Box] = field(default_factory=list)
    indices: list[tuple[int, int]] = field(default_factory=list)
    issues: list[tuple[int, str]] = field(default_factory=list)


class _Lexer:
    """Lazy tokens of a coordinate group: numbers and ``< > , ;``, up to ``)``.

    Tokens are scanned only as far as a reader asks, so a failed attempt costs only the
    characters up to the failure. Without parentheses a group does not cross a line break.
    """

    __slots__ = ("s", "i", "has_paren", "toks", "closed", "stopped")

    def __init__(self, s: str, i: int, has_paren: bool) -> None:
        self.s, self.i, self.has_paren = s, i, has_paren
        self.toks: list[tuple[str, int, int]] = []
        self.closed = False
        self.stopped = False

    def _next(self) -> bool:
        s, i, n = self.s, self.i, len(self.s)
        while i < n:
            c = s[i]
            if c in _GROUP_WS:
                if not self.has_paren and c not in _SPACE:
                    break
                i += 1
            elif c in _NUM_CHARS:
                j = i + 1
                while j < n and s[j] in _NUM_CHARS:
                    j += 1
                self.toks.append(("num", i, j))
                self.i = j
                return True
            elif c in "<>,;":
                self.toks.append((c, i, i + 1))
                self.i = i + 1
                return True
            elif c == ")" and self.has_paren:
                self.closed = True
                i += 1
                break
            else:
                break
        self.i = i
        self.stopped = True
        return False

    def get(self, k: int) -> Optional[tuple[str, int, int]]:
        while len(self.toks) <= k and not self.stopped:
            self._next()
        return self.toks[k] if k < len(self.toks) else None

    def kind(self, k: int) -> str:
        t = self.get(k)
        return t[0] if t is not None else ""

    def match(self, k: int, kind: str) -> Optional[tuple[str, int, int]]:
        """Token ``k`` when it is of ``kind``, else None."""
        t = self.get(k)
        return t if t is not None and t[0] == kind else None

    def sequence(self, k: int, kinds: Sequence[str]) -> Optional[list[tuple[str, int, int]]]:
        """Tokens ``k, k+1, ...`` when their kinds are ``kinds`` (scanned no further than
        the first mismatch), else None."""
        out = []
        for d, kind in enumerate(kinds):
            t = self.match(k + d, kind)
            if t is None:
                return None
            out.append(t)
        return out

    def drain(self) -> None:
        while not self.stopped:
            self._next()

    @property
    def at_eof(self) -> bool:
        return self.stopped and not self.closed and self.i >= len(self.s)


def _int_value(tok: str) -> Optional[int]:
    if not tok or not all(ch in _DIGITS for ch in tok):
        return None
    if len(tok) > _MAX_INT_DIGITS:
        return 10**_MAX_INT_DIGITS  # out of range for every grid
    return int(tok)


def _float_value(tok: str) -> Optional[float]:
    head, _, frac = tok.partition(".")
    sign = ""
    if head.startswith("-"):
        sign, head = "-", head[1:]
    if not (head or frac) or not all(ch in _DIGITS for ch in head + frac):
        return None
    if len(head) > 6:
        return float("inf")
    return float(f"{sign}{head or '0'}.{frac[:17] or '0'}")


_TRUNCATED = "truncated coordinates at the end of the text"


def _scan_group(s: str, j: int, *, after_phrase: bool, n: int, m: int) -> Optional[_Group]:
    """Read a coordinate group starting at ``j`` (right after ``]``, or at a bare ``(``/``<``).

    Returns None when there is no group there (the text is then left as it is).
    """
    size = len(s)
    if after_phrase:
        fast = _FAST_GRID.match(s, j)
        if fast is not None:
            g = _fast_grid(s, j, fast.end(), n, m)
            if g is not None:
                return g
    k = j
    while k < size and s[k] in _SPACE:
        k += 1
    if k >= size:
        return None
    has_paren = s[k] == "("
    if not has_paren and s[k] != "<":
        return None
    # Cheap rejection before building a lexer: a group's first number must come right after
    # "(", "<" or "(<" (spaces allowed).
    q = k + 1
    while q < size and s[q] in _GROUP_WS:
        q += 1
    if has_paren and q < size and s[q] == "<":
        q += 1
        while q < size and s[q] in _GROUP_WS:
            q += 1
    if q < size and s[q] not in _NUM_CHARS:
        return None
    lex = _Lexer(s, k + 1 if has_paren else k, has_paren)
    first = lex.get(0)
    if first is None:
        if has_paren and after_phrase and lex.at_eof:
            g = _Group(end=size)
            g.issues.append((j, _TRUNCATED))
            return g
        return None
    if first[0] == "<":
        style = "grid"
    elif first[0] == "num" and has_paren:
        style = "norm" if "." in s[first[1]:first[2]] else "grid"
        if style == "grid" and not after_phrase:
            return None
    else:
        return None
    g = _read_grid(s, lex, n, m) if style == "grid" else _read_norm(s, lex)
    consumed = g.end  # end of the last complete box, or -1
    if consumed < 0:
        if has_paren and after_phrase:
            lex.drain()
            if lex.at_eof:
                g.end = size
                g.issues.append((j, _TRUNCATED))
                return g
        return None
    if has_paren:
        lex.drain()
        if lex.closed:
            if lex.toks and consumed < lex.toks[-1][2]:
                g.issues.append((consumed, "unreadable content in the coordinates ignored"))
            g.end = lex.i
        elif lex.at_eof:
            g.issues.append((j, _TRUNCATED + " (missing ')')"))
            g.end = size
        else:
            g.issues.append((consumed, "missing ')'"))
    else:
        g.issues.append((j, "coordinates without parentheses"))
    if lex.closed and not g.issues:
        canonical = _canonical(s, lex.toks, style)
        if canonical is not None and s[j:g.end] != canonical:
            g.issues.append((j, f"non-canonical coordinate syntax {s[j:g.end]!r} (expected {canonical!r})"))
    return g


@functools.lru_cache(maxsize=1 << 14)  # about 0.8 KB per entry: 13 MB at most
def _grid_box(n: int, m: int, a: int, b: int) -> Box:
    """The cell-centre :class:`Box` of the ordered in-range pair ``<a, b>`` (shared, immutable).

    Invariant the caller guarantees (``_fast_grid`` checks it): ``0 <= a, b < n * m``,
    ``a % n <= b % n`` and ``a // n <= b // n``. ``decode_pair`` then gives cell centres
    ``(col + 0.5) / n`` and ``(row + 0.5) / m``: finite, inside ``(0, 1)`` and ordered, so the
    Box is built without re-validation. Cached: model output repeats pairs a lot (100,000
    synthetic bench items hold 9,400 distinct ones); Box is frozen, so spans may share one.
    """
    x1, y1, x2, y2 = grid_codec(n, m).decode_pair(a, b)
    return Box.model_construct(x1=x1, y1=y1, x2=x2, y2=y2)


# Longest canonical group whose decoding is cached (longer ones are decoded each time, so the
# cache holds no large strings).
_CACHED_GROUP_CHARS = 160


@functools.lru_cache(maxsize=1 << 15)  # about 0.5 KB per entry: 16 MB at most
def _canonical_boxes(group: str, n: int, m: int) -> Optional[tuple[tuple[Box, ...], tuple[tuple[int, int], ...]]]:
    """``(boxes, index pairs)`` of a canonical group ``(<a, b>, ...)``; None when a pair is out
    of range or swapped (the general reader reports it). Cached: model output repeats groups
    (20,000 synthetic bench items hold 6,800 distinct ones among 50,000)."""
    cells = n * m
    vals = list(map(int, _INT.findall(group)))
    pairs = tuple(zip(vals[::2], vals[1::2]))
    for a, b in pairs:
        if a >= cells or b >= cells or a % n > b % n or a // n > b // n:
            return None
    return tuple([_grid_box(n, m, a, b) for a, b in pairs]), pairs


def _decode_canonical(group: str, n: int, m: int) -> Optional[tuple[tuple[Box, ...], tuple[tuple[int, int], ...]]]:
    """:func:`_canonical_boxes`, cached for groups up to ``_CACHED_GROUP_CHARS`` long."""
    if len(group) <= _CACHED_GROUP_CHARS:
        return _canonical_boxes(group, n, m)
    return _canonical_boxes.__wrapped__(group, n, m)


def _fast_grid(s: str, j: int, end: int, n: int, m: int) -> Optional[_Group]:
    """The canonical group ``s[j:end]``; None when a box needs the slow path's care."""
    got = _decode_canonical(s[j:end], n, m)
    if got is None:
        return None
    return _Group(end, list(got[0]), list(got[1]))


def _canonical(s: str, toks, style: str) -> Optional[str]:
    nums = [s[a:b] for kind, a, b in toks if kind == "num"]
    if style == "grid":
        if len(nums) % 2:
            return None
        body = ", ".join(f"<{nums[i]}, {nums[i + 1]}>" for i in range(0, len(nums), 2))
    else:
        if len(nums) % 4:
            return None
        body = "; ".join(", ".join(nums[i:i + 4]) for i in range(0, len(nums), 4))
    return f"({body})"


def _read_grid(s: str, lex: _Lexer, n: int, m: int) -> _Group:
    g = _Group(end=-1)
    size = len(s)
    p = 0
    while True:
        start_tok = lex.get(p)
        if start_tok is None:
            break
        lt = start_tok[0] == "<"
        q = p + 1 if lt else p
        pair = lex.sequence(q, ("num", ",", "num"))
        if pair is None:
            break
        a_tok, _, b_tok = pair
        close = lex.match(q + 3, ">")
        last = close if close is not None else b_tok
        if close is None and last[2] >= size:
            break  # "<35, 3" cut by the end of the text: the number may be incomplete
        p = q + 4 if close is not None else q + 3
        g.end = last[2]
        pos = start_tok[1]
        if not (lt and close is not None):
            g.issues.append((pos, "missing '<' or '>' around a box"))
        _grid_pair(g, s[a_tok[1]:a_tok[2]], s[b_tok[1]:b_tok[2]], pos, n, m)
        sep = lex.get(p)
        if sep is not None and sep[0] in (",", ";"):
            if sep[0] == ";":
                g.issues.append((sep[1], "';' between grid boxes (expected ',')"))
            p += 1
        elif sep is not None and sep[0] == "<":
            g.issues.append((sep[1], "missing ',' between boxes"))
        else:
            break
    return g


def _grid_pair(g: _Group, a_txt: str, b_txt: str, pos: int, n: int, m: int) -> None:
    """Add the box of the pair ``<a_txt, b_txt>`` to ``g``, or an issue saying why not."""
    cells = n * m
    a, b = _int_value(a_txt), _int_value(b_txt)
    if a is None or b is None:
        g.issues.append((pos, f"grid indices must be integers, got <{a_txt}, {b_txt}>; box dropped"))
        return
    if not (a < cells and b < cells):
        g.issues.append(
            (pos, f"grid index out of range [0, {cells}) in <{a_txt}, {b_txt}> on a {n}x{m} grid; box dropped")
        )
        return
    try:
        x1, y1, x2, y2 = grid_codec(n, m).decode_pair(a, b)
    except GridIndexError as exc:  # pragma: no cover - range checked above
        g.issues.append((pos, f"{exc}; box dropped"))
        return
    box, swapped = box_from_corners(x1, y1, x2, y2)
    if swapped:
        g.issues.append((pos, f"swapped corners in <{a}, {b}> mended"))
    g.boxes.append(box)
    g.indices.append((a, b))


_NORM_BOX = ("num", ",", "num", ",", "num", ",", "num")


def _read_norm(s: str, lex: _Lexer) -> _Group:
    g = _Group(end=-1)
    size = len(s)
    p = 0
    while (box_toks := lex.sequence(p, _NORM_BOX)) is not None:
        toks = box_toks[0::2]
        if toks[-1][2] >= size and not lex.closed:
            break  # the last number may be cut by the end of the text
        pos = toks[0][1]
        txt = [s[a:b] for _, a, b in toks]
        p += 7
        g.end = toks[-1][2]
        vals = [v for v in map(_float_value, txt) if v is not None]
        if len(vals) < 4:
            g.issues.append((pos, f"unreadable number in ({', '.join(txt)}); box dropped"))
        else:
            try:
                box, swapped = box_from_corners(*vals)
            except InvalidBoxError:
                g.issues.append((pos, f"coordinates ({', '.join(txt)}) outside [0, 1]; box dropped"))
            else:
                if swapped:
                    g.issues.append((pos, f"swapped corners in ({', '.join(txt)}) mended"))
                g.boxes.append(box)
        sep = lex.get(p)
        if sep is not None and sep[0] in (";", ","):
            if sep[0] == ",":
                g.issues.append((sep[1], "',' between normalised boxes (expected ';')"))
            p += 1
        else:
            break
    return g


# -- the text scanner ----------------------------------------------------------------------


def _span(out: TextBuilder, raw_phrase: str, g: _Group, log: IssueLog, pos: int, extra: list[tuple[int, str]]) -> GroundedSpan:
    lead = len(raw_phrase) - len(raw_phrase.lstrip())
    phrase = raw_phrase.strip()
    start = out.length + lead
    out.emit(raw_phrase)
    issues: list[str] = []
    if extra or g.issues:
        for p, msg in extra + g.issues:
            log.add(p, msg, issues)
    if not phrase:
        log.add(pos, "empty phrase", issues)
    return GroundedSpan(phrase, start, start + len(phrase), g.boxes, g.indices, issues)


def _scan_canonical(s: str, n: int, m: int) -> Optional[ParsedText]:
    """The parse of a text whose every mention is canonical and whose other text holds nothing
    the general scanner acts on; None for any other text (then the general scanner runs).

    The result equals the general scanner's: there, such a text's triggers are exactly each
    mention's "[" and "]" (the group after "]" taking ``_fast_grid``'s path) plus line breaks
    and parentheses that cannot start a group, which change nothing. A mention with an empty
    phrase or a box ``_fast_grid`` declines (out of range, swapped) has issues to report:
    None. A few operations per mention (:func:`_canonical_parts`).
    """
    parts = _canonical_parts(s)
    if parts is None:
        return None
    spans: list[GroundedSpan] = []
    length = 0
    for k in range(1, len(parts), 3):
        length += len(parts[k - 1])
        raw = parts[k]
        phrase = raw.strip()
        decoded = _decode_canonical(parts[k + 1], n, m)
        if decoded is None or not phrase:
            return None
        begin = length + raw.find(phrase[0])
        spans.append(GroundedSpan(phrase, begin, begin + len(phrase), list(decoded[0]), list(decoded[1]), []))
        length += len(raw)
    del parts[2::3]
    return ParsedText("".join(parts), spans, [])


def _canonical_parts(s: str) -> Optional[list[str]]:
    """``[text, raw phrase, group, text, ..., text]`` of a text whose every grounding-like
    piece is a canonical mention; None when something else would make the scanner act."""
    chunks = s.split("[")
    if not _inert(chunks[0]):
        return None
    parts = [chunks[0]]
    for chunk in chunks[1:]:
        mt = _MENTION_TAIL.match(chunk)
        if mt is None:
            return None
        rest = chunk[mt.end():]
        if not _inert(rest):
            return None
        parts += (mt.group(1), mt.group(2), rest)
    return parts


def _inert(text: str) -> bool:
    """True when ``text`` (no "[" in it) holds nothing the general scanner acts on."""
    if "]" in text:
        return False
    return not (("(" in text or "<" in text) and _ACTIVE_OUTSIDE.search(text))


XyxyBox = tuple[float, float, float, float]


def canonical_mentions(s: str, n: int = 20, m: int = 20) -> Optional[tuple[str, list[tuple[str, tuple[XyxyBox, ...]]], bool]]:
    """The grounded mentions of a canonical giqa text, without building spans: a fast path
    for callers that need only phrases and boxes (GIQA-Bench scoring).

    Returns ``(clean text, [(phrase, boxes)], plain_outside)``: ``clean text`` and each
    ``phrase`` equal :func:`scan_giqa`'s ``text`` and span phrases, ``boxes`` its boxes as
    normalised ``(x1, y1, x2, y2)`` tuples, and ``plain_outside`` is True when no ``<``
    occurs outside the mentions and no phrase starts (after white space) with a decimal digit
    or ``.`` (so no other format's markup can be present: :mod:`giqa.bench.detect`). None
    when :func:`scan_giqa` would have more to do: a non-canonical mention, a stray bracket, a
    group it reports an issue for.
    """
    parts = _canonical_parts(s)
    if parts is None:
        return None
    mentions: list[tuple[str, tuple[XyxyBox, ...]]] = []
    plain_outside = True
    for k in range(1, len(parts), 3):
        phrase = parts[k].strip()
        group = parts[k + 1]
        boxes = _canonical_xyxy(group, n, m) if len(group) <= _CACHED_GROUP_CHARS else _xyxy(group, n, m)
        if boxes is None or not phrase:
            return None
        first = phrase[0]
        if not first.isalpha() and (first == "." or first.isdecimal()):
            plain_outside = False
        mentions.append((phrase, boxes))
    del parts[2::3]
    clean = "".join(parts)
    return clean, mentions, plain_outside and "<" not in clean  # phrases hold no "<"


def _xyxy(group: str, n: int, m: int) -> Optional[tuple[XyxyBox, ...]]:
    """The boxes of a canonical group as ``(x1, y1, x2, y2)`` tuples, None as for
    :func:`_decode_canonical` (:func:`_canonical_xyxy` caches it for short groups)."""
    got = _decode_canonical(group, n, m)
    return None if got is None else tuple([(b.x1, b.y1, b.x2, b.y2) for b in got[0]])


_canonical_xyxy = functools.lru_cache(maxsize=1 << 15)(_xyxy)  # about 0.3 KB per entry: 10 MB at most


def scan_giqa(s: str, *, n: int = 20, m: int = 20, strict: bool = False) -> ParsedText:
    """Parse giqa grounded text (grid or normalised style); see :func:`giqa.text.parse_grounded`."""
    if not isinstance(s, str):
        raise TypeError(f"expected a str, got {type(s).__name__}")
    grid_codec(n, m)  # validates the grid size up front (TypeError / ValueError)
    if _TRIGGER.search(s) is None:  # plain text ("Yes, it is."): nothing to parse
        return ParsedText(s, [], [])
    canonical = _scan_canonical(s, n, m)
    return canonical if canonical is not None else _scan_general(s, n, m, strict)


def _scan_general(s: str, n: int, m: int, strict: bool) -> ParsedText:
    """The general scanner: every trigger character in turn (malformed text included)."""
    log = IssueLog(s, strict)
    out = TextBuilder()
    spans: list[GroundedSpan] = []
    seg = 0  # input before `seg` is already emitted or consumed
    pending = -1  # position of the '[' that may open a phrase
    i = 0
    size = len(s)
    while i < size:
        mt = _TRIGGER.search(s, i)
        if mt is None:
            break
        k = mt.start()
        c = s[k]
        if c == "[":
            pending = k
            i = k + 1
        elif c == "\n":
            pending = -1
            i = k + 1
        elif c == "]":
            g = _scan_group(s, k + 1, after_phrase=True, n=n, m=m)
            if g is None:
                pending = -1
                i = k + 1
                continue
            if pending >= 0:
                out.emit(s[seg:pending])
                spans.append(_span(out, s[pending + 1:k], g, log, k, []))
            else:
                w = k
                while w > seg and not s[w - 1].isspace() and s[w - 1] not in ".,;:!?)[]":
                    w -= 1
                out.emit(s[seg:w])
                spans.append(_span(out, s[w:k], g, log, k, [(k, "missing '[' (phrase taken as the word before ']')")]))
            seg = i = g.end
            pending = -1
        else:  # '(' or '<'
            q = k + 1
            while q < size and s[q] in _SPACE:
                q += 1
            if q >= size or not (s[q] in _NUM_CHARS or (c == "(" and s[q] == "<")):
                i = k + 1  # cannot start a coordinate group: skip the attempt
                continue
            g = _scan_group(s, k, after_phrase=False, n=n, m=m)
            if g is None:
                i = k + 1
                continue
            if pending >= 0:
                t = k
                while t > pending + 1 and s[t - 1] in _SPACE:
                    t -= 1
                out.emit(s[seg:pending])
                spans.append(_span(out, s[pending + 1:t], g, log, k, [(k, "missing ']' after the phrase")]))
            else:
                t = k
                while t > seg and s[t - 1] in _SPACE:
                    t -= 1
                out.emit(s[seg:t])
                issues: list[str] = []
                log.add(k, "coordinates without a phrase", issues)
                for p, msg in g.issues:
                    log.add(p, msg, issues)
                spans.append(GroundedSpan("", out.length, out.length, g.boxes, g.indices, issues))
            seg = i = g.end
            pending = -1
    if pending >= 0:
        # An unmatched '[' on the last line: truncated output such as "the [tow".
        log.add(pending, "unclosed '[' at the end of the text; bracket dropped")
        out.emit(s[seg:pending])
        seg = pending + 1
    out.emit(s[seg:])
    return ParsedText(out.build(), spans, log.all)
