"""BLEU@4 as captioning papers compute it (COCO-caption / pycocoevalcap), plus sacreBLEU 13a.

``flavour="coco"`` (default): PTB tokenisation as pycocoevalcap does it (the Java
PTBTokenizer when it can run, giqa's port otherwise: :mod:`giqa.bench.tokenizers`; references
and hypotheses are two batches, as pycocoevalcap tokenises them), corpus-level
BLEU-4 with pycocoevalcap's details: clipped n-gram counts against the per-n-gram maximum over
references, the *closest* reference length per item (ties -> the shorter one), and the
``tiny = 1e-15`` / ``small = 1e-9`` terms it adds to every precision and to the length ratio.
It matches ``pycocoevalcap.bleu.Bleu`` to 1e-9 on the same tokens.

``flavour="sacrebleu-13a"``: ``sacrebleu.corpus_bleu`` with its 13a tokeniser (raw text in,
default exponential smoothing off), labelled as such in reports. Scores are fractions in
``[0, 1]`` here; reports print them x100 as Table 5 does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import Literal, Optional, Sequence, Union

import numpy as np


__all__ = ["BleuResult", "bleu", "coco_bleu_tokens", "bleu_stats", "bleu_stats_from_ids", "bleu_from_stats", "FLAVOURS"]

Flavour = Literal["coco", "sacrebleu-13a"]
FLAVOURS = ("coco", "sacrebleu-13a")
_TINY = 1e-15
_SMALL = 1e-9


@dataclass(frozen=True)
class BleuResult:
    """Corpus BLEU.

    ``score``: BLEU-``n`` in ``[0, 1]``; ``bleus``: cumulative BLEU-1..n; ``ratio``: hypothesis
    length / effective reference length; ``stats``: ``(N, 2 + 2n)`` float64 per-item sufficient
    statistics ``[testlen, reflen, guess_1..n, correct_1..n]`` (coco flavour only; bootstrap
    resamples rows of it); ``flavour``: how it was computed; ``tokenizer``: the PTB tokeniser
    that ran (coco flavour on raw text; None on given tokens and for sacreBLEU).
    """

    score: float
    bleus: tuple[float, ...]
    ratio: float
    flavour: str
    stats: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 10)))
    tokenizer: Optional[str] = None


def _ngram_counts(words: Sequence[str], n: int) -> list[Counter]:
    """One Counter per order 1..n (unigrams as str, higher orders as tuples)."""
    out: list[Counter] = [Counter(words)]
    for k in range(2, n + 1):
        out.append(Counter(zip(*(words[i:] for i in range(k)))))
    return out


def bleu_stats(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]], n: int = 4) -> np.ndarray:
    """Per-item sufficient statistics on tokenised text, as pycocoevalcap's ``cook_test``.

    ``hyps[i]``: the tokens of item ``i``'s hypothesis; ``refs[i]``: one or more token lists.
    Returns ``(N, 2 + 2n)`` float64: testlen, closest reference length (ties: the shorter),
    guesses and clipped matches per order (clipped by the maximum count over references).
    One reference per item (the bench's case) is counted for the whole corpus at once with
    NumPy; several references per item use per-item Counters. Both give the same integers.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    if n >= 1 and all(len(rs) == 1 for rs in refs):
        out = _single_ref_stats(hyps, refs, n)
        if out is not None:
            return out
    return _stats_per_item(hyps, refs, n)


def _stats_per_item(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]], n: int) -> np.ndarray:
    out = np.zeros((len(hyps), 2 + 2 * n), dtype=np.float64)
    for i, (hyp, rs) in enumerate(zip(hyps, refs)):
        if len(rs) == 0:
            raise ValueError(f"item {i} has no reference")
        maxcounts = _ngram_counts(rs[0], n)
        for r in rs[1:]:
            for mc, rc in zip(maxcounts, _ngram_counts(r, n)):
                mc |= rc  # element-wise max
        testlen = len(hyp)
        row = out[i]
        row[0] = testlen
        row[1] = min((abs(len(r) - testlen), len(r)) for r in rs)[1]
        for k, (hc, mc) in enumerate(zip(_ngram_counts(hyp, n), maxcounts)):
            row[2 + k] = max(0, testlen - k)
            common = hc.keys() & mc.keys()
            if common:  # sum of clipped counts, with C-level iterators
                row[2 + n + k] = sum(map(min, map(hc.__getitem__, common), map(mc.__getitem__, common)))
    return out


# n-gram keys (item, n-gram code) must stay below this to be exact in int64
_KEY_LIMIT = 1 << 62


