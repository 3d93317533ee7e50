"""A longest-match lexer over :data:`giqa.bench._ptb_rules.RULES`, as JFlex runs PTBLexer.

At each position every rule that can start with the current character is tried; the one
whose match (trailing context included) is longest wins, ties going to the earlier rule,
and its action turns the matched text into zero or more tokens and says how much input it
consumed (JFlex's ``yypushback``). A character no rule matches is dropped, as the Java
tokeniser drops "untokenizable" characters. Output: raw PTB tokens (not lower-cased), with
``None`` where the input had a line break (``-preserveLines``).

Speed: the lexer stands at a token boundary after every run of spaces, so the tokens of a
chunk of text between two runs come from a cache when no rule starting in the chunk can see
past the first following space (:func:`_cache_class`; a test checks the cache against the
plain lexer); a run of ASCII letters that no other rule can extend (:func:`_plain_word`)
skips the rule loop; each rule is tried only at characters it can start with. Each regex sees
at most :data:`WINDOW` characters, which keeps adversarial input linear (a token longer than
that is cut; no model writes one).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, NamedTuple, Optional

from giqa.bench._ptb_rules import RULES, compile_rule, split_alternatives

__all__ = ["lex", "WINDOW"]

#: Characters one rule may look at from a position (tokens longer than this are cut).
WINDOW = 1000

Action = Callable[[str], tuple[list[Optional[str]], int]]


class _Candidate(NamedTuple):
    priority: int
    regex: re.Pattern
    has_context: bool
    action: Action


# -- actions: matched text (JFlex's yytext) -> (tokens, characters consumed) ------------------
def _text(t: str):
    return [t], len(t)


def _soft(t: str):
    """removeSoftHyphens: drop U+00AD; a token of soft hyphens only becomes "-"."""
    if "\u00ad" not in t:
        return [t], len(t)
    return [t.replace("\u00ad", "") or "-"], len(t)


_AMP = re.compile("&amp;", re.IGNORECASE)
_SINGLE = re.compile("&apos;|'")
_DOUBLE = re.compile('"|&quot;')
_LEFT_SINGLE = re.compile("[\u0091\u2018\u201b\u2039]")
_RIGHT_SINGLE = re.compile("[\u0092\u2019\u203a]")
_LEFT_DOUBLE = re.compile("[\u0093\u201c\u00ab]")
_RIGHT_DOUBLE = re.compile("[\u0094\u201d\u00bb]")


def _latex_quotes(t: str, left: bool) -> str:
    t = _SINGLE.sub("`" if left else "'", t)
    t = _DOUBLE.sub("``" if left else "''", t)
    t = _LEFT_SINGLE.sub("`", t)
    t = _RIGHT_SINGLE.sub("'", t)
    t = _LEFT_DOUBLE.sub("``", t)
    return _RIGHT_DOUBLE.sub("''", t)


_FRACTIONS = str.maketrans({"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"})
_CURRENCY = str.maketrans({"\u00a2": "cents", "\u00a3": "#", "\u0080": "$", "\u00a4": "$", "\u20a0": "$", "\u20ac": "$"})
_PARENS = str.maketrans({"(": "-LRB-", ")": "-RRB-"})


def _acronym(t: str):
    """``U.S.`` before a sentence starter: the acronym, then its period again as a token;
    a one-letter ``I.`` gives ``I`` and the period."""
    t = t.rstrip(" \t\n\x0b\x0c\r\x85")
    if len(t) == 2:
        return [t[0]], 1
    return [t], len(t) - 1


def _keep_then_period(t: str):
    return [t], len(t) - 1


def _hyphens(t: str):
    return (["--"] if 3 <= len(t) <= 4 else [t]), len(t)


def _const(tok: Optional[str]) -> Action:
    return lambda t: ([tok], len(t))


_ACTIONS: dict[str, Action] = {
    "text": _text,
    "soft": _soft,
    "keep2": lambda t: ([t[:2]], 2),
    "keep3": lambda t: ([t[:3]], 3),
    "nbsp": lambda t: ([t.replace(" ", "\u00a0")], len(t)),
    "mdash": _const("--"),
    "amp": lambda t: ([_AMP.sub("&", t)], len(t)),
    "open_quote": lambda t: ([_latex_quotes(t, True)], len(t)),
    "close_quote": lambda t: ([_latex_quotes(t, False)], len(t)),
    "fraction": lambda t: ([t.translate(_FRACTIONS)], len(t)),
    "currency": lambda t: ([t.translate(_CURRENCY)], len(t)),
    "acronym": _acronym,
    "keep_then_period": _keep_then_period,
    "phone": lambda t: ([t.replace(" ", "\u00a0").translate(_PARENS)], len(t)),
    "parens": lambda t: ([t.translate(_PARENS)], len(t)),
    "hyphens": _hyphens,
    "ellipsis": _const("..."),
    "lt": _const("<"),
    "gt": _const(">"),
    "skip": lambda t: ([], len(t)),
    "newline": _const(None),
    **{name: _const(name) for name in ("-LCB-", "-RCB-", "-LSB-", "-RSB-", "-LRB-", "-RRB-")},
}


# -- which rules can start with a character -----------------------------------------------
def _first_class(pattern: str) -> Optional[re.Pattern]:
    """A one-character regex for the characters a match of ``pattern`` can start with
    (None: any). Read from the parse tree of Python's own regex compiler."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse  # type: ignore[no-redef, unused-ignore]
    try:
        parts, _ = _first(sre_parse.parse(pattern))
    except _AnyChar:
        return None
    except Exception:  # pragma: no cover - an unfamiliar parse tree: try the rule everywhere
        return None
    return re.compile("[" + "".join(parts) + "]")


