"""Numba kernels for box overlap: IoU, coverage (IoS) and touch, pairwise and element-wise.

Private: arrays and scalars in, no checks (the wrappers in :mod:`giqa.geometry.iou` validate).
Every driver exists as a serial and a ``parallel=True`` twin (separate functions, so their
on-disk caches never collide). ``error_model="numpy"`` removes the per-division zero check that
otherwise stops LLVM from vectorising the inner loops; no fastmath, so results are IEEE exact
(a positive-area box has IoU exactly 1 with itself). The ``zero`` and ``tiny`` scalars arrive in
the boxes' dtype so float32 inputs are computed in float32 throughout.

Inner loops run over ``b`` held as columns (structure of arrays), branch-free with min/max, and
write one output row at a time.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from giqa.geometry._checks import first_bad  # noqa: F401  (re-exported for the wrappers)
from giqa.geometry._jit_options import NjitOptions

# Compiled with giqa.geometry._checks CHECKS_VERSION = 2 (see there: bump both together).

_OPTS: NjitOptions = {"cache": True, "error_model": "numpy", "nogil": True}
# Helpers state parallel=False so a parallel caller does not recompile them with its flags
# (Numba inherits unset flags), which can cost their vectorisation.
_SERIAL: NjitOptions = {**_OPTS, "parallel": False}
_PARALLEL: NjitOptions = {**_OPTS, "parallel": True}
_INLINE: NjitOptions = {**_SERIAL, "inline": "always"}
_CHUNK = 1 << 15


@njit(**_SERIAL)
def _columns(b):
    m = b.shape[0]
    bx1 = np.empty(m, b.dtype)
    by1 = np.empty(m, b.dtype)
    bx2 = np.empty(m, b.dtype)
    by2 = np.empty(m, b.dtype)
    ab = np.empty(m, b.dtype)
    for j in range(m):
        bx1[j] = b[j, 0]
        by1[j] = b[j, 1]
        bx2[j] = b[j, 2]
        by2[j] = b[j, 3]
        ab[j] = (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1])
    return bx1, by1, bx2, by2, ab


# -- one output row ------------------------------------------------------------------------
@njit(**_SERIAL)
def _row_iou(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2, ab, row, zero, tiny):
    aa = (ax2 - ax1) * (ay2 - ay1)
    for j in range(row.shape[0]):
        w = max(min(ax2, bx2[j]) - max(ax1, bx1[j]), zero)
        h = max(min(ay2, by2[j]) - max(ay1, by1[j]), zero)
        inter = w * h
        # union == 0 only when both boxes are degenerate, and then inter == 0: 0 / tiny == 0.
        row[j] = inter / max(aa + ab[j] - inter, tiny)


@njit(**_SERIAL)
def _row_cov(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2, ab, row, zero, tiny):
    aa = (ax2 - ax1) * (ay2 - ay1)
    for j in range(row.shape[0]):
        w = max(min(ax2, bx2[j]) - max(ax1, bx1[j]), zero)
        h = max(min(ay2, by2[j]) - max(ay1, by1[j]), zero)
        row[j] = (w * h) / max(min(aa, ab[j]), tiny)


@njit(**_SERIAL)
def _row_touch(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2, row):
    for j in range(row.shape[0]):
        row[j] = (max(ax1, bx1[j]) <= min(ax2, bx2[j])) & (max(ay1, by1[j]) <= min(ay2, by2[j]))


# -- pairwise drivers -------------------------------------------------------------------------
@njit(**_SERIAL)
def pairwise_iou_serial(a, b, out, zero, tiny):
    bx1, by1, bx2, by2, ab = _columns(b)
    for i in range(a.shape[0]):
        _row_iou(a[i, 0], a[i, 1], a[i, 2], a[i, 3], bx1, by1, bx2, by2, ab, out[i], zero, tiny)


@njit(**_PARALLEL)
def pairwise_iou_parallel(a, b, out, zero, tiny):
    bx1, by1, bx2, by2, ab = _columns(b)
    for i in prange(a.shape[0]):
        _row_iou(a[i, 0], a[i, 1], a[i, 2], a[i, 3], bx1, by1, bx2, by2, ab, out[i], zero, tiny)


@njit(**_SERIAL)
def pairwise_cov_serial(a, b, out, zero, tiny):
    bx1, by1, bx2, by2, ab = _columns(b)
    for i in range(a.shape[0]):
        _row_cov(a[i, 0], a[i, 1], a[i, 2], a[i, 3], bx1, by1, bx2, by2, ab, out[i], zero, tiny)


@njit(**_PARALLEL)
def pairwise_cov_parallel(a, b, out, zero, tiny):
    bx1, by1, bx2, by2, ab = _columns(b)
    for i in prange(a.shape[0]):
        _row_cov(a[i, 0], a[i, 1], a[i, 2], a[i, 3], bx1, by1, bx2, by2, ab, out[i], zero, tiny)


@njit(**_SERIAL)
def pairwise_touch_serial(a, b, out):
    bx1, by1, bx2, by2, _ = _columns(b)
    for i in range(a.shape[0]):
        _row_touch(a[i, 0], a[i, 1], a[i, 2], a[i, 3], bx1, by1, bx2, by2, out[i])


@njit(**_PARALLEL)
def pairwise_touch_parallel(a, b, out):
    bx1, by1, bx2, by2, _ = _columns(b)
    for i in prange(a.shape[0]):
        _row_touch(a[i, 0], a[i, 1], a[i, 2], a[i, 3], bx1, by1, bx2, by2, out[i])


# -- element-wise drivers ---------------------------------------------------------------------
# Flat views (``a.reshape(-1)``) with explicit strides, branch-free, validity fused into the same
# pass (a separate scan plus a 2-D ``a[i, k]`` loop ran ~7x slower than one flat loop). Each
# returns the number of invalid rows; the wrapper then names the first one.
@njit(**_INLINE)
def _invalid(x1, y1, x2, y2, lim):
    # NaN fails every comparison; with x1 <= x2 the outer bounds cover all four values.
    return np.int64(not ((x1 <= x2) & (y1 <= y2) & (-lim <= x1) & (x2 <= lim) & (-lim <= y1) & (y2 <= lim)))


@njit(**_SERIAL)
def _ew_ratio(a, b, out, zero, tiny, lim, over_union):
    nbad = 0
    for i in range(out.shape[0]):
        ax1, ay1, ax2, ay2 = a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]
        bx1, by1, bx2, by2 = b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]
        inter = max(min(ax2, bx2) - max(ax1, bx1), zero) * max(min(ay2, by2) - max(ay1, by1), zero)
        aa = (ax2 - ax1) * (ay2 - ay1)
        ab = (bx2 - bx1) * (by2 - by1)
        # IoU: union == 0 only when both boxes are degenerate, and then inter == 0: 0 / tiny == 0.
        den = aa + ab - inter if over_union else min(aa, ab)
        out[i] = inter / max(den, tiny)
        nbad += _invalid(ax1, ay1, ax2, ay2, lim) | _invalid(bx1, by1, bx2, by2, lim)
    return nbad


@njit(**_SERIAL)
def _ew_touch(a, b, out, lim):
    nbad = 0
    for i in range(out.shape[0]):
        ax1, ay1, ax2, ay2 = a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]
        bx1, by1, bx2, by2 = b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]
        out[i] = (max(ax1, bx1) <= min(ax2, bx2)) & (max(ay1, by1) <= min(ay2, by2))
        nbad += _invalid(ax1, ay1, ax2, ay2, lim) | _invalid(bx1, by1, bx2, by2, lim)
    return nbad


@njit(**_SERIAL)
def ew_ratio_serial(a, b, out, zero, tiny, lim, over_union):
    """IoU (``over_union``) or coverage of flat ``a``, ``b`` (4N,) -> ``out`` (N,); returns
    the number of invalid rows."""
    return _ew_ratio(a, b, out, zero, tiny, lim, over_union)


@njit(**_PARALLEL)
def ew_ratio_parallel(a, b, out, zero, tiny, lim, over_union):
    chunks = (out.shape[0] + _CHUNK - 1) // _CHUNK
    bad = np.zeros(chunks, np.int64)
    for c in prange(chunks):
        s = c * _CHUNK
        e = min(out.shape[0], s + _CHUNK)
        # Slices, not offsets into the whole array: this form stays vectorised inside prange.
        bad[c] = _ew_ratio(a[4 * s : 4 * e], b[4 * s : 4 * e], out[s:e], zero, tiny, lim, over_union)
    return bad.sum()


@njit(**_SERIAL)
def ew_touch_serial(a, b, out, lim):
    """Touch of flat ``a``, ``b`` (4N,) -> ``out`` (N,) bool; returns the number of invalid rows."""
    return _ew_touch(a, b, out, lim)


@njit(**_PARALLEL)
def ew_touch_parallel(a, b, out, lim):
    chunks = (out.shape[0] + _CHUNK - 1) // _CHUNK
    bad = np.zeros(chunks, np.int64)
    for c in prange(chunks):
        s = c * _CHUNK
        e = min(out.shape[0], s + _CHUNK)
        bad[c] = _ew_touch(a[4 * s : 4 * e], b[4 * s : 4 * e], out[s:e], lim)
    return bad.sum()
