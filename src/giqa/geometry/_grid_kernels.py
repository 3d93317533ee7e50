"""Numba kernels for the grid codec (see :class:`giqa.geometry.GridCodec` for the rules).

Private: arrays and scalars in, no checks beyond the fused per-row validity test, so one pass over a
large input both checks and converts it: encode returns the number of invalid rows, decode the
first invalid row (or the row count when every row is good); the wrappers then name the culprit. Serial and ``parallel=True`` twins are separate functions.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, error_model="numpy", nogil=True)


@njit(**_OPTS)
def _cell(v, kf, bounds, last):
    """Cell of coordinate ``v`` (already in ``[0, 1]``): the count of ``bounds[1:k] <= v``.

    ``bounds[j]`` is ``j / k`` rounded to the input dtype, ``bounds[k] = inf``; the first guess
    ``floor(v * k)`` is off by at most one either way (float rounding), so one correction step
    makes it exact. Branch-free.
    """
    c = min(np.int64(v * kf), last)
    c -= np.int64(v < bounds[c])
    c += np.int64(v >= bounds[c + 1])
    return c


@njit(**_OPTS)
def _encode_row(boxes, i, bx, by, nf, mf, n, m, lo, hi, zero, one, out):
    x1 = boxes[i, 0]
    y1 = boxes[i, 1]
    x2 = boxes[i, 2]
    y2 = boxes[i, 3]
    # Swapped corners are mended per axis; coordinates within the tolerance are clamped.
    xl = min(max(min(x1, x2), zero), one)
    xr = min(max(max(x1, x2), zero), one)
    yl = min(max(min(y1, y2), zero), one)
    yr = min(max(max(y1, y2), zero), one)
    out[i, 0] = _cell(yl, mf, by, m - 1) * n + _cell(xl, nf, bx, n - 1)
    out[i, 1] = _cell(yr, mf, by, m - 1) * n + _cell(xr, nf, bx, n - 1)
    # NaN fails every comparison, so the range test also rejects it (and +-inf).
    ok = (lo <= x1) & (x1 <= hi) & (lo <= y1) & (y1 <= hi) & (lo <= x2) & (x2 <= hi) & (lo <= y2) & (y2 <= hi)
    return np.int64(not ok)


@njit(**_OPTS)
def encode_serial(boxes, bx, by, nf, mf, n, m, lo, hi, zero, one, out):
    """Writes ``out`` and returns the number of invalid rows (their output is meaningless)."""
    nbad = 0
    for i in range(boxes.shape[0]):
        nbad += _encode_row(boxes, i, bx, by, nf, mf, n, m, lo, hi, zero, one, out)
    return nbad


@njit(parallel=True, **_OPTS)
def encode_parallel(boxes, bx, by, nf, mf, n, m, lo, hi, zero, one, out):
    nbad = 0
    for i in prange(boxes.shape[0]):
        nbad += _encode_row(boxes, i, bx, by, nf, mf, n, m, lo, hi, zero, one, out)
    return nbad


@njit(**_OPTS)
def _decode_row(idx, i, n, m, cells, out):
    ok = True
    for s in range(2):
        v = idx[i, s]
        ok &= (v >= 0) & (v < cells)
        # (v + 0.5) / n lies at least 0.5 / n away from an integer, so float rounding cannot
        # move the floor for any index below 2**40; avoids a slow integer division.
        r = int((v + 0.5) / n)
        c = v - r * n
        out[i, 2 * s] = (c + 0.5) / n
        out[i, 2 * s + 1] = (r + 0.5) / m
    return ok


@njit(**_OPTS)
def decode_serial(idx, n, m, out):
    rows = idx.shape[0]
    cells = n * m
    for i in range(rows):
        if not _decode_row(idx, i, n, m, cells, out):
            return i
    return rows


@njit(parallel=True, **_OPTS)
def decode_parallel(idx, n, m, out):
    rows = idx.shape[0]
    cells = n * m
    bad = rows
    for i in prange(rows):
        if not _decode_row(idx, i, n, m, cells, out):
            bad = min(bad, i)
    return bad
