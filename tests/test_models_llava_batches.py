"""giqa.models._llava_batches: planning the LLaVA passes (pure Python; torch only for left_pad)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from giqa.models._llava_batches import crop_keys, expand_image_tokens, left_pad, length_order, plan_rows, split_prefix


def test_expand_and_split_prefix():
    ids = [1, 5, 9, 3, 7, 8]
    full = expand_image_tokens(ids, 9, 3)
    assert full == [1, 5, 9, 9, 9, 3, 7, 8]
    assert split_prefix(full, 9) == ((1, 5, 9, 9, 9), (3, 7, 8))
    assert split_prefix([1, 2], 9) == ((), (1, 2))
    assert expand_image_tokens([], 9, 4) == []


def test_crop_keys_by_pixels_not_identity():
    a = Image.new("RGB", (4, 3), (1, 2, 3))
    b = a.copy()
    c = Image.new("RGB", (3, 4), (1, 2, 3))  # same bytes, other size
    d = Image.new("RGB", (4, 3), (1, 2, 4))
    assert crop_keys([a, b, c, a, d, b]) == [0, 0, 2, 0, 4, 0]
    assert crop_keys([]) == []


def test_length_order_longest_first_ties_in_order():
    assert length_order([3, 5, 3, 9]) == [3, 1, 0, 2]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 40)), min_size=1, max_size=30), st.integers(1, 7))
def test_plan_rows_properties(rows, batch_size):
    crop_of_row = [c for c, _ in rows]
    lengths = [n for _, n in rows]
    plan = plan_rows(crop_of_row, lengths, batch_size)
    assert sorted(r for b in plan for r in b) == list(range(len(rows)))  # every row once
    assert all(1 <= len(b) <= batch_size for b in plan)
    for crop in set(crop_of_row):
        mine = [r for r, c in enumerate(crop_of_row) if c == crop]
        batches = {k for k, b in enumerate(plan) for r in b if r in mine}
        assert len(batches) == -(-len(mine) // batch_size)  # together where they fit
    longest = [max(lengths[r] for r in b) for b in plan]
    assert longest[0] == max(lengths)


def test_plan_rows_sorts_single_crops_by_length():
    assert plan_rows([0, 1, 2, 3, 4], [2, 9, 4, 7, 1], 2) == [[1, 3], [2, 0], [4]]


def test_left_pad():
    pytest.importorskip("torch")
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


@pytest.mark.parametrize("role", ["quality_filter", "vlm"])
def test_prefetch_keeps_record_keys(role):
    from giqa.models import BackendSpec

    plain = BackendSpec(role=role, name="llava", settings={"model_id": "m"})
    assert plain.fingerprint() == BackendSpec(role=role, name="llava", settings={"model_id": "m", "prefetch": 2}).fingerprint()
