"""The scanner's canonical fast path gives exactly the general scanner's parse, and stays linear."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import re

from giqa.text.scanner import _canonical_parts, _scan_canonical, _scan_general, canonical_mentions, scan_giqa

# Pieces of model output: canonical mentions, near-canonical ones the general scanner must
# handle (out of range, swapped, spacing, empty phrase, newline in a phrase, missing brackets),
# and prose with parentheses and angle brackets that may or may not start a group.
PIECES = [
    "[tower](<35, 319>)", "[water surface](<160, 299>, <200, 399>)", "[ sky ](<0, 399>)", "[a](<399, 0>)",
    "[x](<5, 400>)", "[](<1, 22>)", "[ ](<1, 22>)", "[t\nw](<1, 22>)", "[t](<1,22>)", "[t] (<1, 22>)",
    "t](<1, 22>)", "[t(<1, 22>)", "(<1, 22>)", "<3, 4>", "[t](0.1, 0.2, 0.3, 0.4)", "[t](<1, 2",
    "[t](<0001, 22>)", "[t](<1234567890, 1>)",
    "the", " ", "is blurry.", "(taken at night)", "( 5 )", "(<", "< 3", "<b>", "a < b", "\n", "-", "[", "]",
    "e.g. (a)", "50% (<x)", "\t(",
]
# Markup of the other box formats, and giqa mentions whose phrase looks like one (bench detection).
OTHER_MARKUP = [
    "<ref>cat</ref><box>(1,2),(3,4)</box>", "<loc_12>", "<loc0256>", "<phrase>dog</phrase><object><patch_index_0001>",
    "[0.1,0.2,0.3,0.4]", "[12, 34, 56, 78]", "[0.1,0.2,0.3,0.4](<1, 22>)", "[ 12, 34, 56, 78](<1, 22>)",
    "[.5](<1, 2>)", "[\u0663 cats](<1, 2>)", "[t](0.1, 0.2, 0.3, 0.4)", "x<y",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=8).map("".join), st.sampled_from([(20, 20), (7, 3), (1, 1)]))
def test_fast_path_equals_general_scanner(text, grid):
    n, m = grid
    fast = _scan_canonical(text, n, m)
    general = _scan_general(text, n, m, False)
    if fast is not None:
        assert fast == general
        assert not general.issues
    assert scan_giqa(text, n=n, m=m) == general


def test_fast_path_takes_canonical_text_and_declines_the_rest():
    text = "The [tower](<35, 319>) is clear (no noise), the [water surface](<160, 299>, <200, 399>) a < b.\nEnd."
    fast = _scan_canonical(text, 20, 20)
    assert fast is not None and fast == _scan_general(text, 20, 20, False)
    assert fast.text == "The tower is clear (no noise), the water surface a < b.\nEnd."
    assert [(s.phrase, s.indices) for s in fast.spans] == [("tower", [(35, 319)]),
                                                           ("water surface", [(160, 299), (200, 399)])]
    fast.spans[0].boxes.append(fast.spans[1].boxes[0])  # spans own their lists (decoding is cached)
    assert len(scan_giqa(text).spans[0].boxes) == 1
    for declined in ("[a](<399, 0>)", "[](<1, 2>)", "[a](<1, 2>) (<3, 4>)", "a](<1, 2>)", "[a](<1, 2>) [b"):
        assert _scan_canonical(declined, 20, 20) is None
        assert _scan_general(declined, 20, 20, False).issues


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pattern", ["[a](<1, 2>), ", "[a](<1, 2>, ", "[" + "a" * 50, "[a](<1, 2>) (", "<1"])
def test_fast_path_one_megabyte_finishes(pattern):
    text = (pattern * (1_000_000 // len(pattern) + 1))[:1_000_000]
    assert len(scan_giqa(text).text) <= len(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES + OTHER_MARKUP), max_size=8).map("".join),
       st.sampled_from([(20, 20), (7, 3), (1, 1)]))
def test_canonical_mentions_equal_the_scanner(text, grid):
    n, m = grid
    got = canonical_mentions(text, n, m)
    full = scan_giqa(text, n=n, m=m)
    if got is None:
        assert _scan_canonical(text, n, m) is None
        return
    clean, mentions, _ = got
    assert clean == full.text and not full.issues
    assert mentions == [(s.phrase, tuple(b.as_tuple() for b in s.boxes)) for s in full.spans]


def test_canonical_mentions_flag_what_may_be_other_markup():
    assert canonical_mentions("The [sky](<0, 19>) is blue.") == ("The sky is blue.", [("sky", ((0.025, 0.025, 0.975, 0.025),))], True)
    assert canonical_mentions("No markup (at all).") == ("No markup (at all).", [], True)
    for text in ("[sky](<0, 19>) <ref>", "[ 12, 3, 4, 5](<0, 19>)", "[.5](<0, 19>)", "[\u0663](<0, 19>)"):
        assert canonical_mentions(text)[2] is False, text
    assert canonical_mentions("[sky](<19, 0>)") is None  # swapped: the scanner reports it


# The fast path's definition as one regex (what it was first written as): a whole canonical
# mention, or anything outside one that makes the general scanner act. Split by it, a text
# qualifies when no piece of the second kind occurs.
_ONE_REGEX = re.compile(
    r"\[([^\[\]<(\n]*)\](\(<\d{1,9}, \d{1,9}>(?:, <\d{1,9}, \d{1,9}>)*\))"
    r"|[\[\]]|\([ \t]*[0-9.<-]|<[ \t]*[0-9.-]"
)
_EDGE_PIECES = ["(\t5", "( <", "(-", "(.", "<-", "<.", "< \t7", "<a", "(a", "]", "[", "][", "(", "<", "\t", "\u0663"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES + OTHER_MARKUP + _EDGE_PIECES), max_size=10).map("".join))
def test_canonical_parts_equal_the_one_regex_split(text):
    parts = _ONE_REGEX.split(text)
    assert _canonical_parts(text) == (None if None in parts else parts)