class _AnyChar(Exception):
    pass


def _char(v: int) -> str:
    return f"\\U{v:08x}"


def _first(seq) -> tuple[list[str], bool]:
    """(class parts, nullable) of a parsed sequence."""
    out: list[str] = []
    for op, av in seq:
        parts, nullable = _first_node(str(op), av)
        out += parts
        if not nullable:
            return out, False
    return out, True


def _first_node(op: str, av) -> tuple[list[str], bool]:
    if op == "LITERAL":
        return [_char(av)], False
    if op == "IN":
        parts = []
        for iop, iav in av:
            iop = str(iop)
            if iop == "LITERAL":
                parts.append(_char(iav))
            elif iop == "RANGE":
                parts.append(f"{_char(iav[0])}-{_char(iav[1])}")
            else:  # NEGATE, CATEGORY...: anything
                raise _AnyChar
        return parts, False
    if op == "SUBPATTERN":
        return _first(av[-1])
    if op == "BRANCH":
        parts, nullable = [], False
        for alt in av[1]:
            p, n = _first(alt)
            parts += p
            nullable = nullable or n
        return parts, nullable
    if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        lo, _, sub = av
        parts, nullable = _first(sub)
        return parts, nullable or lo == 0
    if op in ("AT", "ASSERT", "ASSERT_NOT"):
        return [], True
    raise _AnyChar


# -- the compiled rule set ------------------------------------------------------------------
# Rules that can only match where the text (ahead) holds a certain mark; lex() asks for them
# only before the mark's last occurrence. Bits of the "gate" mask.
_GATES = {"{EMAIL}": 1, "{LIKELYURL}": 2, "{FULLURL}": 4}
_URL_MARKS = ("www.", ".com", ".net", ".org", ".edu")


class _Lexer:
    def __init__(self) -> None:
        self.candidates: list[tuple[_Candidate, Optional[re.Pattern], int]] = []
        for k, rule in enumerate(RULES):
            pats = split_alternatives(rule.pattern) if rule.split else [rule.pattern]
            for pat in pats:
                rx = compile_rule(pat, rule.context)
                cand = _Candidate(k, rx, rule.context is not None, _ACTIONS[rule.action])
                self.candidates.append((cand, _first_class(rx.pattern), _GATES.get(rule.pattern, 0)))
        self._by_char: dict[tuple[str, int], tuple[_Candidate, ...]] = {}
        self.abbreviation = re.compile("|".join(
            "(?:" + compile_rule(r.pattern, None).pattern + ")"
            for r in RULES if r.action in ("acronym", "keep_then_period") or r.pattern in (r"{ABBREV2}", r"{ABBREV3}", r"(pt[eyEY]|co)\.")
        ))

    def for_char(self, ch: str, gates: int) -> tuple[_Candidate, ...]:
        """The candidates that can start with ``ch``, gated rules only where ``gates`` allows."""
        key = (ch, gates)
        got = self._by_char.get(key)
        if got is None:
            got = tuple(c for c, first, gate in self.candidates
                        if (first is None or first.match(ch)) and (not gate or gate & gates))
            self._by_char[key] = got
        return got


