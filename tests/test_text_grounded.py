"""giqa's grounded-text codec: format, parse (strict and lenient), fuse, strip."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giqa.errors import FormatError, InvalidBoxError, ParseError
from giqa.geometry import GridCodec
from giqa.text import (
    GroundedSpan,
    ParsedText,
    format_boxes,
    format_phrase,
    fuse,
    fuse_report,
    parse_grounded,
    strip_coordinates,
)
from giqa.types import Box, GroundedPhrase

TOWER = (0.775, 0.075, 0.975, 0.775)


def xyxy(span: GroundedSpan) -> list[tuple[float, ...]]:
    return [tuple(round(v, 9) for v in b.as_tuple()) for b in span.boxes]


# -- golden cases from NOTES.md -----------------------------------------------------------


def test_tower_decodes_to_the_figure_box():
    p = parse_grounded("[tower](<35, 319>)", strict=True)
    assert p.text == "tower"
    (s,) = p.spans
    assert (s.phrase, s.start, s.end, s.indices) == ("tower", 0, 5, [(35, 319)])
    assert xyxy(s) == [TOWER]
    assert format_phrase("tower", [TOWER]) == "[tower](<35, 319>)"


def test_window_is_the_right_half_and_388_a_left_strip():
    (w,) = parse_grounded("The [window](<10, 399>).", strict=True).spans
    x1, y1, x2, y2 = w.boxes[0].as_tuple()
    assert x1 > 0.5 and x2 > 0.95 and y1 < 0.05 and y2 > 0.95
    (strip,) = parse_grounded("[s](<0, 388>)", strict=True).spans
    x1, y1, x2, y2 = strip.boxes[0].as_tuple()
    assert x1 < 0.05 and x2 < 0.5 and y1 < 0.05 and y2 > 0.95


def test_buildings_share_one_pair_of_parentheses():
    text = "[buildings](<60, 230>, <111, 219>)"
    p = parse_grounded(text, strict=True)
    (s,) = p.spans
    assert s.indices == [(60, 230), (111, 219)]
    codec = GridCodec(20, 20)
    assert xyxy(s) == [tuple(round(v, 9) for v in r) for r in codec.decode([[60, 230], [111, 219]]).tolist()]
    assert format_phrase("buildings", s.boxes) == text


def test_des_answer_excerpt():
    text = (
        "The texture of the [tower](<35, 319>) is clear, the [stones](<240, 399>) are sharp, "
        "and the [water surface](<160, 299>) shows ripples."
    )
    p = parse_grounded(text, strict=True)
    assert p.text == (
        "The texture of the tower is clear, the stones are sharp, and the water surface shows ripples."
    )
    assert [s.phrase for s in p.spans] == ["tower", "stones", "water surface"]
    for s in p.spans:
        assert p.text[s.start:s.end] == s.phrase
    assert [s.indices for s in p.spans] == [[(35, 319)], [(240, 399)], [(160, 299)]]
    assert p.ok


@pytest.mark.parametrize(
    "question, clean, phrases",
    [
        (
            "Is the texture of the [candles](<33, 354>, <22, 324>) clear and distinguishable?",
            "Is the texture of the candles clear and distinguishable?",
            [("candles", [(33, 354), (22, 324)])],
        ),
        (
            "How clear is the texture of the [numeric-shaped candles](<46, 313>)?",
            "How clear is the texture of the numeric-shaped candles?",
            [("numeric-shaped candles", [(46, 313)])],
        ),
        ("The texture of [candles](<33, 354>, <22, 324>).", "The texture of candles.", [("candles", [(33, 354), (22, 324)])]),
        ("Why is the [dog](<142, 309>) in the image not clear?", "Why is the dog in the image not clear?", [("dog", [(142, 309)])]),
        ("The [window](<10, 399>).", "The window.", [("window", [(10, 399)])]),
        ("What is clear in the image?", "What is clear in the image?", []),
    ],
)
def test_vqa_examples(question, clean, phrases):
    p = parse_grounded(question, strict=True)
    assert p.text == clean
    assert [(s.phrase, s.indices) for s in p.spans] == phrases


def test_to_phrases_feeds_grounded_phrase():
    p = parse_grounded("a [dog](<142, 309>) and (<1, 2>)")
    (gp,) = p.to_phrases()  # the phrase-less box is kept in spans, not in phrases
    assert isinstance(gp, GroundedPhrase) and gp.span == (2, 5) and gp.phrase == "dog"
    assert len(p.boxes) == 2


# -- writing ---------------------------------------------------------------------------------


def test_norm_style_two_decimals_ties_to_even():
    assert format_phrase("p", [(0.12, 0.3, 0.55, 0.8)], style="norm") == "[p](0.12, 0.30, 0.55, 0.80)"
    assert format_boxes([(0.125, 0.375, 0.5, 1.0)], style="norm") == "(0.12, 0.38, 0.50, 1.00)"
    two = format_phrase("p", [Box.from_xyxy((0.1, 0.2, 0.3, 0.4)), (0.5, 0.5, 1, 1)], style="norm")
    assert two == "[p](0.10, 0.20, 0.30, 0.40; 0.50, 0.50, 1.00, 1.00)"
    (s,) = parse_grounded(two, strict=True).spans
    assert xyxy(s) == [(0.1, 0.2, 0.3, 0.4), (0.5, 0.5, 1.0, 1.0)] and s.indices == []


def test_format_accepts_arrays_and_non_square_grids():
    arr = np.array([[0.0, 0.0, 1.0, 1.0]])
    assert format_phrase("all", arr) == "[all](<0, 399>)"
    assert format_phrase("all", arr, n=4, m=2) == "[all](<0, 7>)"
    (s,) = parse_grounded("[all](<0, 7>)", n=4, m=2, strict=True).spans
    assert xyxy(s) == [(0.125, 0.25, 0.875, 0.75)]


@pytest.mark.parametrize("phrase", ["", "  ", "a]b", "[a", "two\nlines"])
def test_format_rejects_unwritable_phrases(phrase):
    with pytest.raises(FormatError):
        format_phrase(phrase, [TOWER])


def test_format_rejects_bad_boxes_and_styles():
    with pytest.raises(InvalidBoxError):
        format_phrase("p", [(0.5, 0.5, 0.2, 0.9)])
    with pytest.raises(InvalidBoxError):
        format_phrase("p", [(0, 0, 1.5, 1)])
    with pytest.raises(FormatError):
        format_phrase("p", [])
    with pytest.raises(ValueError):
        format_phrase("p", [TOWER], style="pixels")
    with pytest.raises(InvalidBoxError, match="wrap it in a list"):
        format_phrase("p", TOWER)
    with pytest.raises(InvalidBoxError, match="4 numbers"):
        format_phrase("p", [None])


# -- lenient and strict ------------------------------------------------------------------------

MALFORMED = [
    ("the [tower] (< 35 ,319 >) is", "the tower is", [("tower", [(35, 319)])], "non-canonical"),
    ("[tower](<35,319>)", "tower", [("tower", [(35, 319)])], "non-canonical"),
    ("[tower](35, 319)", "tower", [("tower", [(35, 319)])], "missing '<'"),
    ("[tower]<35, 319> is", "tower is", [("tower", [(35, 319)])], "without parentheses"),
    ("[tower](<35, 319> is", "tower is", [("tower", [(35, 319)])], "missing ')'"),
    ("the tower](<35, 319>) x", "the tower x", [("tower", [(35, 319)])], "missing '['"),
    ("[tower(<35, 319>) x", "tower x", [("tower", [(35, 319)])], "missing ']'"),
    ("[t](<401, 3>, <35, 319>)", "t", [("t", [(35, 319)])], "out of range"),
    ("[t](<319, 35>)", "t", [("t", [(319, 35)])], "swapped"),
    ("x [tower](<35, 3", "x tower", [("tower", [])], "truncated"),
    ("x [tower](<35, 319>", "x tower", [("tower", [(35, 319)])], "truncated"),
    ("x [tower](", "x tower", [("tower", [])], "truncated"),
    ("x [tow", "x tow", [], "unclosed '['"),
    ("a (<35, 319>) b", "a b", [("", [(35, 319)])], "without a phrase"),
    ("[t](<1.5, 3>)", "t", [("t", [])], "integers"),
    ("[t](<99999999999999999999999, 3>)", "t", [("t", [])], "out of range"),
    ("[t](<1, 2>; <3, 4>)", "t", [("t", [(1, 2), (3, 4)])], "';'"),
    ("[t](0.1, 0.2, 0.3, 1.4)", "t", [("t", [])], "outside [0, 1]"),
    ("[](<35, 319>)", "", [("", [(35, 319)])], "empty phrase"),
]


@pytest.mark.parametrize("text, clean, spans, issue", MALFORMED)
def test_lenient_mends_and_strict_raises(text, clean, spans, issue):
    p = parse_grounded(text)
    assert p.text == clean
    assert [(s.phrase, s.indices) for s in p.spans] == spans
    assert any(issue in i for i in p.issues), p.issues
    for s in p.spans:
        assert p.text[s.start:s.end] == s.phrase
    with pytest.raises(ParseError, match=r"offset \d+, line 1, column \d+"):
        parse_grounded(text, strict=True)


def test_swapped_corners_mend_to_the_same_box():
    (a,) = parse_grounded("[t](<319, 35>)").spans
    assert xyxy(a) == [TOWER]


def test_strict_error_names_line_and_column():
    with pytest.raises(ParseError, match="line 2, column 9"):
        parse_grounded("ok\nthe [t](<500, 1>)", strict=True)


@pytest.mark.parametrize(
    "text",
    [
        "plain text, no boxes.",
        "a [citation] and [link](http://example.org) stay",
        "math: a<b, (1, 2) and [3](4)",
        "",
    ],
)
def test_plain_text_is_left_alone(text):
    p = parse_grounded(text, strict=True)
    assert p.text == text and p.spans == [] and p.issues == []


def test_strip_coordinates():
    assert strip_coordinates("The [tower](<35, 319>) is [sharp](0.1, 0.2, 0.3, 0.4).") == "The tower is sharp."
    assert strip_coordinates("broken [t](<35, 3") == "broken t"
    kosmos = "<grounding> An image of<phrase> a snowman</phrase><object><patch_index_0044><patch_index_0863></object>."
    assert strip_coordinates(kosmos, fmt="kosmos2") == "An image of a snowman."
    assert strip_coordinates("a <ref>dog</ref><box>(1,2),(3,4)</box> runs", fmt="qwen-vl") == "a dog runs"


def test_parse_rejects_non_strings_and_bad_grids():
    with pytest.raises(TypeError):
        parse_grounded(b"[t](<1, 2>)")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        parse_grounded("no boxes", n=0)
    with pytest.raises(TypeError):
        parse_grounded("no boxes", n=2.5)  # type: ignore[arg-type]


# -- fuse ------------------------------------------------------------------------------------


def gp(phrase, *boxes, span=None):
    return GroundedPhrase(phrase=phrase, boxes=tuple(Box.from_xyxy(b) for b in boxes), span=span)


def test_fuse_writes_at_the_first_free_word_bounded_mention():
    text = "The towering Tower is sharp; the tower behind it is not."
    out = fuse(text, [gp("tower", TOWER), gp("tower", (0, 0, 0.5, 1))])
    assert out == "The towering [Tower](<35, 319>) is sharp; the [tower](<0, 390>) behind it is not."
    assert parse_grounded(out, strict=True).text == text


def test_fuse_uses_span_and_reports_left_out_phrases():
    text = "The dog chases the dog."
    rep = fuse_report(
        text,
        [gp("dog", (0, 0, 0.5, 0.5), span=(19, 22)), gp("dog", TOWER), gp("cat", TOWER), gp("dog")],
    )
    assert rep.text == "The [dog](<35, 319>) chases the [dog](<0, 210>)."
    assert [p.phrase for p, _ in rep.placed] == ["dog", "dog"]
    assert sorted(r for _, r in rep.skipped) == ["no boxes", "no free word-bounded mention in the text"]


def test_fuse_norm_style_and_round_trip():
    text = "Blurry water surface under a clear sky."
    phrases = [gp("water surface", (0.1, 0.5, 0.9, 0.95)), gp("sky", (0, 0, 1, 0.4))]
    out = fuse(text, phrases, style="norm")
    assert out == "Blurry [water surface](0.10, 0.50, 0.90, 0.95) under a clear [sky](0.00, 0.00, 1.00, 0.40)."
    back = parse_grounded(out, strict=True)
    assert back.text == text
    assert [(p.phrase, p.span) for p in back.to_phrases()] == [("water surface", (7, 20)), ("sky", (35, 38))]


def test_fuse_in_another_format_skips_unwritable_mentions():
    from giqa.text import get_format

    text = "A dog; a cat."
    out = get_format("paligemma").fuse(text, [gp("dog;", TOWER), gp("cat", TOWER)])
    assert out == "A dog; a <loc0077><loc0793><loc0793><loc0997> cat."
    assert get_format("qwen-vl").fuse(text, [gp("dog", TOWER)]) == "A <ref>dog</ref><box>(775,75),(975,775)</box>; a cat."


def test_fuse_skips_overlapping_and_outside_spans():
    rep = fuse_report("a b c", [gp("a b", TOWER, span=(0, 3)), gp("b", TOWER, span=(2, 3)), gp("c", TOWER, span=(4, 9))])
    assert rep.text == "[a b](<35, 319>) c"
    assert len(rep.skipped) == 2


# -- properties ------------------------------------------------------------------------------

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC-'0123456789", min_size=1, max_size=8)
PHRASE = st.lists(WORD, min_size=1, max_size=3).map(" ".join)
FILLER = st.lists(st.sampled_from(["the", "is", "blurry,", "and", "sharp.", "A", "of", "noise"]), max_size=4).map(
    lambda ws: " ".join(ws)
)


@st.composite
def boxes(draw, max_boxes=3):
    out = []
    for _ in range(draw(st.integers(1, max_boxes))):
        xs = sorted(draw(st.floats(0, 1, allow_nan=False)) for _ in range(2))
        ys = sorted(draw(st.floats(0, 1, allow_nan=False)) for _ in range(2))
        out.append((xs[0], ys[0], xs[1], ys[1]))
    return out


@st.composite
def grounded_docs(draw):
    n = draw(st.integers(1, 40))
    m = draw(st.integers(1, 40))
    items = draw(st.lists(st.tuples(FILLER, PHRASE, boxes()), max_size=5))
    tail = draw(FILLER)
    return n, m, items, tail


@settings(max_examples=100, deadline=None)
@given(grounded_docs())
def test_parse_inverts_format_on_canonical_text(doc):
    n, m, items, tail = doc
    codec = GridCodec(n, m)
    raw, clean = [], []
    for filler, phrase, bs in items:
        raw.append(f"{filler} {format_phrase(phrase, bs, n=n, m=m)} ")
        clean.append(f"{filler} {phrase} ")
    raw.append(tail)
    clean.append(tail)
    p = parse_grounded("".join(raw), n=n, m=m, strict=True)
    assert p.text == "".join(clean)
    assert [s.phrase for s in p.spans] == [phrase for _, phrase, _ in items]
    for s, (_, phrase, bs) in zip(p.spans, items):
        assert p.text[s.start:s.end] == phrase
        idx = codec.encode(np.array(bs))
        assert s.indices == [tuple(r) for r in idx.tolist()]
        assert np.allclose([b.as_tuple() for b in s.boxes], codec.decode(idx), atol=0, rtol=0)
        for b, orig in zip(s.boxes, bs):  # within half a cell of the written box
            assert abs(b.x1 - orig[0]) <= 0.5 / n + 1e-9 or math.isclose(orig[0], 1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(FILLER, PHRASE, boxes(2)), max_size=4))
def test_norm_style_round_trip(items):
    raw = "".join(f"{f} {format_phrase(p, bs, style='norm')} " for f, p, bs in items)
    parsed = parse_grounded(raw, strict=True)
    for s, (_, phrase, bs) in zip(parsed.spans, items, strict=True):
        assert s.phrase == phrase
        assert [b.as_tuple() for b in s.boxes] == [tuple(float(f"{v:.2f}") for v in b) for b in bs]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="[]()<>,;.0123456789 ab\n-", max_size=60))
def test_lenient_never_crashes_and_spans_point_into_text(text):
    p = parse_grounded(text)
    assert isinstance(p, ParsedText)
    for s in p.spans:
        assert 0 <= s.start <= s.end <= len(p.text)
        assert p.text[s.start:s.end] == s.phrase
    assert strip_coordinates(text) == p.text