def _distinct_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of int64 ``keys`` and how often each occurs."""
    keys = np.sort(keys)
    if keys.size == 0:
        return keys, keys
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.diff(np.append(starts, keys.size))


def _single_ref_stats(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]], n: int) -> Optional[np.ndarray]:
    """:func:`bleu_stats` for exactly one reference per item: tokens become dense ids, then
    :func:`bleu_stats_from_ids` counts the corpus at once."""
    size = len(hyps)
    first = [rs[0] for rs in refs]
    h_len = np.fromiter(map(len, hyps), np.int64, size)
    r_len = np.fromiter(map(len, first), np.int64, size)
    tokens = list(chain.from_iterable(hyps))
    n_h = len(tokens)
    tokens.extend(chain.from_iterable(first))
    index = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    vocab = max(len(index), 1)
    ids = np.fromiter(map(index.__getitem__, tokens), np.int64, len(tokens))
    return bleu_stats_from_ids(ids[:n_h], h_len, ids[n_h:], r_len, vocab, n)


def bleu_stats_from_ids(h_ids: np.ndarray, h_len: np.ndarray, r_ids: np.ndarray, r_len: np.ndarray,
                        vocab: int, n: int = 4) -> Optional[np.ndarray]:
    """:func:`bleu_stats` (one reference per item) on token ids, vectorised over the corpus.

    ``h_ids`` / ``r_ids``: int64 ids ``< vocab`` of all hypothesis / reference tokens, item
    after item; ``h_len`` / ``r_len``: ``(N,)`` tokens per item. The n-gram of order ``k``
    starting at a token is the integer ``sum(id_j * V**(k-1-j))`` and is keyed by
    ``item * V**k + code``, so sorting the keys of each side counts every (item, n-gram) at
    once; clipped matches are the minimum of the two sides' counts where a key occurs in both.
    When such keys could exceed int64 (large vocabularies: ``N * V**k`` over 2**62), the codes
    of the previous order are first renumbered densely (``np.unique``), so they stay below the
    number of n-grams. Returns None only if even that could overflow (the caller then counts
    per item).
    """
    size = len(h_len)
    vocab = max(int(vocab), 1)
    if (size + 1) * vocab >= _KEY_LIMIT:
        return None
    out = np.zeros((size, 2 + 2 * n), dtype=np.float64)
    out[:, 0] = h_len
    out[:, 1] = r_len  # the closest reference length: the only one
    sides = []
    for side_ids, lens in ((h_ids, h_len), (r_ids, r_len)):
        item = np.repeat(np.arange(size, dtype=np.int64), lens)
        left = np.repeat(np.cumsum(lens), lens) - np.arange(side_ids.size, dtype=np.int64)  # tokens to sentence end
        sides.append([side_ids, item, left, side_ids])  # [ids, item, left, codes of the order]
    span = vocab  # codes of the current order lie in [0, span)
    for k in range(1, n + 1):
        if k > 1:
            if (size + 1) * span * vocab >= _KEY_LIMIT:
                span = _renumber_codes(sides)
                if (size + 1) * span * vocab >= _KEY_LIMIT:
                    return None
            for side in sides:
                side[3] = side[3][:-1] * vocab + side[0][k - 1:]
            span *= vocab
        out[:, 1 + k] = np.maximum(h_len - (k - 1), 0)
        counted = []
        for _, item, left, codes in sides:
            ok = left[: codes.size] >= k  # the n-gram fits in its sentence
            counted.append(_distinct_counts(item[: codes.size][ok] * span + codes[ok]))
        (h_keys, h_counts), (r_keys, r_counts) = counted
        if h_keys.size and r_keys.size:
            j = np.minimum(np.searchsorted(r_keys, h_keys), r_keys.size - 1)
            hit = r_keys[j] == h_keys
            clipped = np.minimum(h_counts[hit], r_counts[j[hit]])
            out[:, 1 + n + k] = np.bincount(h_keys[hit] // span, weights=clipped, minlength=size)
    return out


def _renumber_codes(sides: list[list[np.ndarray]]) -> int:
    """Replace both sides' n-gram codes (``side[3]``) by dense ranks ``< D``, the same code
    for the same n-gram on either side; returns ``D``, the number of distinct codes."""
    h_codes, r_codes = sides[0][3], sides[1][3]
    distinct, dense = np.unique(np.concatenate((h_codes, r_codes)), return_inverse=True)
    dense = dense.reshape(-1).astype(np.int64, copy=False)
    sides[0][3], sides[1][3] = dense[: h_codes.size], dense[h_codes.size :]
    return max(int(distinct.size), 1)


def bleu_from_stats(stats: np.ndarray, n: int = 4) -> tuple[float, tuple[float, ...], float]:
    """Corpus BLEU-1..n from summed statistics, with pycocoevalcap's smoothing terms.

    ``stats`` is ``(N, 2 + 2n)``, summed over items here (see :func:`bleu_from_totals` for
    many totals at once). Returns ``(bleu_n, bleus, ratio)``.
    """
    tot = np.asarray(stats, dtype=np.float64).sum(axis=0)
    bleus = bleu_from_totals(tot[None, :], n)[0]
    ratio = (tot[0] + _TINY) / (tot[1] + _SMALL)
    return float(bleus[-1]), tuple(float(b) for b in bleus), float(ratio)


def bleu_from_totals(totals: np.ndarray, n: int = 4) -> np.ndarray:
    """``(B, 2 + 2n)`` summed statistics -> ``(B, n)`` cumulative BLEU-1..n (vectorised)."""
    totals = np.asarray(totals, dtype=np.float64)
    testlen, reflen = totals[:, 0], totals[:, 1]
    guess, correct = totals[:, 2 : 2 + n], totals[:, 2 + n : 2 + 2 * n]
    prec = (correct + _TINY) / (guess + _SMALL)
    logcum = np.cumsum(np.log(prec), axis=1)
    bleus = np.exp(logcum / np.arange(1, n + 1))
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    bp = np.where(ratio < 1, np.exp(1 - 1 / np.maximum(ratio, 1e-300)), 1.0)
    return bleus * bp[:, None]


def coco_bleu_tokens(
    hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]], n: int = 4
) -> BleuResult:
    """pycocoevalcap's corpus BLEU on already tokenised text."""
    stats = bleu_stats(hyps, refs, n)
    if len(stats) == 0:
        return BleuResult(0.0, (0.0,) * n, 0.0, "coco", stats)
    score, bleus, ratio = bleu_from_stats(stats, n)
    return BleuResult(score, bleus, ratio, "coco", stats)