@lru_cache(maxsize=1)
def _lexer() -> _Lexer:
    return _Lexer()


_ASCII_RUN = re.compile(r"[A-Za-z]+")
# SPACES, the only rule that starts at " " or "\t"; other spaces can start a LIKELYURL
_SPACE_RUN = re.compile("[ \t][ \t\u00a0\u2000-\u200a\u3000]*")
_SPLIT3 = frozenset(["cannot", "gonna", "gotta", "lemme", "gimme", "wanna"])
# what may follow an ASCII letter run for the run to be a plain word (see _plain_word)
_WORD_END = frozenset(' \t,;:()[]{}"=')  # LIKELYURL's labels exclude these
_WORD_END_NO_URL = frozenset("*%")  # plain words ends only where no LIKELYURL can start
_HTHING_TAIL = re.compile("[A-Za-z0-9.,\u00ad]*-[A-Za-z0-9\u00ad]")


def _plain_word(text: str, e: int, run: str, gates: int, abbreviation: re.Pattern) -> bool:
    """True when the ASCII letter run ``run`` ending at ``e`` is a WORD token whatever the
    other rules do. Only EMAIL (gate 1), FULLURL (``http:``), HTHING (``a,b-c``) and, before
    a period, WORD (``a.b``), the abbreviation rules and ``WORD./[,;:]`` can make a longer
    token there; LIKELYURL's labels exclude the characters of ``_WORD_END``."""
    if e == len(text):
        return True
    f = text[e]
    if f == " " or f == "\t":
        return True
    if gates & 1:
        return False
    if f in _WORD_END:
        if f == ",":
            return _HTHING_TAIL.match(text, e, min(len(text), e + WINDOW)) is None
        return f != ":" or (gates & 4) == 0
    if f in _WORD_END_NO_URL:
        return not gates & 2
    if f == "." and not gates & 2:
        g = text[e + 1] if e + 1 < len(text) else " "
        return (g == " " or g == "\t") and abbreviation.fullmatch(run + ".") is None
    return False


def _gate_marks(text: str) -> tuple[int, int, int]:
    """Last positions up to which EMAIL, LIKELYURL and FULLURL can start (-1: nowhere)."""
    low = text.lower()
    url = max(low.rfind(m) for m in _URL_MARKS)
    return text.rfind("@"), url, text.rfind("://")


# A run of white space the lexer's SPACES rule takes whole (it is the only rule that starts
# at " " or "\t"), so the lexer stands at a token boundary after each one.
_BOUNDARY = re.compile("([ \t][ \t\u00a0\u2000-\u200a\u3000]*)")
# a chunk ending in one of these may leave a trailing context open into the next chunk
# (line breaks, and the spaces other than " " and "\t": SPACENLS runs on through them)
_OPEN_END = frozenset("\n\r\x0b\x0c\u2028\u2029\u0085\u00a0\u3000" + "".join(map(chr, range(0x2000, 0x200B))))
# a word and its period, maybe after an opening bracket or quote
_WORD_PERIOD = re.compile("[(\\[\"\u201c\u2018]?([A-Za-z]{2,})\\.")
_CACHE_LIMIT = 200_000  # entries
_CACHE_CHUNK_MAX = 100  # characters; longer chunks rarely come back
_ALWAYS, _UNLESS_PERIOD, _UNLESS_DIGIT = 1, 2, 3
Post = Callable[[list[Optional[str]]], tuple]
_caches: dict[Optional[Post], dict[tuple[str, bool], tuple[int, tuple]]] = {}


def _cache_class(chunk: str, abbreviation: re.Pattern) -> int:
    """When the tokens of ``chunk`` depend on the chunk alone (0: maybe never): only the
    first character of the white space after it may be seen by a rule that starts in it.

    Rules that reach across white space: SGML tags (``<``); the trailing contexts after an
    abbreviation's or acronym's period (``Fig. 3``, ``I. The``), after a line break or a
    space other than " " and "\t" at the chunk's end (``d.\u2009 The``);
    ``. . .`` (a final period before a chunk that starts with one); fractions and phone
    numbers (a final digit, or ``(555)``, before a chunk that starts with a digit). A period
    is trusted only after a plain word that is no abbreviation (:data:`_WORD_PERIOD`).
    """
    last = chunk[-1]
    if last in _OPEN_END or "<" in chunk:
        return 0
    if last == ".":
        m = _WORD_PERIOD.fullmatch(chunk)
        if m is None or abbreviation.fullmatch(m.group(1) + ".") is not None:
            return 0
        return _UNLESS_PERIOD
    if last.isdigit() or (last == ")" and any(c.isdigit() for c in chunk)):
        return _UNLESS_DIGIT
    return _ALWAYS


