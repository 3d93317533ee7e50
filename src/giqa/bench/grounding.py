"""Grounding precision: category-agnostic mIoU and Tag-Recall, with a one-to-one matching.

The paper does not say how predicted boxes meet the ground truth; giqa matches them so:

* every grounded phrase contributes one *instance* per box (a phrase with two boxes is two
  instances with the same name);
* **mIoU** (category-agnostic): predicted and reference instances of one item are matched
  one-to-one by the Hungarian algorithm maximising the total IoU (``scipy.optimize.
  linear_sum_assignment``; pairs with IoU 0 stay unmatched). Each reference instance scores the
  IoU of its match, 0 when unmatched; mIoU is the mean over *all reference instances of the
  bench* (micro average), so missing boxes cost and extra boxes do not;
* **Tag-Recall**: a pair is a true positive when IoU > 0.5 *and* the name similarity > 0.5.
  Instances are matched one-to-one to maximise the number of true positives (ties broken by
  IoU), and Tag-Recall = true positives / reference instances (micro average);
* name similarity is the cosine of the embedder's unit vectors of the two phrases
  (:class:`giqa.models.protocols.Embedder`); without an embedder, 1.0 when the normalised names
  are equal (lower case, articles and surrounding punctuation removed) and 0.0 otherwise;
* a model that gives no box on any item of a task gets N/A (``None``) for both, as Table 5.

Both are recall: extra boxes cost nothing, so a model that sprays boxes over the image scores
high. The other side, reported next to them (additions beyond Table 5, category-agnostic):

* **hits** of an item: predicted and reference instances matched one-to-one to maximise the
  number of pairs with IoU > 0.5 (names ignored);
* **box precision** = hits / predicted instances, **box recall** = hits / reference
  instances, **box F1** their harmonic mean (all micro averages over the task's items; a
  predicted box on an item without reference boxes is a miss), and **boxes per answer** =
  predicted instances / answers.

Boxes are normalised xyxy in ``[0, 1]``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import permutations
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

__all__ = [
    "Instance",
    "ItemGrounding",
    "match_item",
    "match_items",
    "batch_iou",
    "name_key",
    "exact_similarity",
    "aggregate_grounding",
    "box_precision_recall",
]

IOU_THRESHOLD = 0.5
SIM_THRESHOLD = 0.5

_ARTICLES = re.compile(r"^(?:the|a|an)\s+")
_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")


class Instance(NamedTuple):
    """One named box: ``name`` (the grounded phrase), ``box`` (x1, y1, x2, y2) normalised.

    A named tuple: millions are built when scoring big prediction files."""

    name: str
    box: tuple[float, float, float, float]


class ItemGrounding(NamedTuple):
    """Per-item result: ``iou_sum`` over reference instances, ``n_ref``, ``n_pred``, ``tp``
    (Tag-Recall true positives), ``hits`` (one-to-one pairs with IoU > 0.5, names ignored).

    A named tuple (immutable): one is built per bench item."""

    iou_sum: float
    n_ref: int
    n_pred: int
    tp: int
    hits: int = 0


@lru_cache(maxsize=100_000)
def name_key(name: str) -> str:
    """Normalised object name for exact matching: lower case, no leading article, no edge punctuation."""
    s = " ".join(name.lower().split())
    s = _EDGE_PUNCT.sub("", s)
    return _ARTICLES.sub("", s)


def exact_similarity(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """``(len(a), len(b))`` float64: 1.0 where :func:`name_key` agrees, else 0.0."""
    kb = [name_key(y) for y in b]
    out = np.zeros((len(a), len(kb)), dtype=np.float64)
    for i, x in enumerate(a):
        kx = name_key(x)
        for j, y in enumerate(kb):
            if kx == y:
                out[i, j] = 1.0
    return out


def _assign(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-weight one-to-one assignment (rows, cols); tiny cases without scipy."""
    n, m = weight.shape
    if n == 1 or m == 1:
        flat = int(np.argmax(weight))
        r, c = divmod(flat, m)
        return np.array([r]), np.array([c])
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(weight, maximize=True)


def _max_matching(ok: np.ndarray) -> int:
    """Size of a maximum one-to-one matching on the True cells of boolean ``ok`` (P, R)."""
    r, c = _assign(ok.astype(np.float64))
    return int(ok[r, c].sum())


