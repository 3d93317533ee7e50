"""Box-Merge (the paper's Alg. 1, lines 10-19) run as written, in a canonical order, to a fixpoint.

The rule (Alg. 1 line 13). Box ``R[i]`` absorbs box ``R[j]`` (normalised ``xyxy``, closed
rectangles) when::

    (area(R[i]) < area_thr and touch(R[i], R[j]))  or  coverage(R[i], R[j]) > cover_thr

* ``touch``: the closed rectangles share at least a point (overlap, a shared edge or a shared
  corner): ``max(x1) <= min(x2) and max(y1) <= min(y2)``.
* ``coverage``: intersection area over the *smaller* of the two areas (1 when one box lies inside
  the other); 0 when the smaller box has zero area.
* Precedence: ``and`` binds tighter than ``or``, as written in Alg. 1 line 13.
* ``merge``: the enclosing box (coordinate-wise min of ``x1, y1``, max of ``x2, y2``).

The procedure. Alg. 1's loops run literally: for each ``i`` in turn, every later ``j`` is
tested against ``R[i]`` *as grown so far*; on a merge ``R[i]`` grows and ``R[j]`` leaves the list,
so a box that absorbed a small one is re-tested as the larger box it now is (it may stop being
"small"). Two choices make this a function of the set of boxes:

* canonical order: the list is sorted by area, then ``(x1, y1, x2, y2)``, before each pass, so
  ``R[i]`` starts its turn as the smaller box of each pair it tests (``area(R[i])`` is then the
  paper's reading of "the smaller area");
* fixpoint: passes repeat until one merges nothing. In area order that means no two output
  boxes satisfy ``(min(area) < area_thr and touch) or coverage > cover_thr``.

Hence: the output boxes do not depend on the input order; every input box lies inside the
output box it is assigned to; ``K <= N``. (If two *identical* input boxes stay apart, which
needs ``cover_thr == 1`` or zero-area boxes, which one of them takes part in a later merge may
follow the input order; the output boxes do not.) The rule is evaluated in float64; output
boxes keep the input's float dtype (their coordinates are input coordinates: no rounding).

Earlier giqa versions grouped boxes by connected components of the pairwise rule on the
*input* boxes; that skipped the re-test of grown boxes and merged through small "bridge"
boxes, which Alg. 1 never does (see docs/geometry.md).
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
    """Box-Merge of one image: Alg. 1 in canonical order, repeated to a fixpoint (module docstring).

    Parameters
    ----------
    boxes : array-like, shape (N, 4)
        Normalised ``xyxy`` boxes (``x1 <= x2``, ``y1 <= y2``); float32/float64 kept, integers
        upcast to float64.
    area_thr : float
        ``T_a``: a box whose normalised area is below this absorbs every box it touches.
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

    A small box touching two large ones joins one of them, and the grown box is no longer
    small, so the two large boxes stay apart:

    >>> box_merge([[0, 0, .6, .6], [.65, 0, 1, .8], [.55, .1, .7, .2]])[0].tolist()
    [[0.0, 0.0, 0.6, 0.6], [0.55, 0.0, 1.0, 0.8]]
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
