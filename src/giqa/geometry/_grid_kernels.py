"""Numba kernels for the grid codec (see :class:`giqa.geometry.GridCodec` for the rules).

Private: arrays and scalars in, no checks beyond the fused per-row validity test, so one pass
over a large input both checks and converts it: encode returns the number of invalid rows,
decode the number of invalid indices; the wrappers then name the culprit.

The loops run over flat views (``boxes.reshape(-1)``, ``out.reshape(-1)``) with explicit
strides and are branch-free: that is what lets LLVM vectorise them (a 2-D ``boxes[i, k]`` loop
or a table lookup stays scalar, about 5x slower). The parallel twins split the rows into
chunks and run the serial kernel on each chunk's slices.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from giqa.geometry._jit_options import NjitOptions

_OPTS: NjitOptions = {"cache": True, "error_model": "numpy", "nogil": True}
# Callees state parallel=False: Numba lets a callee inherit an unset flag from a parallel
# caller, and the range loops recompiled that way are not vectorised (10x slower).
_SERIAL: NjitOptions = {**_OPTS, "parallel": False}
_PARALLEL: NjitOptions = {**_OPTS, "parallel": True}
_CHUNK = 1 << 15


@njit(**_SERIAL)
def _cell(v, kd, last):
    """Cell of ``v`` (float64, in ``[0, 1]``) on an axis of ``k = last + 1`` cells: the number
    of boundaries ``j / k`` (``j = 1 .. k-1``, in float64) that are ``<= v``. The guess
    ``floor(v * k)`` is off by at most one either way, so one branch-free correction step
    against the two neighbouring boundaries makes it exact.
    """
    c = min(np.int64(v * kd), last)
    c += np.int64(v >= np.float64(c + 1) / kd)
    c -= np.int64(v < np.float64(c) / kd)
    return min(c, last)


@njit(**_SERIAL)
def _encode_range(flat, start, stop, n, m, lo, hi, out):
    nd = np.float64(n)
    md = np.float64(m)
    nbad = 0
    for i in range(start, stop):
        # Widened to float64 first: every input type meets the same float64 boundaries j / k.
        x1 = np.float64(flat[4 * i])
        y1 = np.float64(flat[4 * i + 1])
        x2 = np.float64(flat[4 * i + 2])
        y2 = np.float64(flat[4 * i + 3])
        # Swapped corners are mended per axis; coordinates within the tolerance are clamped.
        xl = min(max(min(x1, x2), 0.0), 1.0)
        xr = min(max(max(x1, x2), 0.0), 1.0)
        yl = min(max(min(y1, y2), 0.0), 1.0)
        yr = min(max(max(y1, y2), 0.0), 1.0)
        out[2 * i] = _cell(yl, md, m - 1) * n + _cell(xl, nd, n - 1)
        out[2 * i + 1] = _cell(yr, md, m - 1) * n + _cell(xr, nd, n - 1)
        # NaN fails every comparison, so the range test also rejects it (and +-inf).
        ok = (lo <= x1) & (x1 <= hi) & (lo <= y1) & (y1 <= hi) & (lo <= x2) & (x2 <= hi) & (lo <= y2) & (y2 <= hi)
        nbad += np.int64(not ok)
    return nbad


@njit(**_SERIAL)
def encode_serial(flat, n, m, lo, hi, out):
    """Boxes ``flat`` (4N,) -> ``out`` (2N,); returns the number of invalid rows."""
    return _encode_range(flat, 0, flat.shape[0] // 4, n, m, lo, hi, out)


@njit(**_PARALLEL)
def encode_parallel(flat, n, m, lo, hi, out):
    rows = flat.shape[0] // 4
    chunks = (rows + _CHUNK - 1) // _CHUNK
    bad = np.zeros(chunks, np.int64)
    for c in prange(chunks):
        s = c * _CHUNK
        e = min(rows, s + _CHUNK)
        # Slices, not offsets into the whole array: this form stays vectorised inside prange.
        bad[c] = encode_serial(flat[4 * s : 4 * e], n, m, lo, hi, out[2 * s : 2 * e])
    return bad.sum()


@njit(**_SERIAL)
def _decode_range(idx, start, stop, n, m, cells, out):
    nd = np.float64(n)
    md = np.float64(m)
    nbad = 0
    for j in range(start, stop):
        v = idx[j]
        nbad += np.int64((v < 0) | (v >= cells))
        # (v + 0.5) / n lies at least 0.5 / n away from an integer, so float rounding cannot
        # move the floor for any index below 2**40; avoids a slow integer division.
        r = np.int64((np.float64(v) + 0.5) / nd)
        c = v - r * n
        out[2 * j] = (np.float64(c) + 0.5) / nd
        out[2 * j + 1] = (np.float64(r) + 0.5) / md
    return nbad


@njit(**_SERIAL)
def decode_serial(idx, n, m, out):
    """Indices ``idx`` (2N,) -> ``out`` (4N,) cell centres; returns the number of bad indices."""
    return _decode_range(idx, 0, idx.shape[0], n, m, n * m, out)


@njit(**_PARALLEL)
def decode_parallel(idx, n, m, out):
    total = idx.shape[0]
    chunks = (total + 2 * _CHUNK - 1) // (2 * _CHUNK)
    bad = np.zeros(chunks, np.int64)
    for c in prange(chunks):
        s = c * 2 * _CHUNK
        e = min(total, s + 2 * _CHUNK)
        bad[c] = decode_serial(idx[s:e], n, m, out[2 * s : 2 * e])
    return bad.sum()
