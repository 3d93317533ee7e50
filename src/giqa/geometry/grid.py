"""The paper's discrete box encoding: a box as the grid cells of its two corners.

The image is cut into ``n`` columns and ``m`` rows, numbered row-major from the top-left cell:
``idx = row * n + col`` in ``[0, n*m)``. A box ``(x1, y1, x2, y2)`` becomes
``(idx_l, idx_r)``, the cells holding its top-left and bottom-right corners, and a pair decodes
to the cell centres ``x = (idx % n + 0.5) / n``, ``y = (idx // n + 0.5) / m``.

Rules where the paper is silent (see docs/geometry.md):

* Cell of a coordinate ``v`` on an axis with ``k`` cells: ``v`` is widened to float64 (exact for
  float32 and float16), then the cell is the number of boundaries ``b_j = j / k``
  (``j = 1 .. k-1``, in float64) with ``b_j <= v``. That is ``floor(v * k)`` computed without
  float error: ``0.29`` with ``n = 100`` is cell 29 even though ``0.29 * 100 ==
  28.999999999999996``. A coordinate on a boundary belongs to the cell after it; ``v = 1.0``
  stays in the last cell (``k - 1``). Every path (arrays of any float type, the scalar helper,
  ``Box.to_grid``, the text codec) applies this one rule, so ``np.float32(224 / 640)``
  (0.3499999940...) is column 6 of 20 everywhere.
* Swapped corners are mended per axis: ``idx_l`` uses ``min(x1, x2), min(y1, y2)`` and
  ``idx_r`` the maxima.
* Coordinates must be finite and in ``[0, 1]``; up to 1e-6 outside is clamped (float noise),
  anything else raises :class:`giqa.errors.InvalidBoxError`.
* Indices must be integers in ``[0, n*m)``; others raise :class:`giqa.errors.GridIndexError`
  naming the value.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from giqa.errors import GridIndexError, InvalidBoxError

__all__ = ["GridCodec"]

_TOL = 1e-6
_MAX_CELLS_PER_AXIS = 1 << 20
# Up to this many rows, while the kernels are not loaded, a plain-Python loop runs instead: it
# needs no Numba (Box.to_grid and the text codec stay free of the Numba import). Once loaded the
# kernel is faster from one row on (benchmarks/bench_geometry.py, "grid small inputs").
_SMALL = 16
_PAR_ROWS = 1 << 17

_k = None


def _kernels():
    global _k
    if _k is None:
        from giqa.geometry import _grid_kernels

        _k = _grid_kernels
    return _k


def _py_cell(v: float, bounds: list, k: int) -> int:
    """Same rule as the kernel: ``bounds[j] = j / k`` in float64, ``bounds[k] = inf``."""
    c = min(int(v * k), k - 1)
    if v < bounds[c]:
        c -= 1
    elif v >= bounds[c + 1]:
        c += 1
    return c


def _round_in_cell(v: float, bounds: list, k: int, decimals: int) -> float:
    r = round(v, decimals)
    if not (0.0 <= v <= 1.0):
        return r
    cell = _py_cell(v, bounds, k)
    if _py_cell(r, bounds, k) == cell:
        return r
    step = 10.0**-decimals
    for cand in (round(r - step, decimals), round(r + step, decimals)):
        if 0.0 <= cand <= 1.0 and _py_cell(cand, bounds, k) == cell:
            return cand
    return v


class GridCodec:
    """Encode boxes as ``(idx_l, idx_r)`` grid-cell pairs and decode them to cell centres.

    Parameters
    ----------
    n : int
        Columns (cells along x), ``1 <= n <= 2**20``. The paper uses 20.
    m : int
        Rows (cells along y), ``1 <= m <= 2**20``. The paper uses 20.

    Examples
    --------
    >>> codec = GridCodec(20, 20)
    >>> codec.encode([[0.775, 0.075, 0.975, 0.775]]).tolist()
    [[35, 319]]
    >>> codec.decode([[35, 319]]).round(3).tolist()
    [[0.775, 0.075, 0.975, 0.775]]
    """

    __slots__ = ("n", "m", "_table")

    def __init__(self, n: int = 20, m: int = 20) -> None:
        for name, v in (("n", n), ("m", m)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"grid size {name} must be an int, got {v!r}")
            if not 1 <= v <= _MAX_CELLS_PER_AXIS:
                raise ValueError(f"grid size {name}={v} must lie in [1, {_MAX_CELLS_PER_AXIS}]")
        self.n = int(n)
        self.m = int(m)
        self._table: tuple | None = None

    # -- identity --------------------------------------------------------------------------
    @property
    def cells(self) -> int:
        """Number of cells, ``n * m``; valid indices are ``0 .. cells - 1``."""
        return self.n * self.m

    def __repr__(self) -> str:
        return f"GridCodec(n={self.n}, m={self.m})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GridCodec) and (self.n, self.m) == (other.n, other.m)

    def __hash__(self) -> int:
        return hash((GridCodec, self.n, self.m))

    def _bounds(self) -> tuple[list, list]:
        """Cell boundaries ``j / k`` (``j < k``) in float64, then ``inf``, per axis, as lists."""
        if self._table is None:
            bx = np.append(np.arange(self.n, dtype=np.float64) / self.n, np.inf)
            by = np.append(np.arange(self.m, dtype=np.float64) / self.m, np.inf)
            self._table = (bx.tolist(), by.tolist())
        return self._table

    # -- arrays ----------------------------------------------------------------------------
    def encode(self, boxes: Any, *, parallel: bool | None = None) -> np.ndarray:
        """Boxes ``(N, 4)`` normalised ``xyxy`` -> ``(N, 2)`` int64 ``(idx_l, idx_r)``.

        Coordinates of any float type are widened to float64 and compared with the float64
        boundaries ``j / k`` (module docstring), so float32 input gets the cells its exact
        values lie in: ``np.float32(0.29)`` (0.28999999...) is cell 28 of 100, as it is for
        ``Box.to_grid`` and the text codec. ``parallel`` forces the kernel choice (default:
        parallel from 131072 rows). Raises ``ValueError`` for a wrong shape and
        :class:`InvalidBoxError` for a NaN, inf or out-of-``[0, 1]`` coordinate.
        """
        from giqa.geometry._validate import as_boxes

        arr = as_boxes(boxes)
        rows = arr.shape[0]
        out = np.empty((rows, 2), np.int64)
        if rows == 0:
            return out
        if rows <= _SMALL and parallel is None and _k is None:
            bxl, byl = self._bounds()
            for i, row in enumerate(arr.tolist()):
                out[i] = self._encode_py(row, bxl, byl, i)
            return out
        k = _kernels()
        fn = k.encode_parallel if (rows >= _PAR_ROWS if parallel is None else parallel) else k.encode_serial
        if fn(arr.reshape(-1), self.n, self.m, -_TOL, 1 + _TOL, out.reshape(-1)):
            wide = arr.astype(np.float64)
            bad = int(np.flatnonzero(~((wide >= -_TOL) & (wide <= 1 + _TOL)).all(axis=1))[0])  # NaN too
            bxl, byl = self._bounds()
            self._encode_py(wide[bad].tolist(), bxl, byl, bad)  # raises with the reason
            raise InvalidBoxError(f"boxes[{bad}] = {tuple(wide[bad].tolist())} is not a valid box")
        return out

    def decode(self, indices: Any, *, parallel: bool | None = None) -> np.ndarray:
        """Index pairs ``(N, 2)`` -> ``(N, 4)`` float64 cell-centre boxes ``xyxy``.

        ``x = (idx % n + 0.5) / n`` and ``y = (idx // n + 0.5) / m`` for each of the two
        indices. Raises ``ValueError`` for a wrong shape, ``TypeError`` for non-integer input
        and :class:`GridIndexError` naming the first index outside ``[0, n*m)``.
        """
        arr = indices if type(indices) is np.ndarray else np.asarray(indices)
        if arr.ndim != 2 or arr.shape[1] != 2:
            if arr.ndim == 1 and arr.shape[0] == 0:
                arr = arr.reshape(0, 2)
            else:
                raise ValueError(f"indices: expected (N, 2) index pairs (idx_l, idx_r), got {arr.shape}")
        rows = arr.shape[0]
        out = np.empty((rows, 4), np.float64)
        if rows == 0:
            return out
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "O":
                self._check_objects(arr)
            raise TypeError(f"indices: expected integers, got dtype {arr.dtype}")
        if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and int(arr.max()) >= self.cells:
            self._raise_index(arr)
        if arr.dtype != np.int64 or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=np.int64)
        if rows <= _SMALL and parallel is None and _k is None:
            pairs = arr.tolist()
            cells = self.cells
            if not all(0 <= v < cells for pair in pairs for v in pair):
                self._raise_index(arr)
            for i, (l, r) in enumerate(pairs):
                out[i] = self.decode_pair(l, r)
            return out
        k = _kernels()
        fn = k.decode_parallel if (rows >= _PAR_ROWS if parallel is None else parallel) else k.decode_serial
        nbad = fn(arr.reshape(-1), self.n, self.m, out.reshape(-1))
        if nbad:
            bad = int(np.flatnonzero(((arr < 0) | (arr >= self.cells)).any(axis=1))[0])
            self._raise_index(arr[bad : bad + 1], offset=bad)
        return out

    # -- scalars (the text codec's path; pure Python, no Numba) --------------------------------
    def encode_box(self, x1: float, y1: float, x2: float, y2: float) -> tuple[int, int]:
        """One box -> ``(idx_l, idx_r)`` (same rules as :meth:`encode`; plain Python, no Numba)."""
        bxl, byl = self._bounds()
        row = [float(x1), float(y1), float(x2), float(y2)]
        return self._encode_py(row, bxl, byl, None)

    def round_box(self, x1: float, y1: float, x2: float, y2: float, decimals: int = 6) -> tuple[float, float, float, float]:
        """The box with each coordinate rounded to ``decimals`` places, none leaving its cell.

        ``round(v, decimals)`` (exact decimal rounding, half to even) unless that carries ``v``
        across a cell boundary of this grid (``v`` within half a unit of the last place below
        a boundary ``j / k``); then the neighbouring ``decimals``-place value on ``v``'s side.
        So :meth:`encode_box` gives the same cells before and after. Coordinates outside
        ``[0, 1]`` are rounded plainly; on a grid finer than the precision (cells narrower than
        ``2 * 10**-decimals``) a coordinate that cannot stay in its cell is kept unrounded.
        """
        bxl, byl = self._bounds()
        n, m = self.n, self.m
        return (
            _round_in_cell(float(x1), bxl, n, decimals),
            _round_in_cell(float(y1), byl, m, decimals),
            _round_in_cell(float(x2), bxl, n, decimals),
            _round_in_cell(float(y2), byl, m, decimals),
        )

    def decode_pair(self, idx_l: int, idx_r: int) -> tuple[float, float, float, float]:
        """One pair ``<idx_l, idx_r>`` -> cell-centre box ``(x1, y1, x2, y2)`` as floats."""
        n, m = self.n, self.m
        out = []
        for v in (idx_l, idx_r):
            if isinstance(v, bool):
                raise GridIndexError(f"grid index {v!r} is not an integer")
            try:
                i = operator.index(v)
            except TypeError:
                raise GridIndexError(f"grid index {v!r} is not an integer") from None
            if not 0 <= i < n * m:
                raise GridIndexError(
                    f"grid index {i} lies outside [0, {n * m}) of a {n} x {m} grid (n columns x m rows)"
                )
            out.append((i % n + 0.5) / n)
            out.append((i // n + 0.5) / m)
        return out[0], out[1], out[2], out[3]

    # -- helpers ---------------------------------------------------------------------------
    def _encode_py(self, row: list, bxl: list, byl: list, i: int | None) -> tuple[int, int]:
        x1, y1, x2, y2 = row
        if not (-_TOL <= x1 <= 1 + _TOL and -_TOL <= y1 <= 1 + _TOL and -_TOL <= x2 <= 1 + _TOL and -_TOL <= y2 <= 1 + _TOL):
            where = "box" if i is None else f"boxes[{i}]"
            for name, v in zip(("x1", "y1", "x2", "y2"), row):
                if not math.isfinite(v):
                    raise InvalidBoxError(f"{where}: {name}={v} is not finite")
                if not -_TOL <= v <= 1 + _TOL:
                    raise InvalidBoxError(
                        f"{where}: {name}={v} lies outside [0, 1]; the grid codec needs normalised xyxy"
                    )
        # clamp the tolerated float noise
        x1 = 0.0 if x1 < 0.0 else (1.0 if x1 > 1.0 else x1)
        y1 = 0.0 if y1 < 0.0 else (1.0 if y1 > 1.0 else y1)
        x2 = 0.0 if x2 < 0.0 else (1.0 if x2 > 1.0 else x2)
        y2 = 0.0 if y2 < 0.0 else (1.0 if y2 > 1.0 else y2)
        n, m = self.n, self.m
        xl, xr = (x1, x2) if x1 <= x2 else (x2, x1)
        yl, yr = (y1, y2) if y1 <= y2 else (y2, y1)
        return (
            _py_cell(yl, byl, m) * n + _py_cell(xl, bxl, n),
            _py_cell(yr, byl, m) * n + _py_cell(xr, bxl, n),
        )

    def _raise_index(self, arr: np.ndarray, offset: int = 0) -> None:
        cells = self.cells
        for i, pair in enumerate(arr.tolist()):
            for v in pair:
                if not 0 <= v < cells:
                    raise GridIndexError(
                        f"grid index {v} (row {i + offset}) lies outside [0, {cells}) of a "
                        f"{self.n} x {self.m} grid (n columns x m rows)"
                    )
        raise GridIndexError("grid index out of range")  # not reached: the kernel saw a bad row

    def _check_objects(self, arr: np.ndarray) -> None:
        for i, pair in enumerate(arr.tolist()):
            for v in pair:
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise GridIndexError(f"grid index {v!r} (row {i}) is not an integer")
        self._raise_index(arr)
