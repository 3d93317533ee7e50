"""Box overlap: IoU, coverage (intersection over the smaller area) and touch.

All functions take boxes as ``(N, 4)`` array-likes of ``xyxy`` corners (normalised or pixels:
the measures are scale-free; only :func:`giqa.geometry.box_merge`'s area threshold assumes
normalised units). Closed intervals: a box ``[x1, x2] x [y1, y2]`` contains its edges.

Types: float32 and float64 are kept (a float32 and a float64 operand compute in float64),
float16 is computed in float32, integer boxes are upcast to float64; other dtypes raise
``TypeError``. Wrong shapes raise ``ValueError`` ("expected (N, 4) ..."); a NaN or infinite
coordinate, one beyond ``COORD_LIMIT`` (``|v| > 1e18``, where areas would overflow), or an
inverted box (``x1 > x2`` or ``y1 > y2``), raises :class:`giqa.errors.InvalidBoxError`.
Zero-area boxes are allowed: any ratio whose denominator is zero is 0, so results are never NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from giqa.geometry._limits import COORD_LIMIT
from giqa.geometry._validate import box_error, pair_args

__all__ = ["pairwise_iou", "pairwise_coverage", "pairwise_touch", "iou", "coverage", "touch"]

# Work (pairs) from which the parallel kernels beat the serial ones on 2 cores.
_PAR_PAIRS = 1 << 16
_PAR_ROWS = 1 << 16

_k = None


def _kernels():
    global _k
    if _k is None:
        from giqa.geometry import _iou_kernels

        _k = _iou_kernels
    return _k


def _checked_pair(a: Any, b: Any):
    a, b = pair_args(a, b)
    k = _kernels()
    if a.shape[0] and b.shape[0]:
        row = k.first_bad(a)
        if row >= 0:
            raise box_error(a, row, "a")
        row = k.first_bad(b)
        if row >= 0:
            raise box_error(b, row, "b")
    return a, b, k


def _scalars(dtype: np.dtype):
    t = dtype.type
    return t(0), t(np.finfo(dtype).tiny)


def _use_parallel(parallel: bool | None, work: int, threshold: int) -> bool:
    return work >= threshold if parallel is None else bool(parallel)


def pairwise_iou(a: Any, b: Any, *, parallel: bool | None = None) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Parameters
    ----------
    a : array-like, shape (N, 4)
        Boxes as ``xyxy`` corners with ``x1 <= x2`` and ``y1 <= y2``.
    b : array-like, shape (M, 4)
        Boxes as ``xyxy`` corners.
    parallel : bool, optional
        Force the parallel (``True``) or serial (``False``) kernel; by default the parallel
        one runs from ``N * M >= 65536`` pairs.

    Returns
    -------
    ndarray, shape (N, M), float32 when both inputs are float32 else float64
        ``out[i, j] = area(a_i & b_j) / area(a_i | b_j)`` in ``[0, 1]``; 0 where the union is
        empty. Empty ``a`` or ``b`` gives a ``(0, M)`` / ``(N, 0)`` array.

    Examples
    --------
    >>> pairwise_iou([[0, 0, 0.5, 0.5]], [[0, 0, 0.5, 0.5], [0.25, 0, 0.75, 0.5]]).round(4)
    array([[1.    , 0.3333]])
    """
    a, b, k = _checked_pair(a, b)
    out = np.empty((a.shape[0], b.shape[0]), a.dtype)
    if out.size:
        zero, tiny = _scalars(a.dtype)
        if _use_parallel(parallel, out.size, _PAR_PAIRS):
            k.pairwise_iou_parallel(a, b, out, zero, tiny)
        else:
            k.pairwise_iou_serial(a, b, out, zero, tiny)
    return out


def pairwise_coverage(a: Any, b: Any, *, parallel: bool | None = None) -> np.ndarray:
    """Intersection over the smaller of the two areas (IoS), for every pair of ``a`` x ``b``.

    ``out[i, j] = area(a_i & b_j) / min(area(a_i), area(b_j))`` in ``[0, 1]``: 1 when one box
    lies inside the other; 0 when the smaller box has zero area. Shapes, dtypes and errors as
    in :func:`pairwise_iou`; always ``>=`` the IoU of the same pair.
    """
    a, b, k = _checked_pair(a, b)
    out = np.empty((a.shape[0], b.shape[0]), a.dtype)
    if out.size:
        zero, tiny = _scalars(a.dtype)
        if _use_parallel(parallel, out.size, _PAR_PAIRS):
            k.pairwise_cov_parallel(a, b, out, zero, tiny)
        else:
            k.pairwise_cov_serial(a, b, out, zero, tiny)
    return out


def pairwise_touch(a: Any, b: Any, *, parallel: bool | None = None) -> np.ndarray:
    """Whether boxes ``a_i`` and ``b_j`` touch: their closed rectangles share at least a point.

    ``out[i, j] = max(x1) <= min(x2) and max(y1) <= min(y2)``: overlapping boxes, boxes sharing
    an edge or only a corner all touch. Returns a ``(N, M)`` bool array.
    """
    a, b, k = _checked_pair(a, b)
    out = np.empty((a.shape[0], b.shape[0]), np.bool_)
    if out.size:
        if _use_parallel(parallel, out.size, _PAR_PAIRS):
            k.pairwise_touch_parallel(a, b, out)
        else:
            k.pairwise_touch_serial(a, b, out)
    return out


def _elementwise(a: Any, b: Any, out_dtype: Any, over_union: bool | None) -> np.ndarray:
    """Element-wise IoU (``over_union``), coverage (``not over_union``) or touch (``None``):
    one fused pass that computes and counts invalid rows; the rows are named only on error."""
    a, b = pair_args(a, b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"element-wise ops need equal lengths, got {a.shape[0]} and {b.shape[0]} boxes")
    out = np.empty(a.shape[0], a.dtype if out_dtype is None else out_dtype)
    if not out.size:
        return out
    k = _kernels()
    lim = a.dtype.type(COORD_LIMIT)
    par = out.size >= _PAR_ROWS
    fa, fb = a.reshape(-1), b.reshape(-1)
    if over_union is None:
        nbad = (k.ew_touch_parallel if par else k.ew_touch_serial)(fa, fb, out, lim)
    else:
        zero, tiny = _scalars(a.dtype)
        nbad = (k.ew_ratio_parallel if par else k.ew_ratio_serial)(fa, fb, out, zero, tiny, lim, over_union)
    if nbad:
        for arr, name in ((a, "a"), (b, "b")):
            row = k.first_bad(arr)
            if row >= 0:
                raise box_error(arr, row, name)
    return out


def iou(a: Any, b: Any) -> np.ndarray:
    """Element-wise IoU of ``a[i]`` and ``b[i]``: two ``(N, 4)`` inputs -> ``(N,)``."""
    return _elementwise(a, b, None, True)


def coverage(a: Any, b: Any) -> np.ndarray:
    """Element-wise coverage (intersection over the smaller area): ``(N, 4)`` x2 -> ``(N,)``."""
    return _elementwise(a, b, None, False)


def touch(a: Any, b: Any) -> np.ndarray:
    """Element-wise touch test (closed rectangles share a point): ``(N, 4)`` x2 -> ``(N,)`` bool."""
    return _elementwise(a, b, np.bool_, None)
