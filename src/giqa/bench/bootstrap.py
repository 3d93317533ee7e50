"""Per-item arrays -> Table 5 metrics, and seeded bootstrap confidence intervals over items.

Every metric is a ratio of sums over items, so one resample of items gives one value of each
metric; DES metrics resample DES items, VQA metrics resample VQA items (Yes/No and open-ended
together, so Acc(Total) keeps its mixture only in expectation, as a resampled bench would).
Scales are Table 5's: BLEU@4 and LLM-Score in 0..100, the others in 0..1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from giqa.bench.bleu import bleu_from_totals

__all__ = ["DesArrays", "VqaArrays", "des_metrics", "vqa_metrics", "bootstrap_cis", "METRICS"]

#: Metric keys in Table 5's column order.
METRICS = (
    "des_miou", "des_tag_recall", "bleu4", "llm_score",
    "vqa_miou", "vqa_tag_recall", "acc_y", "acc_w", "acc_total",
)


@dataclass
class DesArrays:
    """Per DES item: ``bleu`` (N, 10) BLEU statistics, ``llm`` (N,) judge 0..4 (nan: none),
    grounding ``iou`` / ``ref`` / ``tp`` / ``pred`` (N,) float64."""

    bleu: np.ndarray
    llm: np.ndarray
    iou: np.ndarray
    ref: np.ndarray
    tp: np.ndarray
    pred: np.ndarray


@dataclass
class VqaArrays:
    """Per VQA item: ``is_y`` (N,) bool, ``y`` (N,) 1/0 correctness (nan for open-ended),
    ``w`` (N,) judge score / 4 (nan for Yes/No or no judge), grounding as :class:`DesArrays`."""

    is_y: np.ndarray
    y: np.ndarray
    w: np.ndarray
    iou: np.ndarray
    ref: np.ndarray
    tp: np.ndarray
    pred: np.ndarray
    has_judge: bool = field(default=True)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _grounding(a, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = a.ref[idx].sum(axis=-1)
    return _ratio(a.iou[idx].sum(axis=-1), ref), _ratio(a.tp[idx].sum(axis=-1), ref)


def des_metrics(a: DesArrays, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics for each row of item indices ``idx`` (B, N) -> dict of (B,) arrays."""
    out: dict[str, np.ndarray] = {}
    if a.pred.sum() > 0:
        out["des_miou"], out["des_tag_recall"] = _grounding(a, idx)
    else:  # N/A: the model gives no boxes
        out["des_miou"] = out["des_tag_recall"] = np.full(idx.shape[0], np.nan)
    if len(a.bleu):
        out["bleu4"] = bleu_from_totals(a.bleu[idx].sum(axis=1))[:, -1] * 100.0
    else:
        out["bleu4"] = np.full(idx.shape[0], np.nan)
    llm = a.llm[idx]
    ok = ~np.isnan(llm)
    out["llm_score"] = _ratio(np.where(ok, llm, 0).sum(axis=1), ok.sum(axis=1).astype(float)) * 25.0
    return out


def vqa_metrics(a: VqaArrays, idx: np.ndarray) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if a.pred.sum() > 0:
        out["vqa_miou"], out["vqa_tag_recall"] = _grounding(a, idx)
    else:
        out["vqa_miou"] = out["vqa_tag_recall"] = np.full(idx.shape[0], np.nan)
    is_y = a.is_y[idx]
    n_y = is_y.sum(axis=1).astype(float)
    acc_y = _ratio(np.where(is_y, np.nan_to_num(a.y[idx]), 0).sum(axis=1), n_y)
    w = a.w[idx]
    w_ok = (~is_y) & ~np.isnan(w)
    n_w = w_ok.sum(axis=1).astype(float)
    acc_w = _ratio(np.where(w_ok, w, 0).sum(axis=1), n_w)
    out["acc_y"], out["acc_w"] = acc_y, acc_w
    total = _ratio(np.nan_to_num(acc_y) * n_y + np.nan_to_num(acc_w) * n_w, n_y + n_w)
    # Acc(Total) needs both parts when both kinds exist
    missing = ((n_y > 0) & np.isnan(acc_y)) | (((~is_y).sum(axis=1) > 0) & np.isnan(acc_w))
    out["acc_total"] = np.where(missing, np.nan, total)
    return out


def _chunks(n_items: int, n_boot: int, width: int) -> list[int]:
    per = max(1, int(4_000_000 // max(1, n_items * width)))
    sizes, left = [], n_boot
    while left > 0:
        sizes.append(min(per, left))
        left -= sizes[-1]
    return sizes


def bootstrap_cis(
    des: Optional[DesArrays],
    vqa: Optional[VqaArrays],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals ``{metric: (low, high)}`` from ``n_boot`` resamples of items
    (``numpy.random.default_rng(seed)``). Metrics that are N/A or undefined are left out."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot <= 0:
        return {}
    rng = np.random.default_rng(seed)
    samples: dict[str, list[np.ndarray]] = {}
    for arrays, fn, width in ((des, des_metrics, 12), (vqa, vqa_metrics, 8)):
        if arrays is None:
            continue
        n = len(arrays.iou)
        if n == 0:
            continue
        for b in _chunks(n, n_boot, width):
            idx = rng.integers(0, n, size=(b, n))
            for k, v in fn(arrays, idx).items():
                samples.setdefault(k, []).append(v)
    alpha = (1 - level) / 2
    out = {}
    for k, parts in samples.items():
        v = np.concatenate(parts)
        v = v[~np.isnan(v)]
        if len(v):
            out[k] = (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha)))
    return out
