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


def _grounding(a, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = w @ a.ref
    return _ratio(w @ a.iou, ref), _ratio(w @ a.tp, ref)


def des_metrics(a: DesArrays, w: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics under item weights ``w`` (B, N) (how often each item is drawn; all ones = the
    bench itself) -> dict of (B,) arrays."""
    out: dict[str, np.ndarray] = {}
    nan = np.full(w.shape[0], np.nan)
    if a.pred.sum() > 0:
        out["des_miou"], out["des_tag_recall"] = _grounding(a, w)
    else:  # N/A: the model gives no boxes
        out["des_miou"] = out["des_tag_recall"] = nan
    out["bleu4"] = bleu_from_totals(w @ a.bleu)[:, -1] * 100.0 if len(a.bleu) else nan
    ok = ~np.isnan(a.llm)
    out["llm_score"] = _ratio(w @ np.where(ok, a.llm, 0.0), w @ ok.astype(float)) * 25.0
    return out


def vqa_metrics(a: VqaArrays, w: np.ndarray) -> dict[str, np.ndarray]:
    """As :func:`des_metrics` for VQA items."""
    out: dict[str, np.ndarray] = {}
    if a.pred.sum() > 0:
        out["vqa_miou"], out["vqa_tag_recall"] = _grounding(a, w)
    else:
        out["vqa_miou"] = out["vqa_tag_recall"] = np.full(w.shape[0], np.nan)
    is_y = a.is_y.astype(float)
    n_y = w @ is_y
    acc_y = _ratio(w @ (is_y * np.nan_to_num(a.y)), n_y)
    w_ok = (~a.is_y) & ~np.isnan(a.w)
    n_w = w @ w_ok.astype(float)
    acc_w = _ratio(w @ np.where(w_ok, a.w, 0.0), n_w)
    out["acc_y"], out["acc_w"] = acc_y, acc_w
    total = _ratio(np.nan_to_num(acc_y) * n_y + np.nan_to_num(acc_w) * n_w, n_y + n_w)
    # Acc(Total) needs both parts when both kinds are drawn
    missing = ((n_y > 0) & np.isnan(acc_y)) | (((w @ (1.0 - is_y)) > 0) & np.isnan(acc_w))
    out["acc_total"] = np.where(missing, np.nan, total)
    return out


def _chunks(n_items: int, n_boot: int) -> list[int]:
    per = max(1, int(8_000_000 // max(1, n_items)))  # (B, N) float64 weights: <= 64 MB
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
    for arrays, fn in ((des, des_metrics), (vqa, vqa_metrics)):
        if arrays is None:
            continue
        n = len(arrays.iou)
        if n == 0:
            continue
        for b in _chunks(n, n_boot):
            # a resample of n items with replacement, as draw counts per item
            w = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(b)]).astype(np.float64)
            for k, v in fn(arrays, w).items():
                samples.setdefault(k, []).append(v)
    alpha = (1 - level) / 2
    out = {}
    for k, parts in samples.items():
        v = np.concatenate(parts)
        v = v[~np.isnan(v)]
        if len(v):
            out[k] = (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha)))
    return out
