"""giqa.geometry.GridCodec: the paper's <idx_l, idx_r> box encoding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giqa.errors import GridIndexError, InvalidBoxError
from giqa.geometry import GridCodec
from giqa.types import Box

SETTINGS = settings(max_examples=80, deadline=None)
FEW = settings(max_examples=30, deadline=None)  # tests that also run the parallel kernels
_grids = st.tuples(st.integers(1, 64), st.integers(1, 64))
_coord = st.floats(0, 1)


def _oracle_cell(v, k, dtype=np.float64):
    """Cell of v as stored in ``dtype``: the number of float64 boundaries j/k (j = 1..k-1) at
    or below the value widened to float64."""
    bounds = np.arange(1, k, dtype=np.float64) / k
    return int(np.searchsorted(bounds, np.float64(dtype(v)), side="right"))


def _python_path(codec, boxes):
    """The plain-Python encoder that runs for <= 16 rows while the kernels are not loaded."""
    bx, by = codec._bounds()
    return np.array([codec._encode_py(row, bx, by, i) for i, row in enumerate(boxes.tolist())], np.int64).reshape(-1, 2)


def _all_paths(codec, boxes):
    """Encode through the default path, the serial and the parallel kernel and plain Python."""
    out = [codec.encode(boxes), codec.encode(boxes, parallel=False), codec.encode(boxes, parallel=True),
           _python_path(codec, boxes)]
    for o in out[1:]:
        np.testing.assert_array_equal(out[0], o)
    return out[0]


# -- golden cases from NOTES.md ----------------------------------------------------------
def test_tower_window_and_strip_examples():
    codec = GridCodec(20, 20)
    np.testing.assert_allclose(codec.decode([[35, 319]]), [[0.775, 0.075, 0.975, 0.775]])
    x1, y1, x2, y2 = codec.decode_pair(10, 399)  # the window: right half of the image
    assert (x1, x2) == (0.525, 0.975) and (y1, y2) == (0.025, 0.975)
    x1, y1, x2, y2 = codec.decode_pair(0, 388)  # a left strip
    assert x1 == 0.025 and x2 == pytest.approx(0.425) and (y1, y2) == (0.025, 0.975)
    assert codec.encode([[0.775, 0.075, 0.975, 0.775]]).tolist() == [[35, 319]]
    assert codec.encode_box(0.5, 0.0, 1.0, 1.0) == (10, 399)


@pytest.mark.parametrize("dtype,cell", [(np.float64, 29), (np.float32, 28)])
def test_float_floor_error_is_absorbed(dtype, cell):
    assert 0.29 * 100 < 29  # the trap: float64 0.29 is cell 29 all the same
    assert float(np.float32(0.29)) < 0.29  # float32 0.29 really lies in cell 28
    codec = GridCodec(100, 100)
    boxes = np.array([[0.29, 0.29, 0.29, 0.29]] * 20, dtype)  # 20 rows: kernel path
    assert _all_paths(codec, boxes)[0].tolist() == [cell * 100 + cell] * 2
    assert codec.encode(boxes[:1]).tolist() == [[cell * 101] * 2]
    assert codec.encode_box(*boxes[0].tolist()) == (cell * 101, cell * 101)


def test_every_float64_boundary_k_over_n_lands_in_cell_k():
    for n in range(1, 151):
        k = np.arange(n)
        xs = k / n
        boxes = np.stack([xs, np.zeros_like(xs), xs, np.zeros_like(xs)], axis=1)
        got = GridCodec(n, 1).encode(boxes, parallel=False)
        assert got[:, 0].tolist() == k.tolist(), n
        # the float just below a boundary belongs to the previous cell
        below = np.nextafter(xs[1:], 0.0)
        boxes = np.stack([below, np.zeros_like(below), below, np.zeros_like(below)], axis=1)
        assert GridCodec(n, 1).encode(boxes, parallel=False)[:, 0].tolist() == k[:-1].tolist()


def _paths_of_one_column(codec, x):
    """Column of x (one float32) by every path a box can take to the grid."""
    from giqa.text import format_phrase, parse_grounded

    f32 = np.array([[x, 0, x, 0]], np.float32)
    cols = {
        "encode float32": codec.encode(f32)[0, 0],
        "encode float32, kernel": codec.encode(f32, parallel=False)[0, 0],
        "encode float32, many rows": codec.encode(np.repeat(f32, 40, 0), parallel=True)[-1, 0],
        "encode float32, Python": _python_path(codec, f32)[0, 0],
        "encode widened": codec.encode(f32.astype(np.float64))[0, 0],
        "encode_box": codec.encode_box(*f32[0].tolist())[0],
        "Box.to_grid": Box.from_xyxy(f32[0].tolist()).to_grid(codec.n, codec.m)[0],
        "format_phrase": parse_grounded(format_phrase("p", f32, n=codec.n, m=codec.m), n=codec.n,
                                        m=codec.m).spans[0].indices[0][0],
    }
    return {k: int(v) % codec.n for k, v in cols.items()}


@pytest.mark.parametrize("n", [20, 7, 32, 100, 640])
def test_float32_columns_agree_on_every_path(n):
    """One rule: widen to float64, then the floor-safe encode (issue 12: x1 = float32(224/640)
    was column 7 by GridCodec.encode and 6 by format_phrase and Box.to_grid)."""
    codec = GridCodec(n, 3)
    xs = (np.arange(n + 1) / n).astype(np.float32)
    for x in np.concatenate([xs, np.nextafter(xs, np.float32(0)), np.nextafter(xs, np.float32(1))]):
        x = np.float32(min(max(x, 0), 1))
        cols = _paths_of_one_column(codec, x)
        assert set(cols.values()) == {min(_oracle_cell(x, n, np.float32), n - 1)}, (x, cols)


def test_float32_224_over_640_is_column_6_everywhere():
    x = np.float32(224 / 640)
    assert float(x) < 0.35
    assert set(_paths_of_one_column(GridCodec(20, 20), x).values()) == {6}


def test_one_stays_in_the_last_cell_and_non_square_grids():
    codec = GridCodec(10, 5)  # 10 columns, 5 rows
    assert codec.encode_box(1.0, 1.0, 1.0, 1.0) == (49, 49)
    assert codec.encode([[0.0, 0.0, 1.0, 1.0]]).tolist() == [[0, 49]]
    assert codec.encode([[0.95, 0.0, 0.05, 0.99]]).tolist() == [[0, 49]]  # swapped x mended
    assert codec.decode_pair(49, 0) == (0.95, 0.9, 0.05, 0.1)
    assert codec.encode_box(0.35, 0.45, 0.35, 0.45) == (2 * 10 + 3, 2 * 10 + 3)
    np.testing.assert_allclose(codec.decode([[23, 23]]), [[0.35, 0.5, 0.35, 0.5]])
    assert GridCodec(1, 1).encode([[0.0, 0.0, 1.0, 1.0]]).tolist() == [[0, 0]]


def test_swapped_corners_are_mended_per_axis():
    codec = GridCodec()
    ordered = codec.encode_box(0.1, 0.2, 0.6, 0.7)
    assert codec.encode_box(0.6, 0.2, 0.1, 0.7) == ordered
    assert codec.encode_box(0.1, 0.7, 0.6, 0.2) == ordered
    assert codec.encode_box(0.6, 0.7, 0.1, 0.2) == ordered


def test_noise_outside_unit_square_is_clamped():
    codec = GridCodec()
    assert codec.encode_box(-5e-7, -5e-7, 1 + 5e-7, 1 + 5e-7) == (0, 399)
    boxes = np.array([[-5e-7, -5e-7, 1 + 5e-7, 1 + 5e-7]] * 20)
    assert _all_paths(codec, boxes)[0].tolist() == [0, 399]


# -- properties ------------------------------------------------------------------------------
@st.composite
def boxes_and_grid(draw, max_rows=40):
    n, m = draw(_grids)
    rows = draw(st.integers(0, max_rows))
    boxes = np.array([[draw(_coord) for _ in range(4)] for _ in range(rows)]).reshape(rows, 4)
    return GridCodec(n, m), boxes


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@FEW
@given(case=boxes_and_grid())
def test_encode_matches_oracle_and_all_paths_agree(dtype, case):
    codec, boxes = case
    boxes = boxes.astype(dtype)
    idx = _all_paths(codec, boxes)
    assert idx.dtype == np.int64 and idx.shape == (len(boxes), 2)
    assert ((idx >= 0) & (idx < codec.cells)).all()
    n, m = codec.n, codec.m
    for row, (l, r) in zip(boxes, idx.tolist()):
        x1, y1, x2, y2 = row
        assert l == _oracle_cell(min(y1, y2), m, dtype) * n + _oracle_cell(min(x1, x2), n, dtype)
        assert r == _oracle_cell(max(y1, y2), m, dtype) * n + _oracle_cell(max(x1, x2), n, dtype)
        assert codec.encode_box(*row.tolist()) == (l, r)


@SETTINGS
@given(case=boxes_and_grid())
def test_decode_of_encode_is_within_half_a_cell(case):
    codec, boxes = case
    dec = codec.decode(codec.encode(boxes))
    lo = np.minimum(boxes[:, :2], boxes[:, 2:])
    hi = np.maximum(boxes[:, :2], boxes[:, 2:])
    half = np.array([0.5 / codec.n, 0.5 / codec.m]) + 1e-12
    assert (np.abs(dec[:, :2] - lo) <= half).all()
    assert (np.abs(dec[:, 2:] - hi) <= half).all()


@FEW
@given(grid=_grids, data=st.data())
def test_encode_of_decode_is_identity(grid, data):
    codec = GridCodec(*grid)
    pairs = data.draw(st.lists(st.tuples(*[st.integers(0, codec.cells - 1)] * 2), max_size=40))
    idx = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    dec = codec.decode(idx)
    assert dec.dtype == np.float64
    np.testing.assert_array_equal(dec, codec.decode(idx, parallel=False))
    np.testing.assert_array_equal(dec, codec.decode(idx, parallel=True))
    # encode mends corners per axis, so the identity holds for top-left/bottom-right pairs
    n = codec.n
    row, col = idx // n, idx % n
    canonical = np.stack(
        [row.min(1) * n + col.min(1), row.max(1) * n + col.max(1)], axis=1
    ).reshape(-1, 2)
    np.testing.assert_array_equal(codec.encode(dec), canonical)
    top_left = (row[:, 0] <= row[:, 1]) & (col[:, 0] <= col[:, 1])
    np.testing.assert_array_equal(codec.encode(dec[top_left]), idx[top_left])
    for (l, r), row in zip(pairs, dec.tolist()):
        assert codec.decode_pair(l, r) == tuple(row)


@SETTINGS
@given(grid=_grids, xs=st.lists(_coord, min_size=2, max_size=30))
def test_monotonic_per_axis(grid, xs):
    codec = GridCodec(*grid)
    xs = np.sort(np.array(xs))
    along_x = codec.encode(np.stack([xs, np.zeros_like(xs), xs, np.zeros_like(xs)], axis=1))[:, 0]
    along_y = codec.encode(np.stack([np.zeros_like(xs), xs, np.zeros_like(xs), xs], axis=1))[:, 0]
    assert (np.diff(along_x) >= 0).all() and (np.diff(along_y) >= 0).all()
    assert (along_x < codec.n).all() and (along_y % codec.n == 0).all()


def test_exhaustive_round_trip_small_grids():
    for n, m in [(1, 1), (3, 7), (20, 20), (32, 32), (100, 50)]:
        codec = GridCodec(n, m)
        cells = np.arange(codec.cells)
        for idx in (np.stack([cells, cells], 1), np.stack([0 * cells, cells], 1), np.stack([cells, 0 * cells + codec.cells - 1], 1)):
            np.testing.assert_array_equal(codec.encode(codec.decode(idx)), idx)


def test_box_helpers_use_the_codec():
    box = Box.from_grid(35, 319)
    assert box.as_tuple() == pytest.approx((0.775, 0.075, 0.975, 0.775))
    assert box.to_grid() == (35, 319)
    assert Box.from_xyxy((0.29, 0.29, 1.0, 1.0)).to_grid(100, 100) == (2929, 9999)


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1.1, -0.01])
@pytest.mark.parametrize("rows", [1, 40])
def test_bad_coordinates_raise(bad, rows):
    boxes = np.full((rows, 4), 0.5)
    boxes[rows - 1, 2] = bad
    with pytest.raises(InvalidBoxError, match=rf"boxes\[{rows - 1}\]: x2="):
        GridCodec().encode(boxes)
    with pytest.raises(InvalidBoxError):
        GridCodec().encode(boxes.astype(np.float32), parallel=True)
    with pytest.raises(InvalidBoxError, match="x2="):
        GridCodec().encode_box(0.5, 0.5, bad, 0.5)


@pytest.mark.parametrize("value", [400, -1, 10**6])
@pytest.mark.parametrize("rows", [1, 40])
def test_out_of_range_indices_raise_naming_the_value(value, rows):
    idx = np.zeros((rows, 2), np.int64)
    idx[rows - 1, 1] = value
    with pytest.raises(GridIndexError, match=rf"grid index {value} \(row {rows - 1}\).*\[0, 400\)"):
        GridCodec().decode(idx)
    with pytest.raises(GridIndexError, match=str(value)):
        GridCodec().decode_pair(0, value)


def test_index_type_errors():
    codec = GridCodec()
    with pytest.raises(TypeError, match="integers"):
        codec.decode(np.array([[1.0, 2.0]]))
    with pytest.raises(GridIndexError, match="not an integer"):
        codec.decode_pair(1.5, 2)
    with pytest.raises(GridIndexError, match="not an integer"):
        codec.decode_pair(True, 2)
    with pytest.raises(GridIndexError, match=str(2**70)):
        codec.decode([[0, 2**70]])
    with pytest.raises(GridIndexError, match=str(2**64 - 1)):
        codec.decode(np.array([[0, 2**64 - 1]], dtype=np.uint64))


def test_shape_errors_and_empty():
    codec = GridCodec()
    with pytest.raises(ValueError, match=r"expected \(N, 4\).*\(3,\)"):
        codec.encode([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"expected \(N, 2\).*\(2, 3\)"):
        codec.decode([[1, 2, 3], [4, 5, 6]])
    assert codec.encode([]).shape == (0, 2) and codec.encode([]).dtype == np.int64
    assert codec.decode([]).shape == (0, 4) and codec.decode(np.zeros((0, 2), int)).dtype == np.float64


@pytest.mark.parametrize("n,m,err", [(0, 20, ValueError), (20, -1, ValueError), (2.0, 20, TypeError), (True, 2, TypeError), (2**21, 1, ValueError)])
def test_bad_grid_sizes(n, m, err):
    with pytest.raises(err):
        GridCodec(n, m)


def test_codec_value_semantics():
    assert GridCodec(20, 10) == GridCodec(20, 10) != GridCodec(10, 20)
    assert hash(GridCodec()) == hash(GridCodec(20, 20))
    assert repr(GridCodec(3, 4)) == "GridCodec(n=3, m=4)" and GridCodec(3, 4).cells == 12