def lex(text: str, post: Optional[Post] = None) -> list:
    """Raw PTB tokens of ``text`` (``None`` marks a line break), or ``post`` of them.

    ``post`` maps a list of tokens to a tuple of whatever the caller wants from them (it is
    applied piecewise, so it must work token by token, e.g. lower-case and filter).
    After each run of white space the lexer stands at a token boundary; the tokens of a
    chunk of text there that cannot depend on what follows its first space
    (:func:`_cache_class`) come from a cache, the rest is lexed in place.
    """
    out: list = []
    parts = _BOUNDARY.split(text)  # chunk, white space, chunk, ..., chunk
    marks = _gate_marks(text)
    abbreviation = _lexer().abbreviation
    finish = post or tuple
    cache = _caches.setdefault(post, {})
    p = pos = 0  # where the lexer stands; where parts[k] starts
    last = len(parts) - 1
    for k in range(0, len(parts), 2):
        chunk = parts[k]
        start = pos
        pos += len(chunk)
        space = len(parts[k + 1]) if k < last else 0
        if start < p or not chunk:  # lexed already, across white space
            pos += space
            continue
        key = (chunk, space > 0)
        got = cache.get(key)
        if got is None and len(chunk) <= _CACHE_CHUNK_MAX:
            cls = _cache_class(chunk, abbreviation)
            if cls:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                got = cache[key] = (cls, finish(_scan(chunk + " " if space else chunk, 0, _gate_marks(chunk))))
        if got is not None and got[0] != _ALWAYS:
            nxt = parts[k + 2][:1] if k + 2 <= last else ""
            if nxt == "." if got[0] == _UNLESS_PERIOD else nxt.isdigit():
                got = None
        if got is None:
            toks: list[Optional[str]] = []
            p = _scan_until_space(text, start, marks, toks)
            out += finish(toks)
            if p == pos:
                p = pos + space
            pos += space
            continue
        out += got[1]
        pos += space
        p = pos
    return out


def _scan_until_space(text: str, p: int, marks: tuple[int, int, int], out: list) -> int:
    """Tokens from ``p`` until the lexer stands on a space (or the end); returns where."""
    n = len(text)
    while p < n and text[p] != " " and text[p] != "\t":
        toks, p = _step(text, p, marks)
        out += toks
    return p


def _scan(text: str, p: int, marks: tuple[int, int, int]) -> list[Optional[str]]:
    out: list[Optional[str]] = []
    n = len(text)
    while p < n:
        m = _SPACE_RUN.match(text, p)
        if m is not None:
            p = m.end()
            continue
        toks, p = _step(text, p, marks)
        out += toks
    return out


def _step(text: str, p: int, marks: tuple[int, int, int]) -> tuple[list[Optional[str]], int]:
    """One JFlex step at ``p`` (not white space): (tokens, next position)."""
    lexer = _lexer()
    at, url, http = marks
    gates = (p <= at) | (p <= url) << 1 | (p <= http) << 2
    m = _ASCII_RUN.match(text, p)
    if m is not None and _plain_word(text, m.end(), m.group(), gates, lexer.abbreviation):
        w = m.group()
        return ([w[:3], w[3:]] if w.lower() in _SPLIT3 else [w]), m.end()
    best, best_len, best_m = None, 0, None
    end = min(len(text), p + WINDOW)
    for cand in lexer.for_char(text[p], gates):
        m = cand.regex.match(text, p, end)
        if m is None:
            continue
        size = m.end() - p + (len(m.group(1)) if cand.has_context else 0)
        if size > best_len:
            best, best_len, best_m = cand, size, m
    if best is None or best_m is None:  # untokenizable: dropped, as the Java tool does by default
        return [], p + 1
    toks, used = best.action(best_m.group())
    return toks, p + used