def match_item(
    preds: Sequence[Instance],
    refs: Sequence[Instance],
    similarity: Optional[np.ndarray] = None,
    *,
    iou: Optional[np.ndarray] = None,
) -> ItemGrounding:
    """Match one item's predicted instances to its reference instances (see module doc).

    ``similarity``: ``(len(preds), len(refs))`` name similarities; exact names when ``None``.
    ``iou``: the ``(len(preds), len(refs))`` IoU matrix if already computed.
    """
    if not refs or not preds:
        return ItemGrounding(0.0, len(refs), len(preds), 0, 0)
    if iou is None:
        from giqa.geometry import pairwise_iou

        iou = pairwise_iou(
            np.asarray([p.box for p in preds], dtype=np.float64), np.asarray([r.box for r in refs], dtype=np.float64)
        )
    if similarity is None and len(preds) == 1 and len(refs) == 1:
        # the general path below, worked out for one pair (the commonest item)
        v = float(iou[0, 0])
        hit = v > IOU_THRESHOLD
        same = hit and name_key(preds[0].name) == name_key(refs[0].name)
        return ItemGrounding(v, 1, 1, int(same), int(hit))
    rows, cols = _assign(iou)
    matched = iou[rows, cols]
    iou_sum = float(matched.sum())  # IoU-0 pairs add nothing: same as unmatched
    over = iou > IOU_THRESHOLD
    n_over = int(np.count_nonzero(over))
    if not n_over:
        return ItemGrounding(iou_sum, len(refs), len(preds), 0, 0)
    # the mIoU matching holds every pair over the threshold (the usual case): none can be more
    hits = sum(v > IOU_THRESHOLD for v in matched.tolist())
    if hits < n_over:
        hits = _max_matching(over)
    if similarity is None:
        similarity = exact_similarity([p.name for p in preds], [r.name for r in refs])
    valid = over & (similarity > SIM_THRESHOLD)
    if valid.any():
        # k valid pairs weigh in (k, k + k/(n+1)]: more true positives always win, IoU breaks ties
        weight = valid * (1.0 + iou / (iou.size + 1))
        r2, c2 = _assign(weight)
        tp = int(valid[r2, c2].sum())
    else:
        tp = 0
    return ItemGrounding(iou_sum, len(refs), len(preds), tp, hits)


class _Pairs(NamedTuple):
    """Every (predicted, reference) instance pair of a batch of items, flat. Pair ``t`` is
    predicted instance ``i[t]`` against reference instance ``j[t]`` of item ``item[t]``, i.e.
    ``p_off[item[t]] + i[t]`` / ``r_off[item[t]] + j[t]`` in the batch's flat instance lists;
    item ``k``'s pairs are ``iou[start[k] : start[k] + n_p[k] * n_r[k]]``, row-major
    ``(n_p[k], n_r[k])``."""

    n_p: np.ndarray
    n_r: np.ndarray
    p_off: np.ndarray
    r_off: np.ndarray
    start: np.ndarray
    item: np.ndarray
    i: np.ndarray
    j: np.ndarray
    iou: np.ndarray


def _flat_pairs(items: Sequence[tuple[Sequence[Instance], Sequence[Instance]]]) -> _Pairs:
    """The IoU of every pair of every item, from one element-wise :func:`giqa.geometry.iou`."""
    from giqa.geometry import iou as elementwise_iou

    n_p = np.fromiter(map(len, (p for p, _ in items)), np.int64, len(items))
    n_r = np.fromiter(map(len, (r for _, r in items)), np.int64, len(items))
    counts = n_p * n_r
    p_off, r_off, start = (np.cumsum(c) - c for c in (n_p, n_r, counts))
    item = np.repeat(np.arange(len(items)), counts)
    i, j = np.divmod(np.arange(int(counts.sum())) - start[item], n_r[item])
    if not item.size:
        return _Pairs(n_p, n_r, p_off, r_off, start, item, i, j, np.zeros(0))
    a = np.array([b.box for p, _ in items for b in p], dtype=np.float64).reshape(-1, 4)
    b = np.array([x.box for _, r in items for x in r], dtype=np.float64).reshape(-1, 4)
    return _Pairs(n_p, n_r, p_off, r_off, start, item, i, j,
                  elementwise_iou(a[p_off[item] + i], b[r_off[item] + j]))


def _item_iou(pairs: _Pairs, k: int) -> Optional[np.ndarray]:
    """Item ``k``'s ``(P, R)`` IoU matrix (a view), None when it has no pair."""
    p, r = int(pairs.n_p[k]), int(pairs.n_r[k])
    if not p or not r:
        return None
    s = int(pairs.start[k])
    return pairs.iou[s : s + p * r].reshape(p, r)


def batch_iou(items: Sequence[tuple[Sequence[Instance], Sequence[Instance]]]) -> list[Optional[np.ndarray]]:
    """The ``(P_k, R_k)`` IoU matrix of every item, from one element-wise
    :func:`giqa.geometry.iou` call over all pairs (``None`` where an item has no pair)."""
    pairs = _flat_pairs(items)
    return [_item_iou(pairs, k) for k in range(len(items))]


