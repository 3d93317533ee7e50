"""PTB tokenisation as the COCO-caption toolkit (pycocoevalcap) does it, without Java.

pycocoevalcap joins the captions of a batch with newlines, pipes them through Stanford
CoreNLP 3.4.1's ``PTBTokenizer -preserveLines -lowerCase`` (Java), drops the tokens in
:data:`PUNCTUATIONS` and hands each caption to its BLEU scorer, which splits it on white
space. This module is a port of that pipeline: :mod:`giqa.bench._ptb_rules` holds the
PTBLexer rules (all of them, translated from the JFlex source of that release) and
:mod:`giqa.bench._ptb_lexer` runs them with JFlex's longest-match semantics. Its output is
compared token for token with the jar on a differential corpus of 20,000+ model-style
sentences (``tests/test_bench_ptb_differential.py``); what still differs is listed in
``docs/bench.md``. :mod:`giqa.bench.ptb_java` runs the jar itself.

Quirks kept on purpose because pycocoevalcap has them: brackets become ``-lrb-``/``-rrb-``
and, lower-cased, are *not* in its (upper-case) punctuation list, so they stay; a token the
lexer writes with a no-break space (``1 1/2`` -> ``1\\xa01/2``) is two words to BLEU; the last
token of a caption is tokenised seeing the start of the next caption of the batch (so
:func:`ptb_tokenize_batch` and :func:`ptb_tokenize` can differ at a caption's end).
"""

from __future__ import annotations

import re
from collections import defaultdict
from itertools import count
from typing import Any, Sequence

__all__ = ["PUNCTUATIONS", "ptb_tokenize", "ptb_tokenize_batch", "one_line", "coco_words", "coco_ids", "CocoIds", "PORT_NAME"]

#: Tokens pycocoevalcap removes after tokenising (note: upper-case bracket names only).
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

#: How reports name this tokeniser.
PORT_NAME = "giqa PTB port of stanford-corenlp-3.4.1 (python)"

# Characters the Java lexer takes as line breaks (besides "\n", which pycocoevalcap replaces
# by a space itself): one inside a caption would shift every later caption of the batch by a
# line in pycocoevalcap, so they are made spaces first (U+0085 stays: the lexer reads it as
# an ellipsis, not a line break). Lone surrogates cannot be sent as UTF-8: U+FFFD, which the
# lexer drops, as it drops a lone surrogate.
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\u2028\u2029]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def one_line(text: str) -> str:
    """``text`` as one line of the tokeniser's input (see the module notes)."""
    if text.isascii() and text.isprintable():  # no line break, no surrogate
        return text
    text = _LINE_BREAKS.sub(" ", text)
    if _LONE_SURROGATE.search(text):
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return text


def coco_words(line: str) -> list[str]:
    """pycocoevalcap's words of one line of tokeniser output: tokens split on spaces, its
    punctuation dropped, then ``str.split()`` as its BLEU scorer does."""
    if line.isascii() and line.isprintable():  # only " " separates: filtering and splitting commute
        return [w for w in line.split() if w not in PUNCTUATIONS]
    return " ".join([w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS]).split()


#: Separates lines in :func:`coco_ids`' joined text: not printable, so in no fast-path line.
_LINE_MARK = "\x01"


def coco_ids(batches: Sequence[Sequence[str]]) -> tuple[list[tuple[Any, Any]], int]:
    """:func:`coco_words` of every line of tokeniser output, as dense token ids.

    Returns ``([(ids, lens) per batch], V)``: ``ids`` the int64 ids (``< V``, one vocabulary
    for all batches) of the batch's words, line after line, and ``lens`` the ``(L,)`` words
    per line, i.e. the input of :func:`giqa.bench.bleu.bleu_stats_from_ids`. The same words
    as ``coco_words`` line by line, without a Python list per line (:class:`CocoIds`).
    """
    ids = CocoIds()
    out = [ids.add(lines) for lines in batches]
    return out, ids.vocab


class CocoIds:
    """:func:`coco_ids` one batch at a time: the batches added share one vocabulary, so a
    batch can be converted as soon as the tokeniser has written it.

    The lines of a batch are joined and split once, and punctuation and line marks are
    dropped by id. (For 80,000 lines of a 100,000-item bench: about a third of the time of
    ``coco_words`` plus building ids.)
    """

    def __init__(self) -> None:
        self._index: defaultdict[str, int] = defaultdict(count().__next__)  # a new word gets the next id
        self._mark_id = self._index[_LINE_MARK]

    @property
    def vocab(self) -> int:
        """``V``: one more than the largest id given so far."""
        return len(self._index)

    def add(self, lines: Sequence[str]) -> tuple[Any, Any]:
        """``(ids, lens)`` of one batch of tokeniser output lines (see :func:`coco_ids`)."""
        import numpy as np

        parts, fast = [], np.ones(len(lines), dtype=bool)
        for k, line in enumerate(lines):
            if not (line.isascii() and line.isprintable()):
                line = " ".join(coco_words(line))  # filtered already; its words hold no mark
                fast[k] = False
                if _LINE_MARK in line:
                    raise ValueError("tokeniser output holds a \\x01 character")
            parts.append(line)
        words = f" {_LINE_MARK} ".join(parts).split()
        index = self._index
        ids = np.fromiter(map(index.__getitem__, words), np.int64, len(words))
        punct = np.array([index[p] for p in PUNCTUATIONS if p in index], dtype=np.int64)
        mark = ids == self._mark_id
        line_of = np.cumsum(mark)  # the line of each word (a mark counts to the next line)
        keep = ~(mark | (np.isin(ids, punct) & fast[line_of]))  # line_of < len(fast): one mark fewer than lines
        return ids[keep], np.bincount(line_of[keep], minlength=len(fast)).astype(np.int64)


def _coco_post(tokens: list) -> tuple:
    """Raw tokens (``None``: a line break) -> pycocoevalcap's words: lower-cased
    (``Locale.ENGLISH`` in Java; the same for every token the lexer makes), its punctuation
    list dropped, no-break spaces inside tokens split."""
    out: list = []
    for tok in tokens:
        if tok is None:
            out.append(None)
            continue
        low = tok.lower()
        if low in PUNCTUATIONS:
            continue
        words = low.split()
        if len(words) == 1:
            out.append(words[0])
        else:
            out += words
    return tuple(out)


def ptb_tokenize(text: str) -> list[str]:
    """The words pycocoevalcap's BLEU counts for ``text`` tokenised on its own.

    ``"The man's face isn't sharp (left)."`` -> ``["the", "man", "'s", "face", "is", "n't",
    "sharp", "-lrb-", "left", "-rrb-"]``.
    """
    from giqa.bench._ptb_lexer import lex

    return lex(one_line(text), _coco_post)


def ptb_tokenize_batch(texts: Sequence[str]) -> list[list[str]]:
    """:func:`ptb_tokenize` of each text as pycocoevalcap runs a batch: all texts joined by
    newlines in one pass, so each caption's last token sees the next caption's start."""
    from giqa.bench._ptb_lexer import lex

    if not texts:
        return []
    out: list[list[str]] = [[]]
    line = out[0]
    for word in lex("\n".join(one_line(t) for t in texts), _coco_post):
        if word is None:
            line = []
            out.append(line)
        else:
            line.append(word)
    if len(out) != len(texts):  # pragma: no cover - one_line leaves no other line break
        raise AssertionError(f"{len(out)} lines for {len(texts)} texts")
    return out
