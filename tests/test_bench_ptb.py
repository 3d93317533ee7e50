"""PTB tokeniser plumbing: which tokeniser COCO BLEU uses and says it used, one JVM per run,
the Java runner's batches, and the port's linear time on adversarial text."""

from __future__ import annotations

import numpy as np
import pytest

from giqa.bench import bleu, score
from giqa.bench.ptb import PORT_NAME, ptb_tokenize
from giqa.bench.ptb_java import JavaPtbTokenizer, java_available
from giqa.bench.tokenizers import PortTokenizer, get_tokenizer, tokenize_batches
from giqa.errors import BackendError
from giqa.types import Sample

needs_java = pytest.mark.skipif(not java_available(), reason="java or pycocoevalcap's jar is not installed")

HYPS = ["The dog(bottom right) is over- and under-exposed.", "**Sharpness:** high; quality:poor"]
REFS = ["The dog (bottom right) is overexposed.", "Sharpness: high, quality: poor."]


def test_python_tokenizer_is_named():
    r = bleu(HYPS, REFS, tokenizer="python")
    assert r.tokenizer == PORT_NAME and 0 < r.score < 1
    assert isinstance(get_tokenizer("python"), PortTokenizer)
    with pytest.raises(ValueError, match="unknown PTB tokenizer"):
        get_tokenizer("spacy")


@needs_java
def test_auto_uses_java_when_it_is_there_and_agrees_with_the_port():
    java, port = bleu(HYPS, REFS), bleu(HYPS, REFS, tokenizer="python")
    assert java.tokenizer == JavaPtbTokenizer.name
    assert java.score == pytest.approx(port.score, abs=1e-12)


@needs_java
def test_one_jvm_for_all_batches_and_each_batch_ends_at_its_own_end():
    tok = JavaPtbTokenizer()
    # "x." then "The ...": inside one batch the acronym rule sees the next line, across
    # batches it must not (pycocoevalcap tokenises references and results separately)
    got = tok.tokenize_batches([["it is x."], ["The end", "etc."], [], [""]])
    assert tok.jvm_runs == 1
    assert got == [[["it", "is", "x."]], [["the", "end"], ["etc."]], [], [[]]]
    assert tok.tokenize_batch(["it is x.", "The end"])[0] == ["it", "is", "x"]


def test_java_missing_is_an_error_only_when_asked_for(monkeypatch, tmp_path):
    monkeypatch.setenv("GIQA_PTB_JAR", str(tmp_path / "missing.jar"))
    assert not java_available()
    with pytest.raises(BackendError, match="not found"):
        get_tokenizer("java")
    assert isinstance(get_tokenizer("auto"), PortTokenizer)  # auto falls back to the port
    gt = [Sample(id="d", image="a.jpg", task="des", question="Describe.", answer="The sky is blue.")]
    r = score({"d": "The sky is blue."}, gt, n_boot=0)
    assert r.settings["tokenizer"] == PORT_NAME == r.provenance["tokenizer"]


def test_a_failing_java_run_falls_back_with_a_note(monkeypatch):
    class Broken:
        name = "broken java"

        def tokenize_batches(self, batches):
            raise BackendError("JVM crashed")

    import giqa.bench.tokenizers as t

    with pytest.raises(BackendError):  # a tokenizer asked for by name or object: no fallback
        tokenize_batches([["a"]], Broken())
    monkeypatch.setattr(t, "get_tokenizer", lambda kind="auto": Broken() if kind == "auto" else PortTokenizer())
    toks, name, notes = tokenize_batches([["the dog."]], "auto")
    assert toks == [[["the", "dog"]]] and name == PORT_NAME and "JVM crashed" in notes[0]


def test_a_failing_java_run_falls_back_with_a_note_in_scoring_statistics(monkeypatch):
    from giqa.bench.bleu_job import coco_bleu_stats

    class BrokenIds:
        name = "broken java"

        def id_batches(self, batches):
            raise BackendError("JVM crashed")

        tokenize_batches = id_batches

    import giqa.bench.tokenizers as t

    with pytest.raises(BackendError):
        coco_bleu_stats(["the dog ."], ["the dog ."], BrokenIds())
    monkeypatch.setattr(t, "get_tokenizer", lambda kind="auto": BrokenIds() if kind == "auto" else PortTokenizer())
    stats, name, notes = coco_bleu_stats(["the dog ."], ["the dog ."], "auto")
    assert name == PORT_NAME and "JVM crashed" in notes[0]
    assert stats[0].tolist() == [2, 2, 2, 1, 0, 0, 2, 1, 0, 0]  # "the dog": 2 words, punctuation gone


