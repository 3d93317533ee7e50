"""Numba kernels for Box-Merge (the rule and the procedure are documented in :mod:`giqa.geometry.merge`).

Private. One core, :func:`_merge_segment`, merges the boxes ``boxes[s:e]`` of one image using
caller-provided scratch rows ``s .. e-1`` of ``cur``/``lab``/``par``/``nid``, so the batched
kernel runs images in parallel without allocating per image.

A pass is Alg. 1 lines 10-19 run literally over the current boxes in canonical order (area,
then ``x1, y1, x2, y2``): box ``i`` absorbs each later box ``j`` that satisfies the rule against
``i`` *as grown so far*, and the listing's ``R \ {R[j]}`` becomes a "merged into i" mark.
Passes repeat, re-sorted in between, while two boxes still satisfy the rule with the smaller
area as ``area(R[i])`` (:func:`_any_pair`): exactly when another pass in area order would merge,
so the result is a fixpoint, and an image with nothing to merge is never sorted by area. Cost
per pass is O(k^2) rule tests for k boxes; passes <= N.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from giqa.geometry._checks import first_bad
from giqa.geometry._jit_options import NjitOptions

# Compiled with giqa.geometry._checks CHECKS_VERSION = 2 (see there: bump both together).

_OPTS: NjitOptions = {"cache": True, "error_model": "numpy", "nogil": True}
# Helpers state parallel=False so a parallel caller does not recompile them with its flags
# (Numba inherits unset flags), which can cost their vectorisation.
_SERIAL: NjitOptions = {**_OPTS, "parallel": False}
_PARALLEL: NjitOptions = {**_OPTS, "parallel": True}
_INLINE: NjitOptions = {**_SERIAL, "inline": "always"}


@njit(**_INLINE)
def _row64(cur, r):
    return np.float64(cur[r, 0]), np.float64(cur[r, 1]), np.float64(cur[r, 2]), np.float64(cur[r, 3])


@njit(**_INLINE)
def _after(cur, p, r):
    """Row ``p`` comes after row ``r`` by ``(x1, y1, x2, y2)``."""
    for t in range(4):
        if cur[p, t] != cur[r, t]:
            return cur[p, t] > cur[r, t]
    return False


@njit(**_SERIAL)
def _sort(cur, s, k, n, lab, par, nid, ar, by_area):
    """Sort ``cur[s:s+k]`` by area (float64) then coordinates, or by coordinates alone, and
    relabel ``lab[s:s+n]``; ``par``, ``nid`` and ``ar`` are scratch.

    An insertion sort of row numbers (few rows, often nearly sorted), then one in-place
    permutation of the rows along its cycles (moving whole rows while sorting was ~2x slower).
    """
    for c in range(k):
        par[s + c] = s + c
        nid[s + c] = 0
        x1, y1, x2, y2 = _row64(cur, s + c)
        ar[s + c] = (x2 - x1) * (y2 - y1) if by_area else 0.0
    for c in range(1, k):
        r = par[s + c]
        a0 = ar[r]
        j = c - 1
        while j >= 0:
            p = par[s + j]
            # the area decides almost always: test it alone first (2x faster than a tuple compare)
            if ar[p] < a0 or (ar[p] == a0 and not _after(cur, p, r)):
                break
            par[s + j + 1] = p
            j -= 1
        par[s + j + 1] = r
    # Row s + c must receive row par[s + c]; nid marks the rows already placed.
    for c in range(k):
        if nid[s + c] != 0:
            continue
        k0 = cur[s + c, 0]
        k1 = cur[s + c, 1]
        k2 = cur[s + c, 2]
        k3 = cur[s + c, 3]
        d = s + c
        while True:
            nid[d] = 1
            src = par[d]
            if src == s + c:
                cur[d, 0] = k0
                cur[d, 1] = k1
                cur[d, 2] = k2
                cur[d, 3] = k3
                break
            for t in range(4):
                cur[d, t] = cur[src, t]
            d = src
    for c in range(k):
        nid[par[s + c]] = c
    for i in range(n):
        lab[s + i] = nid[s + lab[s + i]]


@njit(**_SERIAL)
def _pass(cur, s, k, area_thr, cover_thr, into):
    """One run of Alg. 1 lines 10-19 over ``cur[s:s+k]``; ``into[s+j]`` is the box ``j`` went
    into (itself if kept). Returns whether anything merged.

    Line 13, evaluated in float64 with ``R[i]`` as grown so far:
    ``area(R[i]) < T_a and touch(R[i], R[j]) or coverage(R[i], R[j]) > T_o``.
    """
    for c in range(k):
        into[s + c] = c
    merged = False
    for i in range(k):
        if into[s + i] != i:
            continue
        ix1, iy1, ix2, iy2 = _row64(cur, s + i)
        ai = (ix2 - ix1) * (iy2 - iy1)
        grown = False
        for j in range(i + 1, k):
            if into[s + j] != j:
                continue
            jx1, jy1, jx2, jy2 = _row64(cur, s + j)
            w = min(ix2, jx2) - max(ix1, jx1)
            h = min(iy2, jy2) - max(iy1, jy1)
            if w < 0.0 or h < 0.0:
                continue  # not touching: coverage 0 too
            if ai >= area_thr:
                small = min(ai, (jx2 - jx1) * (jy2 - jy1))
                if small <= 0.0 or not (w * h) / small > cover_thr:
                    continue
            # Coordinates are input values: the enclosing box is exact in the input dtype.
            ix1 = min(ix1, jx1)
            iy1 = min(iy1, jy1)
            ix2 = max(ix2, jx2)
            iy2 = max(iy2, jy2)
            ai = (ix2 - ix1) * (iy2 - iy1)
            into[s + j] = i
            grown = True
        if grown:
            cur[s + i, 0] = ix1
            cur[s + i, 1] = iy1
            cur[s + i, 2] = ix2
            cur[s + i, 3] = iy2
            merged = True
    return merged


@njit(**_SERIAL)
def _any_pair(cur, s, k, area_thr, cover_thr):
    """Whether two of ``cur[s:s+k]`` satisfy the rule with the smaller area as ``area(R[i])``:
    exactly when a pass in area order would merge something (so the sort can be skipped)."""
    for i in range(k):
        ix1, iy1, ix2, iy2 = _row64(cur, s + i)
        ai = (ix2 - ix1) * (iy2 - iy1)
        for j in range(i + 1, k):
            jx1, jy1, jx2, jy2 = _row64(cur, s + j)
            w = min(ix2, jx2) - max(ix1, jx1)
            h = min(iy2, jy2) - max(iy1, jy1)
            if w < 0.0 or h < 0.0:
                continue
            small = min(ai, (jx2 - jx1) * (jy2 - jy1))
            if small < area_thr or (small > 0.0 and (w * h) / small > cover_thr):
                return True
    return False


@njit(**_SERIAL)
def _merge_segment(boxes, s, e, area_thr, cover_thr, cur, lab, par, nid, ar):
    """Merge ``boxes[s:e]``; writes ``cur[s:s+k]`` (sorted by coordinates) and ``lab[s:e]``
    (input -> output slot); returns ``k``. ``par``, ``nid``, ``ar``: scratch rows ``s .. e-1``."""
    n = e - s
    for i in range(n):
        for t in range(4):
            cur[s + i, t] = boxes[s + i, t] + 0.0  # -0.0 -> 0.0: equal boxes are equal bits
        lab[s + i] = i
    k = n
    while k > 1 and _any_pair(cur, s, k, area_thr, cover_thr):
        _sort(cur, s, k, n, lab, par, nid, ar, True)
        _pass(cur, s, k, area_thr, cover_thr, nid)  # merges at least the pair found
        # Compact the kept boxes in order. A box only ever goes into an earlier, kept one, so
        # par[s + nid[s + c]] is assigned before it is read.
        nk = 0
        for c in range(k):
            if nid[s + c] == c:
                par[s + c] = nk
                for t in range(4):
                    cur[s + nk, t] = cur[s + c, t]
                nk += 1
            else:
                par[s + c] = par[s + nid[s + c]]
        for i in range(n):
            lab[s + i] = par[s + lab[s + i]]
        k = nk
    _sort(cur, s, k, n, lab, par, nid, ar, False)
    return k


@njit(**_SERIAL)
def merge_one(boxes, area_thr, cover_thr):
    """Returns ``(merged (K, 4), assignment (N,), bad_row)``; ``bad_row >= 0`` means invalid input."""
    n = boxes.shape[0]
    cur = np.empty((n, 4), boxes.dtype)
    lab = np.empty(n, np.int64)
    bad = first_bad(boxes)
    if bad >= 0:
        return cur[:0], lab, bad
    par = np.empty(n, np.int64)
    nid = np.empty(n, np.int64)
    ar = np.empty(n, np.float64)
    k = _merge_segment(boxes, 0, n, area_thr, cover_thr, cur, lab, par, nid, ar)
    return cur[:k], lab, -1


@njit(**_SERIAL)
def _gather(cur, offsets, counts, moff):
    out = np.empty((moff[-1], 4), cur.dtype)
    for b in range(counts.shape[0]):
        src = offsets[b]
        dst = moff[b]
        for c in range(counts[b]):
            for t in range(4):
                out[dst + c, t] = cur[src + c, t]
    return out


@njit(**_SERIAL)
def _prefix(counts):
    moff = np.empty(counts.shape[0] + 1, np.int64)
    moff[0] = 0
    for b in range(counts.shape[0]):
        moff[b + 1] = moff[b] + counts[b]
    return moff


@njit(**_SERIAL)
def merge_batched_serial(boxes, offsets, area_thr, cover_thr):
    """Ragged batch: ``(merged (K, 4), merged_offsets (B+1,), assignment (T,), bad_row)``."""
    t_all = boxes.shape[0]
    nb = offsets.shape[0] - 1
    cur = np.empty((t_all, 4), boxes.dtype)
    lab = np.empty(t_all, np.int64)
    counts = np.zeros(nb, np.int64)
    bad = first_bad(boxes)
    if bad >= 0:
        return cur[:0], np.zeros(nb + 1, np.int64), lab, bad
    par = np.empty(t_all, np.int64)
    nid = np.empty(t_all, np.int64)
    ar = np.empty(t_all, np.float64)
    for b in range(nb):
        counts[b] = _merge_segment(boxes, offsets[b], offsets[b + 1], area_thr, cover_thr, cur, lab, par, nid, ar)
    moff = _prefix(counts)
    return _gather(cur, offsets, counts, moff), moff, lab, -1


@njit(**_PARALLEL)
def merge_batched_parallel(boxes, offsets, area_thr, cover_thr):
    """As :func:`merge_batched_serial`, images spread over threads."""
    t_all = boxes.shape[0]
    nb = offsets.shape[0] - 1
    cur = np.empty((t_all, 4), boxes.dtype)
    lab = np.empty(t_all, np.int64)
    counts = np.zeros(nb, np.int64)
    bad = first_bad(boxes)
    if bad >= 0:
        return cur[:0], np.zeros(nb + 1, np.int64), lab, bad
    par = np.empty(t_all, np.int64)
    nid = np.empty(t_all, np.int64)
    ar = np.empty(t_all, np.float64)
    for b in prange(nb):
        counts[b] = _merge_segment(boxes, offsets[b], offsets[b + 1], area_thr, cover_thr, cur, lab, par, nid, ar)
    moff = _prefix(counts)
    return _gather(cur, offsets, counts, moff), moff, lab, -1
