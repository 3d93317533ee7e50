"""giqa.geometry overlap measures: IoU, coverage (IoS), touch; pairwise and element-wise."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giqa.errors import InvalidBoxError
from giqa.geometry import (
    COORD_LIMIT,
    box_merge,
    coverage,
    iou,
    pairwise_coverage,
    pairwise_iou,
    pairwise_touch,
    touch,
)

SETTINGS = settings(max_examples=60, deadline=None)

# Coordinates on a 2**-20 lattice are exact in float32 and float64, so the float results can be
# compared with an exact rational oracle at a tight tolerance.
_lattice = st.integers(0, 1 << 20).map(lambda v: v / (1 << 20))
_any01 = st.floats(0, 1, allow_subnormal=False)


@st.composite
def box_arrays(draw, coord=_lattice, min_size=0, max_size=12):
    n = draw(st.integers(min_size, max_size))
    rows = []
    for _ in range(n):
        xa, xb, ya, yb = (draw(coord) for _ in range(4))
        rows.append((min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)))
    return np.array(rows, dtype=np.float64).reshape(n, 4)


def _exact(a, b, kind):
    ax1, ay1, ax2, ay2 = (Fraction(float(v)) for v in a)
    bx1, by1, bx2, by2 = (Fraction(float(v)) for v in b)
    w = max(min(ax2, bx2) - max(ax1, bx1), 0)
    h = max(min(ay2, by2) - max(ay1, by1), 0)
    inter = w * h
    aa = (ax2 - ax1) * (ay2 - ay1)
    ab = (bx2 - bx1) * (by2 - by1)
    if kind == "iou":
        union = aa + ab - inter
        return inter / union if union else Fraction(0)
    small = min(aa, ab)
    return inter / small if small else Fraction(0)


def _oracle(a, b, kind):
    return np.array([[float(_exact(p, q, kind)) for q in b] for p in a]).reshape(len(a), len(b))


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("kind", ["iou", "coverage"])
@SETTINGS
@given(a=box_arrays(), b=box_arrays())
def test_matches_exact_fraction_oracle(dtype, tol, kind, a, b):
    a = a.astype(dtype)
    b = b.astype(dtype)
    fn = pairwise_iou if kind == "iou" else pairwise_coverage
    got = fn(a, b)
    assert got.dtype == dtype and got.shape == (len(a), len(b))
    np.testing.assert_allclose(got, _oracle(a, b, kind), rtol=tol, atol=tol)


@SETTINGS
@given(a=box_arrays(coord=_any01), b=box_arrays(coord=_any01))
def test_symmetric_in_range_and_ios_at_least_iou(a, b):
    ab = pairwise_iou(a, b)
    assert np.array_equal(ab, pairwise_iou(b, a).T)
    cov = pairwise_coverage(a, b)
    assert np.array_equal(cov, pairwise_coverage(b, a).T)
    assert np.array_equal(pairwise_touch(a, b), pairwise_touch(b, a).T)
    for m in (ab, cov):
        assert not np.isnan(m).any()
        assert ((m >= 0) & (m <= 1)).all()
    assert (cov >= ab).all()
    # no overlap area without touching
    assert not (ab[~pairwise_touch(a, b)] > 0).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(a=box_arrays(coord=_lattice, min_size=1))
def test_self_iou_is_one_for_positive_area(dtype, a):
    a = a.astype(dtype)
    d = np.diag(pairwise_iou(a, a))
    positive = (a[:, 2] > a[:, 0]) & (a[:, 3] > a[:, 1])
    assert (d[positive] == 1).all()
    assert (d[~positive] == 0).all()
    assert (iou(a, a)[positive] == 1).all()
    assert pairwise_touch(a, a).diagonal().all()


@SETTINGS
@given(a=box_arrays(min_size=1, max_size=20), data=st.data())
def test_elementwise_is_the_pairwise_diagonal(a, data):
    b = data.draw(box_arrays(min_size=len(a), max_size=len(a)))
    np.testing.assert_array_equal(iou(a, b), np.diag(pairwise_iou(a, b)))
    np.testing.assert_array_equal(coverage(a, b), np.diag(pairwise_coverage(a, b)))
    np.testing.assert_array_equal(touch(a, b), np.diag(pairwise_touch(a, b)))


def _random_boxes(n, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2))
    wh = rng.random((n, 2)) * 0.3
    return np.concatenate([xy, np.minimum(xy + wh, 1)], axis=1).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_and_parallel_kernels_agree(dtype):
    a = _random_boxes(300, 1, dtype)
    b = _random_boxes(257, 2, dtype)
    for fn in (pairwise_iou, pairwise_coverage, pairwise_touch):
        s = fn(a, b, parallel=False)
        p = fn(a, b, parallel=True)
        assert np.array_equal(s, p)
    big_a = _random_boxes(70_000, 3, dtype)
    big_b = _random_boxes(70_000, 4, dtype)
    for fn in (iou, coverage, touch):  # 70k rows runs the parallel element-wise kernels
        full = fn(big_a, big_b)
        assert np.array_equal(full[:500], fn(big_a[:500], big_b[:500]))


def test_known_values():
    a = [[0, 0, 0.5, 0.5]]
    b = [[0, 0, 0.5, 0.5], [0.25, 0, 0.75, 0.5], [0.5, 0.5, 1, 1], [0.6, 0, 1, 1], [0.1, 0.1, 0.2, 0.2]]
    np.testing.assert_allclose(pairwise_iou(a, b), [[1, 1 / 3, 0, 0, 0.04]])
    np.testing.assert_allclose(pairwise_coverage(a, b), [[1, 0.5, 0, 0, 1]])
    # a shared corner counts as touching (closed rectangles), a gap does not
    assert pairwise_touch(a, b).tolist() == [[True, True, True, False, True]]


def test_degenerate_boxes_give_zero_not_nan():
    pts = np.array([[0.3, 0.3, 0.3, 0.3], [0.3, 0.3, 0.3, 0.3], [0.1, 0.2, 0.1, 0.9], [0, 0, 1, 1]])
    for fn in (pairwise_iou, pairwise_coverage):
        m = fn(pts, pts)
        assert not np.isnan(m).any()
        assert m[:3, :3].max() == 0
        assert m[3, 3] == 1
    assert pairwise_touch(pts, pts)[0, 3]


def test_dtypes():
    f32 = np.array([[0, 0, 0.5, 0.5]], np.float32)
    f64 = f32.astype(np.float64)
    assert pairwise_iou(f32, f32).dtype == np.float32
    assert pairwise_iou(f32, f64).dtype == np.float64
    assert pairwise_iou(f64, f32).dtype == np.float64
    ints = np.array([[0, 0, 10, 10], [5, 5, 15, 15]])
    out = pairwise_iou(ints, ints)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[0, 1], 25 / 175)
    assert pairwise_iou(f32.astype(np.float16), f32).dtype == np.float32
    assert iou(f32, f32).dtype == np.float32 and touch(f32, f32).dtype == np.bool_
    # non-contiguous and big-endian inputs are accepted
    wide = np.zeros((3, 8))
    wide[:, 4::2] = 1
    np.testing.assert_allclose(pairwise_iou(wide[:, ::2], wide[:, ::2]), np.ones((3, 3)))
    be = np.array([[0, 0, 1, 1]], dtype=">f8")
    assert pairwise_iou(be, be)[0, 0] == 1


def test_empty_inputs():
    a = np.zeros((0, 4), np.float32)
    b = _random_boxes(3, 0, np.float32)
    for fn in (pairwise_iou, pairwise_coverage, pairwise_touch):
        assert fn(a, b).shape == (0, 3)
        assert fn(b, a).shape == (3, 0)
        assert fn([], []).shape == (0, 0)
    assert pairwise_iou(a, b).dtype == np.float32
    assert iou(a, a).shape == (0,) and touch([], []).shape == (0,)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("fn", [pairwise_iou, pairwise_coverage, pairwise_touch, iou, coverage, touch])
def test_non_finite_raises(fn, bad):
    good = np.array([[0.0, 0.0, 0.5, 0.5], [0.1, 0.1, 0.2, 0.2]])
    broken = good.copy()
    broken[1, 2] = bad
    with pytest.raises(InvalidBoxError, match=r"\[1\].*not finite"):
        fn(broken, good)
    with pytest.raises(InvalidBoxError, match=r"b\[1\]"):
        fn(good, broken)


@pytest.mark.parametrize("fn", [pairwise_iou, iou, touch])
def test_inverted_raises(fn):
    good = np.array([[0.0, 0.0, 0.5, 0.5]])
    with pytest.raises(InvalidBoxError, match="inverted: x1=0.6 > x2=0.5"):
        fn([[0.6, 0.0, 0.5, 0.5]], good)
    with pytest.raises(InvalidBoxError, match="inverted: y1"):
        fn(good, [[0.0, 0.7, 0.5, 0.5]])


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 4, 1), (3, 3)])
def test_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"expected \(N, 4\).*got " + str(shape).replace("(", r"\(").replace(")", r"\)")):
        pairwise_iou(np.zeros(shape), np.zeros((1, 4)))


def test_bad_dtype_and_lengths():
    with pytest.raises(TypeError, match="dtype"):
        pairwise_iou(np.array([["a", "b", "c", "d"]]), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="equal lengths"):
        iou(np.zeros((2, 4)), np.zeros((3, 4)))


# -- the supported coordinate range ------------------------------------------------------------
_FNS = [pairwise_iou, pairwise_coverage, pairwise_touch, iou, coverage, touch]


@pytest.mark.parametrize("fn", _FNS + [lambda a, b: box_merge(a)])
@pytest.mark.parametrize("big", [1e200, -1e19, 2e18])
def test_huge_finite_coordinates_raise_instead_of_nan(fn, big):
    box = [[big, big, 1.0, 1.0]] if big < 0 else [[0.0, 0.0, big, big]]
    with pytest.raises(InvalidBoxError, match=r"\[0\].*outside the supported range \|v\| <= 1e\+18"):
        fn(box, [[0.0, 0.0, 1.0, 1.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(data=st.data())
def test_never_nan_inside_the_range(dtype, data):
    lim = float(dtype(COORD_LIMIT))  # float32(1e18) is a little below 1e18
    coord = st.floats(-lim, lim, allow_nan=False, width=32 if dtype is np.float32 else 64)
    a = data.draw(box_arrays(coord=coord, min_size=1, max_size=6)).astype(dtype)
    b = data.draw(box_arrays(coord=coord, min_size=len(a), max_size=len(a))).astype(dtype)
    edge = np.array([[-lim, -lim, lim, lim]], dtype)
    a, b = np.concatenate([a, edge]), np.concatenate([b, edge])
    for m in (pairwise_iou(a, b), pairwise_coverage(a, b), iou(a, b), coverage(a, b)):
        assert np.isfinite(m).all() and (m >= 0).all() and (m <= 1 + 1e-6).all()
    assert pairwise_iou(edge, edge)[0, 0] == 1


@pytest.mark.parametrize("fn", [iou, coverage, touch])
def test_elementwise_names_the_first_bad_row_of_either_operand(fn):
    good = _random_boxes(40, 5)
    bad = good.copy()
    bad[[17, 30], 0] = bad[[17, 30], 2] + 0.1  # inverted
    with pytest.raises(InvalidBoxError, match=r"^a\[17\].*inverted"):
        fn(bad, good)
    with pytest.raises(InvalidBoxError, match=r"^b\[17\].*inverted"):
        fn(good, bad)
    big_good = _random_boxes(70_000, 6)
    big_bad = big_good.copy()
    big_bad[69_999, 3] = np.nan  # parallel kernel, last chunk
    with pytest.raises(InvalidBoxError, match=r"^b\[69999\].*not finite"):
        fn(big_good, big_bad)