# Raw tokeniser output lines (lower case, space-separated) that take each branch of coco_ids:
# ASCII lines (punctuation dropped by id), a no-break space inside a token (split after the
# punctuation filter, so a "." piece stays), other non-ASCII and control characters, empty lines.
RAW_LINES = [
    ["the sky is blue .", "", "-- ... ; `` '' ` ' ! ? , : -", "1\xa0. x .", "caf\u00e9 , au lait", "a\tb , c", "-lrb- x -rrb-"],
    ["the sky .", "1\xa0. y", "", "caf\u00e9 au lait .", "a\tb", "x", "-LRB- . -lrb-"],
]


def test_coco_ids_are_coco_words_as_ids():
    from giqa.bench.bleu import bleu_stats, bleu_stats_from_ids
    from giqa.bench.ptb import coco_ids, coco_words

    _assert_ids_are_words(RAW_LINES, coco_ids, coco_words)
    (r, h), vocab = coco_ids(RAW_LINES)
    words = [[coco_words(line) for line in b] for b in RAW_LINES]
    assert words[0][3] == ["1", ".", "x"]  # the no-break piece survives, the lone "." does not
    stats = bleu_stats_from_ids(h[0], h[1], r[0], r[1], vocab)
    assert np.array_equal(stats, bleu_stats(words[1], [[w] for w in words[0]]))
    assert coco_ids([[], [""]])[0][0][1].size == 0


def _assert_ids_are_words(raw, coco_ids, coco_words):
    """Each batch's ids spell coco_words of its lines, with one vocabulary for all batches."""
    batches, _ = coco_ids(raw)
    word_of: dict = {}
    id_of: dict = {}
    for (ids, lens), lines in zip(batches, raw):
        words = [coco_words(line) for line in lines]
        assert lens.tolist() == [len(w) for w in words]
        for i, w in zip(ids.tolist(), [w for ws in words for w in ws]):
            assert word_of.setdefault(i, w) == w and id_of.setdefault(w, i) == i


def _build(pattern: str, size: int) -> str:
    return (pattern * (size // len(pattern) + 1))[:size]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pattern", ["a,", "<!a", "@a,", "x.com/", "<a b='", "(a", "1 ", "&", "a'"])
def test_adversarial_text_finishes(pattern):
    """100 KB of patterns that would make a naive longest-match lexer quadratic (rules that
    scan far ahead and fail at every position): each regex sees at most WINDOW characters,
    so a quadratic scan cannot happen. No timing is asserted; the timeout separates the
    complexity classes."""
    text = _build(pattern, 100_000)
    assert len(ptb_tokenize(text)) <= len(text)


# pieces that make trailing contexts and multi-chunk tokens cross white space
_PIECES = ["I.", "d.", "U.S.", "etc.", "fig.", "No.", "Mr.", "e.g.", "co.", "pty.", "The", "About", "It", "3", "1/2",
           "555", "1234", "(555)", ".", "..", ". .", "<b>", "<a", "b='x'>", "word", "word.", "'90", "1.jpg", ":)", "(",
           "ltd", "A", "cannot", "sky,", "d.\u2009", "x.\u00a0", "\u00a0", "\u2009", "\u3000", "\u200b", "\n", "&",
           '"', "'", "-", "--", "http://a.com", "foo@bar.com", "www.x.org"]
_SEPS = [" ", " ", "  ", "\t", " \u00a0", "\u00a0 ", " \u2009 ", "\n", " \n ", ""]


def test_the_chunk_cache_never_changes_the_tokens():
    """lex() reuses the tokens of chunks between white space only where no rule can see past
    the chunk's first following space; the uncached lexer over the whole text is the oracle."""
    import random

    from giqa.bench import _ptb_lexer as lexer

    rng = random.Random(0)
    for k in range(3000):
        text = "".join(rng.choice(_PIECES) + rng.choice(_SEPS) for _ in range(rng.randint(1, 12)))
        if k % 500 == 0:
            lexer._caches.clear()
        assert lexer.lex(text) == lexer._scan(text, 0, lexer._gate_marks(text)), text


@needs_java
def test_jvm_options_change_nothing_in_the_output():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "ptb"))
    from corpus import make_corpus

    texts = [t for _, t in make_corpus(100, seed=9)]
    assert JavaPtbTokenizer().tokenize_batch(texts) == JavaPtbTokenizer(jvm_options=()).tokenize_batch(texts)
