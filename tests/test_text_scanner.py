"""The scanner's canonical fast path gives exactly the general scanner's parse, and stays linear."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giqa.text.scanner import _scan_canonical, _scan_general, scan_giqa

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
