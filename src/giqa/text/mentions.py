"""The one rule for "does this text mention this phrase?" (DES, VQA filtering, fusion).

A *mention* of ``phrase`` in ``text`` is a place where the text reads as the phrase, compared
after folding both sides the same way, and which is a whole word or a run of whole words:

* **Folding**: Unicode case folding (``str.casefold``: "STRASSE" mentions "straße"), canonical
  decomposition (NFD: a precomposed "é" equals "e" + U+0301), typographic apostrophes read as
  ``'`` and dashes U+2010/U+2011 as ``-``, and any run of whitespace as one space.
* **Word boundaries**: where the phrase starts (ends) with a word character, the text must not
  have a word character right before (after) the mention. Word characters are letters, digits,
  ``_`` and combining marks (so "cup" is not mentioned in "cup_holder", nor "cafe" in "café").
* **Hyphens** join words: a hyphen between two word characters makes one compound, so "man" is
  not mentioned in "man-made" nor "shirt" in "t-shirt"; "t-shirt" is mentioned in "t-shirts".
* **Apostrophes** end words: "man" is mentioned in "the man's face" and "dog" in "the dogs'
  tails".
* **Plurals**: a phrase ending in an ASCII letter also matches its regular English plural,
  ``+s``, ``+es``, and ``y -> ies`` after a consonant ("candle" -> "candles", "box" -> "boxes",
  "berry" -> "berries"), the forms in the paper's examples ("[buildings]", "[stones]",
  "[candles]"). The mention then covers the plural, so fusion writes ``[candles](...)``.
  Irregular plurals and the reverse (a plural phrase, a singular text) do not match.
* **Scripts written without spaces** (Han, Hiragana, Katakana, Hangul, Thai, Lao, Khmer,
  Myanmar): a boundary next to such a character always holds, since words there are not
  delimited ("猫" is mentioned in "猫が寝ている"). Other scripts (Cyrillic, Greek, Arabic,
  Devanagari, ...) use the boundaries above.

Spans are ``[start, end)`` indices into the original ``text``. Matching is linear in the text
length per phrase (``str.find``, no regular expressions), and the folded text is cached, so
testing many phrases against one text folds it once.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Iterator, Optional

__all__ = ["find_mention", "is_mentioned", "iter_mentions"]

_APOSTROPHES = frozenset("\u2018\u2019\u02bc\u2032\uff07")
_HYPHENS = frozenset("\u2010\u2011")
# Blocks of scripts written without spaces between words: a boundary next to them always holds.
_CONTINUA = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x3005, 0x3007),  # ideographic iteration and number marks
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x3134F),  # CJK extensions B-G
)


@functools.lru_cache(maxsize=8192)
def _fold_char(ch: str) -> str:
    if ch in _APOSTROPHES:
        return "'"
    if ch in _HYPHENS:
        return "-"
    return unicodedata.normalize("NFD", ch.casefold())


@functools.lru_cache(maxsize=8192)
def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_" or unicodedata.category(ch)[0] == "M"


@functools.lru_cache(maxsize=8192)
def _is_continua(ch: str) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in _CONTINUA)


@functools.lru_cache(maxsize=512)
def _folded(text: str) -> tuple[str, tuple[int, ...]]:
    """``text`` folded, and for each folded character the index of the original one."""
    out: list[str] = []
    origin: list[int] = []
    space = False
    for i, ch in enumerate(text):
        if ch.isspace():
            if not space:
                out.append(" ")
                origin.append(i)
            space = True
            continue
        space = False
        f = _fold_char(ch)
        out.append(f)
        origin.extend([i] * len(f))
    return "".join(out), tuple(origin)


@functools.lru_cache(maxsize=4096)
def _keys(phrase: str) -> tuple[tuple[str, ...], bool, bool]:
    """The folded phrase and its plural forms (longest first), and whether it starts / ends
    with a word character."""
    stripped = phrase.strip()
    if not stripped:
        return (), False, False
    key = _folded(stripped)[0]
    keys = [key]
    last = key[-1]
    if "a" <= last <= "z":
        keys += [key + "es", key + "s"]
        if last == "y" and len(key) > 1 and key[-2] not in "aeiou":
            keys.append(key[:-1] + "ies")
    keys.sort(key=len, reverse=True)
    return tuple(keys), _is_word(stripped[0]), _is_word(stripped[-1])


def _bounded(text: str, at: int, step: int) -> bool:
    """Whether the mention edge next to ``text[at]`` (``step`` -1: the character before a
    start, +1: the one after an end) is a word boundary."""
    if not 0 <= at < len(text):
        return True
    ch = text[at]
    if _is_continua(ch) or _is_continua(text[at - step]):
        return True
    if _is_word(ch):
        return False
    # a hyphen between word characters joins a compound word
    nxt = at + step
    return not (_fold_char(ch) == "-" and 0 <= nxt < len(text) and _is_word(text[nxt]))


def iter_mentions(phrase: str, text: str) -> Iterator[tuple[int, int]]:
    """Every mention of ``phrase`` in ``text`` as ``[start, end)`` spans, left to right (at one
    start, the longest form: a plural before the bare phrase). See the module docstring."""
    keys, word_start, word_end = _keys(phrase)
    if not keys:
        return
    folded, origin = _folded(text)
    found: dict[int, int] = {}
    for key in keys:
        pos = folded.find(key)
        while pos != -1:
            end = pos + len(key)
            # the match must start and end on whole original characters
            aligned = (pos == 0 or origin[pos] != origin[pos - 1]) and (
                end == len(folded) or origin[end] != origin[end - 1]
            )
            if aligned and pos not in found:
                a, b = origin[pos], origin[end - 1] + 1
                if (not word_start or _bounded(text, a - 1, -1)) and (not word_end or _bounded(text, b, 1)):
                    found[pos] = b
            pos = folded.find(key, pos + 1)
    for pos in sorted(found):
        yield origin[pos], found[pos]


def find_mention(phrase: str, text: str) -> Optional[tuple[int, int]]:
    """The first mention of ``phrase`` in ``text`` as ``[start, end)``, or ``None``.

    >>> find_mention("candle", "Two Candles burn.")
    (4, 11)
    >>> find_mention("cup", "The cup_holder is blurry.") is None
    True
    """
    return next(iter_mentions(phrase, text), None)


def is_mentioned(phrase: str, text: str) -> bool:
    """Whether ``text`` mentions ``phrase`` (module docstring: folding, whole words, plurals).

    >>> is_mentioned("man", "the man's face"), is_mentioned("man", "a man-made lake")
    (True, False)
    """
    return find_mention(phrase, text) is not None
