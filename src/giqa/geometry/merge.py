"""Box-Merge (the paper's Alg. 1, lines 10-19), made symmetric, order-free and a fixpoint.

The rule. Two boxes ``p`` and ``q`` (normalised ``xyxy``, closed rectangles) are merged when::

    (min(area(p), area(q)) < area_thr and touch(p, q))  or  coverage(p, q) > cover_thr

* ``touch``: the closed rectangles share at least a point (overlap, a shared edge or a shared
  corner): ``max(x1) <= min(x2) and max(y1) <= min(y2)``.
* ``coverage``: intersection area over the *smaller* of the two areas (1 when one box lies inside
  the other); 0 when the smaller box has zero area.
* Precedence: ``and`` binds tighter than ``or``, as written in Alg. 1 line 13. The paper's
  ``area(R[i])`` is read as the smaller of the two areas, so the rule is symmetric: a small box
  touching any other box is absorbed, and two boxes that mostly cover each other merge whatever
  their size.
* ``merge``: the enclosing box (coordinate-wise min of ``x1, y1``, max of ``x2, y2``).

The procedure. Alg. 1's single greedy pass depends on the input order and can leave boxes that
still satisfy the rule after growing. Here every round joins all pairs of current boxes that
satisfy the rule into connected components, replaces each component by its enclosing box, and
repeats until a round joins nothing. Hence:

* fixpoint: no two output boxes satisfy the rule;
* order independence: the output boxes, sorted by ``(x1, y1, x2, y2)``, are the same for any
  permutation of the input (if two output boxes were identical, which only happens with
  ``area_thr == 0`` and degenerate boxes, which of them an input maps to may vary);
* every input box lies inside the output box it is assigned to; ``K <= N``.

The rule is evaluated in float64; output boxes keep the input's float dtype (their
coordinates are input coordinates, so no rounding happens).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from giqa.geometry._validate import as_boxes, as_offsets, box_error

__all__ = ["box_merge", "box_merge_batched", "AREA_THR", "COVER_THR"]

AREA_THR = 0.256
"""T_a of the paper: a box covering less than 25.6 % of the image counts as small."""
COVER_THR = 0.95
"""T_o of the paper: boxes overlapping by more than 95 % of the smaller one merge."""

_FAST_DTYPES = frozenset((np.dtype("=f4"), np.dtype("=f8")))
_PAR_IMAGES = 2048

_k = None


def _kernels():
    global _k
    if _k is None:
        from giqa.geometry import _merge_kernels

        _k = _merge_kernels
    return _k


def _thresholds(area_thr: Any, cover_thr: Any) -> tuple[float, float]:
    a = float(area_thr)
    c = float(cover_thr)
    if not (0.0 <= a < math.inf):
        raise ValueError(f"area_thr must be a finite number >= 0 (normalised area), got {area_thr!r}")
    if not (0.0 <= c <= 1.0):
        raise ValueError(f"cover_thr must lie in [0, 1], got {cover_thr!r}")
    return a, c


def box_merge(
    boxes: Any, area_thr: float = AREA_THR, cover_thr: float = COVER_THR
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the boxes of one image until no two satisfy the Box-Merge rule (module docstring).

    Parameters
    ----------
    boxes : array-like, shape (N, 4)
        Normalised ``xyxy`` boxes (``x1 <= x2``, ``y1 <= y2``); float32/float64 kept, integers
        upcast to float64.
    area_thr : float
        ``T_a``: a box whose normalised area is below this is absorbed by any box it touches.
    cover_thr : float in [0, 1]
        ``T_o``: boxes whose intersection exceeds this fraction of the smaller box merge.

    Returns
    -------
    merged : ndarray, shape (K, 4), the input's float dtype
        Enclosing boxes, sorted by ``(x1, y1, x2, y2)``; ``K <= N``.
    assignment : ndarray, shape (N,), int64
        ``merged[assignment[i]]`` is the box that input ``i`` went into (it contains it).

    Raises
    ------
    ValueError
        Wrong shape, or a threshold out of range.
    InvalidBoxError
        A NaN/inf coordinate or an inverted box.

    Examples
    --------
    >>> merged, assign = box_merge([[0.1, 0.1, 0.2, 0.2], [0.2, 0.1, 0.3, 0.2], [0.6, 0.6, 0.9, 0.9]])
    >>> merged.tolist(), assign.tolist()
    ([[0.1, 0.1, 0.3, 0.2], [0.6, 0.6, 0.9, 0.9]], [0, 0, 1])
    """
    if (
        type(boxes) is np.ndarray
        and boxes.ndim == 2
        and boxes.shape[1] == 4
        and boxes.dtype in _FAST_DTYPES
        and boxes.flags.c_contiguous
    ):
        arr = boxes
    else:
        arr = as_boxes(boxes)
    at, ct = _thresholds(area_thr, cover_thr)
    merged, assignment, bad = _kernels().merge_one(arr, at, ct)
    if bad >= 0:
        raise box_error(arr, bad)
    return merged, assignment


def box_merge_batched(
    boxes: Any,
    offsets: Any,
    area_thr: float = AREA_THR,
    cover_thr: float = COVER_THR,
    *,
    parallel: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`box_merge` over many images at once (ragged batch).

    Parameters
    ----------
    boxes : array-like, shape (T, 4)
        The boxes of all images, image after image.
    offsets : array-like of int, shape (B+1,)
        Image ``b`` owns ``boxes[offsets[b]:offsets[b+1]]``; ``offsets[0] == 0``,
        ``offsets[-1] == T``, non-decreasing (an image may have no boxes).
    area_thr, cover_thr : float
        As in :func:`box_merge`.
    parallel : bool, optional
        Force the parallel or serial kernel; by default parallel from 2048 images.

    Returns
    -------
    merged : ndarray, shape (K, 4)
        The merged boxes of all images, image after image, each image's sorted as in
        :func:`box_merge`.
    merged_offsets : ndarray, shape (B+1,), int64
        Image ``b`` owns ``merged[merged_offsets[b]:merged_offsets[b+1]]``.
    assignment : ndarray, shape (T,), int64
        For each input box, the index of its merged box *within its own image's* merged list.
    """
    arr = as_boxes(boxes)
    off = as_offsets(offsets, arr.shape[0])
    at, ct = _thresholds(area_thr, cover_thr)
    nb = off.shape[0] - 1
    k = _kernels()
    use_par = nb >= _PAR_IMAGES if parallel is None else bool(parallel)
    fn = k.merge_batched_parallel if use_par else k.merge_batched_serial
    merged, moff, assignment, bad = fn(arr, off, at, ct)
    if bad >= 0:
        raise box_error(arr, bad)
    return merged, moff, assignment