def _as_ref_sets(references: Sequence[Union[str, Sequence[str]]]) -> list[list[str]]:
    out = []
    for r in references:
        out.append([r] if isinstance(r, str) else list(r))
    return out


def bleu(
    hypotheses: Sequence[str],
    references: Sequence[Union[str, Sequence[str]]],
    *,
    flavour: Flavour = "coco",
    n: int = 4,
    tokenizer: Union[str, object] = "auto",
) -> BleuResult:
    """Corpus BLEU-``n`` of raw-text ``hypotheses`` against ``references`` (one str or a list
    of str per item). Strip coordinates first (:func:`giqa.text.strip_coordinates`).
    ``tokenizer`` (coco flavour): ``"auto"``, ``"java"`` or ``"python"``
    (:mod:`giqa.bench.tokenizers`); the result names the one that ran.

    >>> round(bleu(["the sky is blurry ."], ["the sky is blurry ."], tokenizer="python").score, 6)
    1.0
    """
    refs = _as_ref_sets(references)
    if len(hypotheses) != len(refs):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(refs)} reference sets")
    if flavour == "coco":
        from giqa.bench.tokenizers import tokenize_batches

        flat = [r for rs in refs for r in rs]
        (ref_toks, hyp_toks), name, _ = tokenize_batches([flat, list(hypotheses)], tokenizer)
        it = iter(ref_toks)
        ref_sets = [[next(it) for _ in rs] for rs in refs]
        res = coco_bleu_tokens(hyp_toks, ref_sets, n)
        return BleuResult(res.score, res.bleus, res.ratio, "coco", res.stats, name)
    if flavour == "sacrebleu-13a":
        from giqa.errors import require

        sacrebleu = require("sacrebleu", "bench")
        if n != 4:
            raise ValueError("the sacrebleu flavour computes BLEU-4 only")
        width = max((len(rs) for rs in refs), default=1)
        streams = [[rs[k] if k < len(rs) else None for rs in refs] for k in range(width)]
        res = sacrebleu.corpus_bleu(list(hypotheses), streams, tokenize="13a")
        cum, bleus = 1.0, []
        for k, p in enumerate(res.precisions):
            cum *= p / 100.0
            bleus.append(cum ** (1.0 / (k + 1)) * res.bp)
        ratio = res.sys_len / res.ref_len if res.ref_len else 0.0
        return BleuResult(res.score / 100.0, tuple(bleus), ratio, "sacrebleu-13a")
    raise ValueError(f"unknown BLEU flavour {flavour!r}; choose one of {', '.join(FLAVOURS)}")
