"""giqa.geometry.box_merge / box_merge_batched: the documented Box-Merge fixpoint."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giqa.errors import InvalidBoxError
from giqa.geometry import AREA_THR, COVER_THR, box_merge, box_merge_batched

SETTINGS = settings(max_examples=80, deadline=None)
FEW = settings(max_examples=30, deadline=None)  # tests that also run the parallel kernels

# Coarse lattice coordinates make touching edges, shared corners and nesting common.
_coord = st.integers(0, 16).map(lambda v: v / 16)


@st.composite
def box_arrays(draw, min_size=0, max_size=10):
    n = draw(st.integers(min_size, max_size))
    rows = []
    for _ in range(n):
        xa, xb, ya, yb = (draw(_coord) for _ in range(4))
        rows.append((min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)))
    return np.array(rows, dtype=np.float64).reshape(n, 4)


_thresholds = st.tuples(st.sampled_from([0.0, 0.05, AREA_THR, 0.6]), st.sampled_from([0.5, COVER_THR, 1.0]))


# -- plain-Python statements of the paper's listing -------------------------------------------
def _area(b):
    return (b[2] - b[0]) * (b[3] - b[1])


def _touch(p, q):
    return max(p[0], q[0]) <= min(p[2], q[2]) and max(p[1], q[1]) <= min(p[3], q[3])


def _coverage(p, q):
    small = min(_area(p), _area(q))
    if not _touch(p, q) or small <= 0:
        return 0.0
    w = min(p[2], q[2]) - max(p[0], q[0])
    h = min(p[3], q[3]) - max(p[1], q[1])
    return (w * h) / small


def rule(p, q, area_thr, cover_thr):
    """The symmetric form: what no two output boxes may satisfy (the fixpoint property)."""
    return (min(_area(p), _area(q)) < area_thr and _touch(p, q)) or _coverage(p, q) > cover_thr


def algorithm1(boxes, groups, area_thr, cover_thr):
    """Alg. 1 lines 10-19 as listed: R[i] absorbs R[j] and is re-tested as the grown box."""
    r, g = list(boxes), [list(x) for x in groups]
    i = 0
    while i < len(r):
        j = i + 1
        while j < len(r):
            if _area(r[i]) < area_thr and _touch(r[i], r[j]) or _coverage(r[i], r[j]) > cover_thr:
                p, q = r[i], r[j]
                r[i] = (min(p[0], q[0]), min(p[1], q[1]), max(p[2], q[2]), max(p[3], q[3]))
                g[i] += g[j]
                del r[j], g[j]
            else:
                j += 1
        i += 1
    return r, g


def reference_merge(boxes, area_thr, cover_thr):
    """Algorithm 1 in canonical order (area, then x1, y1, x2, y2), repeated to a fixpoint."""
    cur = [tuple(float(v) + 0.0 for v in b) for b in boxes]
    groups = [[i] for i in range(len(cur))]
    while True:
        order = sorted(range(len(cur)), key=lambda c: (_area(cur[c]), cur[c]))
        new, new_groups = algorithm1([cur[c] for c in order], [groups[c] for c in order], area_thr, cover_thr)
        done = len(new) == len(cur)
        cur, groups = new, new_groups
        if done:
            break
    order = sorted(range(len(cur)), key=lambda c: cur[c])
    assignment = [0] * len(boxes)
    for rank, c in enumerate(order):
        for i in groups[c]:
            assignment[i] = rank
    return np.array([cur[c] for c in order]).reshape(-1, 4), np.array(assignment, dtype=np.int64)


def _pairs(boxes, merged, assignment):
    """(input box, its output box) pairs as a sorted list: identical inputs are interchangeable."""
    return sorted((tuple(b), tuple(merged[a])) for b, a in zip(boxes.tolist(), assignment.tolist()))


# -- properties ------------------------------------------------------------------------------
@SETTINGS
@given(boxes=box_arrays(), thr=_thresholds)
def test_matches_algorithm1_and_is_a_fixpoint(boxes, thr):
    merged, assignment = box_merge(boxes, *thr)
    ref_merged, ref_assignment = reference_merge(boxes, *thr)
    np.testing.assert_array_equal(merged, ref_merged)
    assert _pairs(boxes, merged, assignment) == _pairs(boxes, ref_merged, ref_assignment)
    k = len(merged)
    assert k <= len(boxes)
    for p in range(k):
        for q in range(p + 1, k):
            assert not rule(merged[p], merged[q], *thr), (merged[p], merged[q])


@SETTINGS
@given(boxes=box_arrays(min_size=1), thr=_thresholds, data=st.data())
def test_order_independent(boxes, thr, data):
    perm = np.array(data.draw(st.permutations(range(len(boxes)))))
    merged, assignment = box_merge(boxes, *thr)
    merged_p, assignment_p = box_merge(boxes[perm], *thr)
    np.testing.assert_array_equal(merged, merged_p)
    assert _pairs(boxes, merged, assignment) == _pairs(boxes[perm], merged_p, assignment_p)


@SETTINGS
@given(boxes=box_arrays(), thr=_thresholds)
def test_each_output_is_the_enclosing_box_of_its_inputs(boxes, thr):
    merged, assignment = box_merge(boxes, *thr)
    assert assignment.dtype == np.int64 and assignment.shape == (len(boxes),)
    assert sorted(set(assignment.tolist())) == list(range(len(merged)))  # every output used
    for k, box in enumerate(merged):
        members = boxes[assignment == k]
        np.testing.assert_array_equal(box, [*members[:, :2].min(0), *members[:, 2:].max(0)])
    # sorted by (x1, y1, x2, y2)
    assert [tuple(r) for r in merged.tolist()] == sorted(tuple(r) for r in merged.tolist())


@FEW
@given(images=st.lists(box_arrays(max_size=6), max_size=8), thr=_thresholds)
def test_batched_equals_per_image(images, thr):
    flat = np.concatenate(images) if images else np.zeros((0, 4))
    offsets = np.cumsum([0] + [len(b) for b in images])
    for parallel in (False, True):
        merged, moff, assignment = box_merge_batched(flat, offsets, *thr, parallel=parallel)
        assert moff.shape == (len(images) + 1,) and moff.dtype == np.int64
        assert assignment.shape == (len(flat),)
        for b, boxes in enumerate(images):
            m1, a1 = box_merge(boxes, *thr)
            np.testing.assert_array_equal(merged[moff[b] : moff[b + 1]], m1)
            np.testing.assert_array_equal(assignment[offsets[b] : offsets[b + 1]], a1)


# -- golden cases ----------------------------------------------------------------------------
def test_small_touching_boxes_merge_and_far_ones_do_not():
    boxes = [[0.1, 0.1, 0.2, 0.2], [0.2, 0.1, 0.3, 0.2], [0.6, 0.6, 0.9, 0.9]]
    merged, assignment = box_merge(boxes)
    np.testing.assert_allclose(merged, [[0.1, 0.1, 0.3, 0.2], [0.6, 0.6, 0.9, 0.9]])
    assert assignment.tolist() == [0, 0, 1]


def test_shared_corner_counts_as_touching():
    merged, _ = box_merge([[0.0, 0.0, 0.1, 0.1], [0.1, 0.1, 0.2, 0.2]])
    np.testing.assert_allclose(merged, [[0.0, 0.0, 0.2, 0.2]])


def test_large_touching_boxes_stay_apart_unless_covered():
    halves = [[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]]  # area 0.5 each, share an edge
    merged, _ = box_merge(halves)
    assert len(merged) == 2
    # a large box 96 % inside another merges by coverage
    nested = [[0.0, 0.0, 0.8, 0.8], [0.0, 0.0, 0.8, 0.784]]
    merged, assignment = box_merge(nested)
    np.testing.assert_allclose(merged, [[0.0, 0.0, 0.8, 0.8]])
    assert assignment.tolist() == [0, 0]
    # two large boxes overlapping by 97.5 % of the smaller one merge, by 90 % they do not
    assert len(box_merge([[0.0, 0.0, 0.8, 0.8], [0.0, 0.02, 0.8, 0.82]])[0]) == 1
    assert len(box_merge([[0.0, 0.0, 0.8, 0.8], [0.0, 0.08, 0.8, 0.88]])[0]) == 2


def test_bridge_box_joins_one_large_box_only():
    # The small box touches both large ones. Alg. 1 merges it into one of them; the grown box
    # is no longer small, so the two large boxes (coverage 0.08) stay apart in any order.
    a, b, bridge = [0, 0, 0.6, 0.6], [0.65, 0, 1, 0.8], [0.55, 0.1, 0.7, 0.2]
    for boxes in ([a, b, bridge], [bridge, a, b], [b, bridge, a]):
        merged, assignment = box_merge(boxes)
        np.testing.assert_allclose(merged, [[0, 0, 0.6, 0.6], [0.55, 0, 1, 0.8]])
        assert [tuple(merged[i]) for i in assignment] == [
            tuple(merged[0]) if box is a else tuple(merged[1]) for box in boxes
        ]
    merged, _, _ = box_merge_batched(np.array([a, b, bridge] * 2), [0, 3, 6])
    assert len(merged) == 4


def test_small_box_is_absorbed_into_large_in_either_order():
    # the small box touches the large one; whichever comes first, they merge
    big, small = [0.0, 0.0, 0.8, 0.8], [0.8, 0.0, 0.9, 0.1]
    for boxes in ([big, small], [small, big]):
        merged, assignment = box_merge(boxes)
        np.testing.assert_allclose(merged, [[0.0, 0.0, 0.9, 0.8]])


def test_growth_creates_new_merges_until_fixpoint():
    # a and b touch; their union reaches c, which touches neither a nor b alone.
    a, b, c = [0.0, 0.0, 0.1, 0.1], [0.1, 0.0, 0.2, 0.05], [0.15, 0.08, 0.3, 0.2]
    assert not rule(a, c, AREA_THR, COVER_THR) and not rule(b, c, AREA_THR, COVER_THR)
    merged, assignment = box_merge([a, b, c])
    np.testing.assert_allclose(merged, [[0.0, 0.0, 0.3, 0.2]])
    assert assignment.tolist() == [0, 0, 0]


def test_precedence_small_and_touch_or_coverage():
    # small but apart: no merge (the area test alone is not enough)
    assert len(box_merge([[0.0, 0.0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6]])[0]) == 2
    # large, apart: no merge; large, nested: merge by coverage whatever the area threshold
    assert len(box_merge([[0.0, 0.0, 0.6, 0.6], [0.0, 0.7, 1.0, 1.0]])[0]) == 2
    assert len(box_merge([[0.0, 0.0, 0.9, 0.9], [0.1, 0.1, 0.8, 0.8]], area_thr=0.0)[0]) == 1
    # touching with area_thr=0: only coverage can merge
    assert len(box_merge([[0.0, 0.0, 0.1, 0.1], [0.1, 0.0, 0.2, 0.1]], area_thr=0.0)[0]) == 2


def test_float32_kept_and_ints_upcast():
    f32 = np.array([[0.1, 0.1, 0.2, 0.2], [0.2, 0.1, 0.3, 0.2]], np.float32)
    merged, _ = box_merge(f32)
    assert merged.dtype == np.float32
    np.testing.assert_array_equal(merged, [[f32[0, 0], f32[0, 1], f32[1, 2], f32[1, 3]]])
    merged, _ = box_merge(np.array([[0, 0, 1, 1]]))
    assert merged.dtype == np.float64


def test_empty_inputs():
    merged, assignment = box_merge(np.zeros((0, 4), np.float32))
    assert merged.shape == (0, 4) and merged.dtype == np.float32 and assignment.shape == (0,)
    merged, assignment = box_merge([])
    assert merged.shape == (0, 4) and assignment.dtype == np.int64
    merged, moff, assignment = box_merge_batched(np.zeros((0, 4)), [0])
    assert merged.shape == (0, 4) and moff.tolist() == [0] and assignment.shape == (0,)
    merged, moff, assignment = box_merge_batched(np.zeros((0, 4)), [0, 0, 0])
    assert moff.tolist() == [0, 0, 0]


def test_single_box_is_kept():
    merged, assignment = box_merge([[0.2, 0.3, 0.4, 0.5]])
    np.testing.assert_array_equal(merged, [[0.2, 0.3, 0.4, 0.5]])
    assert assignment.tolist() == [0]


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_raises(bad):
    boxes = np.array([[0.1, 0.1, 0.2, 0.2], [0.1, bad, 0.3, 0.3]])
    with pytest.raises(InvalidBoxError, match=r"boxes\[1\].*not finite"):
        box_merge(boxes)
    with pytest.raises(InvalidBoxError, match=r"boxes\[1\]"):
        box_merge_batched(boxes, [0, 1, 2])


def test_inverted_raises():
    with pytest.raises(InvalidBoxError, match="inverted"):
        box_merge([[0.3, 0.1, 0.2, 0.2]])


def test_bad_shapes_and_thresholds():
    with pytest.raises(ValueError, match=r"expected \(N, 4\)"):
        box_merge(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="area_thr"):
        box_merge(np.zeros((1, 4)), area_thr=float("nan"))
    with pytest.raises(ValueError, match="area_thr"):
        box_merge(np.zeros((1, 4)), area_thr=-1)
    with pytest.raises(ValueError, match="cover_thr"):
        box_merge(np.zeros((1, 4)), cover_thr=1.5)


@pytest.mark.parametrize(
    "offsets,err",
    [([1, 2], ValueError), ([0, 1], ValueError), ([0, 2, 1, 2], ValueError), ([[0, 2]], ValueError),
     ([], ValueError), (np.array([0.0, 2.0]), TypeError)],
)
def test_bad_offsets(offsets, err):
    with pytest.raises(err, match="offsets"):
        box_merge_batched(np.zeros((2, 4)), offsets)
