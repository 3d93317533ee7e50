"""Numba kernels for Box-Merge (the rule is documented in :mod:`giqa.geometry.merge`).

Private. One core, :func:`_merge_segment`, merges the boxes ``boxes[s:e]`` of one image using
caller-provided scratch rows ``s .. e-1`` of ``cur``/``lab``/``par``/``nid``, so the batched
kernel runs images in parallel without allocating per image.

Each round links every pair of current clusters that satisfies the rule (union-find, the root
of a component is its smallest cluster id), replaces each component by its enclosing box, and
repeats until a round links nothing: a fixpoint. A round depends only on the set of boxes, not
on their order, and the final boxes are sorted by ``(x1, y1, x2, y2)``, so the output does not
depend on the input order. Cost per round is O(k^2) for k clusters; rounds <= N.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from giqa.geometry._checks import first_bad

_OPTS = dict(cache=True, error_model="numpy", nogil=True)
# Helpers state parallel=False so a parallel caller does not recompile them with its flags
# (Numba inherits unset flags), which can cost their vectorisation.
_SERIAL = dict(_OPTS, parallel=False)


@njit(**_SERIAL)
def _find(par, s, c):
    while par[s + c] != c:
        par[s + c] = par[s + par[s + c]]  # path halving; par[x] <= x always holds
        c = par[s + c]
    return c


@njit(**_SERIAL)
def _should_merge(cur, s, p, q, area_thr, cover_thr):
    """The merge rule for clusters ``p`` and ``q``, evaluated in float64."""
    px1 = np.float64(cur[s + p, 0])
    py1 = np.float64(cur[s + p, 1])
    px2 = np.float64(cur[s + p, 2])
    py2 = np.float64(cur[s + p, 3])
    qx1 = np.float64(cur[s + q, 0])
    qy1 = np.float64(cur[s + q, 1])
    qx2 = np.float64(cur[s + q, 2])
    qy2 = np.float64(cur[s + q, 3])
    w = min(px2, qx2) - max(px1, qx1)
    h = min(py2, qy2) - max(py1, qy1)
    touch = w >= 0.0 and h >= 0.0
    small = min((px2 - px1) * (py2 - py1), (qx2 - qx1) * (qy2 - qy1))
    if touch and small < area_thr:
        return True
    if not touch or small <= 0.0:
        return False  # no overlap, or a zero-area box: coverage 0
    return (w * h) / small > cover_thr


@njit(**_SERIAL)
def _greater(cur, r, k0, k1, k2, k3):
    """Row ``r`` of ``cur`` sorts after the key ``(k0, k1, k2, k3)``."""
    if cur[r, 0] != k0:
        return cur[r, 0] > k0
    if cur[r, 1] != k1:
        return cur[r, 1] > k1
    if cur[r, 2] != k2:
        return cur[r, 2] > k2
    return cur[r, 3] > k3


@njit(**_SERIAL)
def _merge_segment(boxes, s, e, area_thr, cover_thr, cur, lab, par, nid):
    """Merge ``boxes[s:e]``; writes ``cur[s:s+k]`` (sorted) and ``lab[s:e]``; returns ``k``."""
    n = e - s
    for i in range(n):
        for t in range(4):
            cur[s + i, t] = boxes[s + i, t]
        lab[s + i] = i
    k = n
    while k > 1:
        for c in range(k):
            par[s + c] = c
        joined = False
        for p in range(k):
            for q in range(p + 1, k):
                if _should_merge(cur, s, p, q, area_thr, cover_thr):
                    rp = _find(par, s, p)
                    rq = _find(par, s, q)
                    if rp != rq:
                        if rp < rq:
                            par[s + rq] = rp
                        else:
                            par[s + rp] = rq
                        joined = True
        if not joined:
            break
        # Compact: components get new ids in order of their root (their smallest member). The
        # root comes first, so slots written so far are all <= c and cur[s + c] is intact.
        nk = 0
        for c in range(k):
            r = _find(par, s, c)
            if r == c:
                nid[s + c] = nk
                for t in range(4):
                    cur[s + nk, t] = cur[s + c, t]
                nk += 1
            else:
                d = s + nid[s + r]
                cur[d, 0] = min(cur[d, 0], cur[s + c, 0])
                cur[d, 1] = min(cur[d, 1], cur[s + c, 1])
                cur[d, 2] = max(cur[d, 2], cur[s + c, 2])
                cur[d, 3] = max(cur[d, 3], cur[s + c, 3])
        for i in range(n):
            lab[s + i] = nid[s + _find(par, s, lab[s + i])]
        k = nk
    # Canonical order: insertion sort by (x1, y1, x2, y2), par holds the permutation.
    for c in range(k):
        par[s + c] = c
    for c in range(1, k):
        k0 = cur[s + c, 0]
        k1 = cur[s + c, 1]
        k2 = cur[s + c, 2]
        k3 = cur[s + c, 3]
        kp = par[s + c]
        j = c - 1
        while j >= 0 and _greater(cur, s + j, k0, k1, k2, k3):
            for t in range(4):
                cur[s + j + 1, t] = cur[s + j, t]
            par[s + j + 1] = par[s + j]
            j -= 1
        cur[s + j + 1, 0] = k0
        cur[s + j + 1, 1] = k1
        cur[s + j + 1, 2] = k2
        cur[s + j + 1, 3] = k3
        par[s + j + 1] = kp
    for c in range(k):
        nid[s + par[s + c]] = c
    for i in range(n):
        lab[s + i] = nid[s + lab[s + i]]
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
    k = _merge_segment(boxes, 0, n, area_thr, cover_thr, cur, lab, par, nid)
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
    for b in range(nb):
        counts[b] = _merge_segment(boxes, offsets[b], offsets[b + 1], area_thr, cover_thr, cur, lab, par, nid)
    moff = _prefix(counts)
    return _gather(cur, offsets, counts, moff), moff, lab, -1


@njit(parallel=True, **_OPTS)
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
    for b in prange(nb):
        counts[b] = _merge_segment(boxes, offsets[b], offsets[b + 1], area_thr, cover_thr, cur, lab, par, nid)
    moff = _prefix(counts)
    return _gather(cur, offsets, counts, moff), moff, lab, -1
