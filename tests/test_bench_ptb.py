"""PTB tokeniser plumbing: which tokeniser COCO BLEU uses and says it used, one JVM per run,
the Java runner's batches, and the port's linear time on adversarial text."""

from __future__ import annotations

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
