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

_OPTS = dict(cache=True, error_model="numpy", nogil=True)
# Helpers state parallel=False so a parallel caller does not recompile them with its flags
# (Numba inherits unset flags), which can cost their vectorisation.
_SERIAL = dict(_OPTS, parallel=False)


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


@njit(parallel=True, **_OPTS)
def pairwise_iou_parallel(a, b, out, zero, tiny):
    bx1, by1, bx2, by2, ab = _columns(b)
    for i in prange(a.shape[0]):
        _row_iou(a[i, 0], a[i, 1], a[i, 2], a[i, 3], bx1, by1, bx2, by2, ab, out[i], zero, tiny)


@njit(**_SERIAL)
def pairwise_cov_serial(a, b, out, zero, tiny):
    bx1, by1, bx2, by2, ab = _columns(b)
    for i in range(a.shape[0]):
        _row_cov(a[i, 0], a[i, 1], a[i, 2], a[i, 3], bx1, by1, bx2, by2, ab, out[i], zero, tiny)


@njit(parallel=True, **_OPTS)
def pairwise_cov_parallel(a, b, out, zero, tiny):
    bx1, by1, bx2, by2, ab = _columns(b)
    for i in prange(a.shape[0]):
        _row_cov(a[i, 0], a[i, 1], a[i, 2], a[i, 3], bx1, by1, bx2, by2, ab, out[i], zero, tiny)


@njit(**_SERIAL)
def pairwise_touch_serial(a, b, out):
    bx1, by1, bx2, by2, _ = _columns(b)
    for i in range(a.shape[0]):
        _row_touch(a[i, 0], a[i, 1], a[i, 2], a[i, 3], bx1, by1, bx2, by2, out[i])


@njit(parallel=True, **_OPTS)
def pairwise_touch_parallel(a, b, out):
    bx1, by1, bx2, by2, _ = _columns(b)
    for i in prange(a.shape[0]):
        _row_touch(a[i, 0], a[i, 1], a[i, 2], a[i, 3], bx1, by1, bx2, by2, out[i])


# -- element-wise drivers ---------------------------------------------------------------------
@njit(**_SERIAL)
def _pair_iou(a, b, i, zero, tiny):
    w = max(min(a[i, 2], b[i, 2]) - max(a[i, 0], b[i, 0]), zero)
    h = max(min(a[i, 3], b[i, 3]) - max(a[i, 1], b[i, 1]), zero)
    inter = w * h
    aa = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1])
    ab = (b[i, 2] - b[i, 0]) * (b[i, 3] - b[i, 1])
    return inter / max(aa + ab - inter, tiny)


@njit(**_SERIAL)
def _pair_cov(a, b, i, zero, tiny):
    w = max(min(a[i, 2], b[i, 2]) - max(a[i, 0], b[i, 0]), zero)
    h = max(min(a[i, 3], b[i, 3]) - max(a[i, 1], b[i, 1]), zero)
    aa = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1])
    ab = (b[i, 2] - b[i, 0]) * (b[i, 3] - b[i, 1])
    return (w * h) / max(min(aa, ab), tiny)


@njit(**_SERIAL)
def _pair_touch(a, b, i):
    return (max(a[i, 0], b[i, 0]) <= min(a[i, 2], b[i, 2])) & (
        max(a[i, 1], b[i, 1]) <= min(a[i, 3], b[i, 3])
    )


@njit(**_SERIAL)
def ew_iou_serial(a, b, out, zero, tiny):
    for i in range(a.shape[0]):
        out[i] = _pair_iou(a, b, i, zero, tiny)


@njit(parallel=True, **_OPTS)
def ew_iou_parallel(a, b, out, zero, tiny):
    for i in prange(a.shape[0]):
        out[i] = _pair_iou(a, b, i, zero, tiny)


@njit(**_SERIAL)
def ew_cov_serial(a, b, out, zero, tiny):
    for i in range(a.shape[0]):
        out[i] = _pair_cov(a, b, i, zero, tiny)


@njit(parallel=True, **_OPTS)
def ew_cov_parallel(a, b, out, zero, tiny):
    for i in prange(a.shape[0]):
        out[i] = _pair_cov(a, b, i, zero, tiny)


@njit(**_SERIAL)
def ew_touch_serial(a, b, out):
    for i in range(a.shape[0]):
        out[i] = _pair_touch(a, b, i)


@njit(parallel=True, **_OPTS)
def ew_touch_parallel(a, b, out):
    for i in prange(a.shape[0]):
        out[i] = _pair_touch(a, b, i)