def match_items(
    items: Sequence[tuple[Sequence[Instance], Sequence[Instance]]],
    similarity: Optional[Callable[[Sequence[Instance], Sequence[Instance]], Optional[np.ndarray]]] = None,
) -> list[ItemGrounding]:
    """:func:`match_item` over many ``(preds, refs)`` items, IoUs computed in one batch.

    ``similarity(preds, refs)`` gives an item's name-similarity matrix (exact names if ``None``).
    With exact names, the items with at most three predicted and three reference instances
    (nearly all of a bench) are matched all at once by :func:`_match_small`.
    """
    pairs = _flat_pairs(items)
    out: list[Optional[ItemGrounding]] = [None] * len(items)
    if similarity is None:
        small = np.flatnonzero((pairs.n_p > 0) & (pairs.n_p <= _SMALL) & (pairs.n_r > 0) & (pairs.n_r <= _SMALL))
        for k, g in zip(small.tolist(), _match_small(items, pairs, small)):
            out[k] = g
    for k, ((preds, refs), got) in enumerate(zip(items, out)):
        if got is not None:
            continue
        iou = _item_iou(pairs, k)
        if iou is None:
            out[k] = ItemGrounding(0.0, len(refs), len(preds), 0, 0)
            continue
        sim = similarity(preds, refs) if similarity is not None and (iou > IOU_THRESHOLD).any() else None
        out[k] = match_item(preds, refs, sim, iou=iou)
    return out  # type: ignore[return-value]


_SMALL = 3
_PERMS = np.array(list(permutations(range(_SMALL))))  # (6, 3): every one-to-one map of 3 rows


def _name_ids(items: Sequence[tuple[Sequence[Instance], Sequence[Instance]]]) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the predicted and reference instances' names, flat as in :class:`_Pairs`: equal
    exactly where :func:`name_key` agrees."""
    p_names = [i.name for p, _ in items for i in p]
    r_names = [i.name for _, r in items for i in r]
    keys: dict[str, int] = {}
    ids = {name: keys.setdefault(name_key(name), len(keys)) for name in dict.fromkeys(p_names + r_names)}
    return (np.fromiter(map(ids.__getitem__, p_names), np.int64, len(p_names)),
            np.fromiter(map(ids.__getitem__, r_names), np.int64, len(r_names)))


def _match_small(items: Sequence[tuple[Sequence[Instance], Sequence[Instance]]], pairs: _Pairs,
                 small: np.ndarray) -> list[ItemGrounding]:
    """:func:`match_item` (exact names) of the items ``small`` (indices), which have 1..3
    predicted and reference instances, vectorised: each item's IoU matrix is padded with
    zeros to 3 x 3, and every one-to-one matching of a P x R matrix is a permutation of the
    padded one (pairs with a padding cell count nothing), so the three optima (total IoU,
    pairs over 0.5, pairs over 0.5 with equal names) are maxima over the six permutations.
    Same values as the assignment solver."""
    m = len(small)
    if not m:
        return []
    rank = np.full(len(pairs.n_p), -1)
    rank[small] = np.arange(m)
    sel = rank[pairs.item] >= 0  # the pairs of these items
    item, i, j = pairs.item[sel], pairs.i[sel], pairs.j[sel]
    iou = np.zeros((m, _SMALL, _SMALL))
    iou[rank[item], i, j] = pairs.iou[sel]
    p_ids, r_ids = _name_ids(items)
    same = np.zeros((m, _SMALL, _SMALL), dtype=bool)
    same[rank[item], i, j] = p_ids[pairs.p_off[item] + i] == r_ids[pairs.r_off[item] + j]
    rows = np.arange(_SMALL)[None, :]
    paired = iou[:, rows, _PERMS]  # (m, 6, 3): the pairs of each permutation
    over = paired > IOU_THRESHOLD
    iou_sum = paired.sum(axis=2).max(axis=1)
    hits = over.sum(axis=2).max(axis=1)
    tp = (over & same[:, rows, _PERMS]).sum(axis=2).max(axis=1)
    return [ItemGrounding(s, r, p, t, h) for s, r, p, t, h in zip(
        iou_sum.tolist(), pairs.n_r[small].tolist(), pairs.n_p[small].tolist(), tp.tolist(), hits.tolist())]


def box_precision_recall(items: Sequence[ItemGrounding]) -> tuple[Optional[float], Optional[float], Optional[float], float]:
    """``(box precision, box recall, box F1, boxes per answer)`` over ``items`` (see the
    module doc); the first three are None when no item has a predicted box (or, for recall,
    no reference box)."""
    n_pred = sum(it.n_pred for it in items)
    n_ref = sum(it.n_ref for it in items)
    hits = sum(it.hits for it in items)
    per_answer = n_pred / len(items) if items else float("nan")
    if n_pred == 0:
        return None, None, None, per_answer
    p = hits / n_pred
    r = hits / n_ref if n_ref else None
    f1 = None if r is None else (2 * p * r / (p + r) if p + r > 0 else 0.0)
    return p, r, f1, per_answer


def aggregate_grounding(items: Sequence[ItemGrounding]) -> tuple[Optional[float], Optional[float]]:
    """``(mIoU, Tag-Recall)`` micro-averaged over reference instances; ``(None, None)`` (N/A)
    when no item has a predicted box, ``(nan, nan)`` when there is no reference instance."""
    if not any(it.n_pred for it in items):
        return None, None
    n_ref = sum(it.n_ref for it in items)
    if n_ref == 0:
        return float("nan"), float("nan")
    return sum(it.iou_sum for it in items) / n_ref, sum(it.tp for it in items) / n_ref


SimilarityFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]
