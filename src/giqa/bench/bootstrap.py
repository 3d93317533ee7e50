"""Per-item arrays -> Table 5 metrics, and seeded bootstrap confidence intervals over items.

Every metric is a function of sums over items, so each task's items are first turned into one
``(N, K)`` matrix of components (:func:`components`); one resample of items is one weight
vector ``w`` (how often each item is drawn), and ``w @ C`` gives all sums of a resample at
once (one matrix product per chunk of resamples). DES metrics resample DES items, VQA metrics
resample VQA items (Yes/No and open-ended together, so Acc(Total) keeps its mixture only in
expectation, as a resampled bench would). Scales are Table 5's: BLEU@4 and LLM-Score in
0..100, the others in 0..1. :func:`paired_bootstrap` draws the same items for two models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional, Union

import numpy as np

from giqa.bench.bleu import bleu_from_totals

__all__ = [
    "DesArrays", "VqaArrays", "des_metrics", "vqa_metrics", "bootstrap_cis", "paired_bootstrap",
    "components", "METRICS", "GROUNDING_EXTRA",
]

#: Metric keys in Table 5's column order.
METRICS = (
    "des_miou", "des_tag_recall", "bleu4", "llm_score",
    "vqa_miou", "vqa_tag_recall", "acc_y", "acc_w", "acc_total",
)
#: The other side of grounding, per task (additions beyond Table 5; see giqa.bench.grounding).
GROUNDING_EXTRA = tuple(
    f"{task}_{m}" for task in ("des", "vqa") for m in ("box_precision", "box_recall", "box_f1", "boxes_per_answer")
)
_GROUNDING = ("iou", "ref", "tp", "pred", "hits")


@dataclass
class DesArrays:
    """Per DES item: ``bleu`` (N, 10) BLEU statistics, ``llm`` (N,) judge 0..4 (nan: none),
    grounding ``iou`` / ``ref`` / ``tp`` / ``pred`` / ``hits`` (N,) float64."""

    bleu: np.ndarray
    llm: np.ndarray
    iou: np.ndarray
    ref: np.ndarray
    tp: np.ndarray
    pred: np.ndarray
    hits: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.hits is None:
            self.hits = np.zeros(len(self.iou))


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
    hits: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.hits is None:
            self.hits = np.zeros(len(self.iou))


Arrays = Union[DesArrays, VqaArrays]


@dataclass(frozen=True)
class Components:
    """One task's items as named columns: ``values`` (N, K) float64; ``task`` des or vqa;
    ``boxes``: whether the model gave any box on the task (grounding is N/A otherwise)."""

    task: str
    names: tuple[str, ...]
    values: np.ndarray
    boxes: bool

    def col(self, sums: np.ndarray, name: str) -> np.ndarray:
        return sums[:, self.names.index(name)]


def components(a: Arrays) -> Components:
    """The ``(N, K)`` component matrix of a task's arrays (what its metrics sum over)."""
    cols: dict[str, np.ndarray] = {"ones": np.ones(len(a.iou))}
    for g in _GROUNDING:
        cols[g] = np.asarray(getattr(a, g), dtype=np.float64)
    if isinstance(a, DesArrays):
        task = "des"
        for k in range(a.bleu.shape[1] if a.bleu.ndim == 2 and len(a.bleu) else 0):
            cols[f"bleu{k}"] = a.bleu[:, k]
        ok = ~np.isnan(a.llm)
        cols["llm_n"], cols["llm_sum"] = ok.astype(float), np.where(ok, a.llm, 0.0)
    else:
        task = "vqa"
        is_y = a.is_y.astype(float)
        w_ok = (~a.is_y) & ~np.isnan(a.w)
        cols.update(y_n=is_y, y_sum=is_y * np.nan_to_num(a.y), open_n=1.0 - is_y,
                    w_n=w_ok.astype(float), w_sum=np.where(w_ok, a.w, 0.0))
    values = np.column_stack(list(cols.values())) if len(a.iou) else np.zeros((0, len(cols)))
    return Components(task, tuple(cols), values, bool(np.sum(a.pred) > 0))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _grounding(c: Components, s: np.ndarray) -> dict[str, np.ndarray]:
    """mIoU, Tag-Recall and the extras of one task from sums ``s`` (B, K); all but boxes per
    answer are N/A (nan) when the model gives no box on any item of the task."""
    t = c.task
    pred = c.col(s, "pred")
    out = {f"{t}_boxes_per_answer": _ratio(pred, c.col(s, "ones"))}
    keys = ("miou", "tag_recall", "box_precision", "box_recall", "box_f1")
    if not c.boxes:
        nan = np.full(len(s), np.nan)
        return {**out, **{f"{t}_{k}": nan for k in keys}}
    ref, hits = c.col(s, "ref"), c.col(s, "hits")
    p, r = _ratio(hits, pred), _ratio(hits, ref)
    f1 = np.where(np.isnan(p) | np.isnan(r), np.nan, _ratio(2 * p * r, p + r))
    f1 = np.where((p == 0) & (r == 0), 0.0, f1)
    vals = (_ratio(c.col(s, "iou"), ref), _ratio(c.col(s, "tp"), ref), p, r, f1)
    return {**out, **{f"{t}_{k}": v for k, v in zip(keys, vals)}}


def metrics_from_sums(c: Components, s: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of task ``c`` for each row of sums ``s`` (B, K) -> dict of (B,) arrays."""
    out = _grounding(c, s)
    if c.task == "des":
        bleu_cols = [k for k, n in enumerate(c.names) if n.startswith("bleu")]
        out["bleu4"] = bleu_from_totals(s[:, bleu_cols])[:, -1] * 100.0 if bleu_cols else np.full(len(s), np.nan)
        out["llm_score"] = _ratio(c.col(s, "llm_sum"), c.col(s, "llm_n")) * 25.0
        return out
    n_y, n_w = c.col(s, "y_n"), c.col(s, "w_n")
    acc_y = _ratio(c.col(s, "y_sum"), n_y)
    acc_w = _ratio(c.col(s, "w_sum"), n_w)
    total = _ratio(np.nan_to_num(acc_y) * n_y + np.nan_to_num(acc_w) * n_w, n_y + n_w)
    # Acc(Total) needs both parts when both kinds are drawn
    missing = ((n_y > 0) & np.isnan(acc_y)) | ((c.col(s, "open_n") > 0) & np.isnan(acc_w))
    out.update(acc_y=acc_y, acc_w=acc_w, acc_total=np.where(missing, np.nan, total))
    return out


def des_metrics(a: DesArrays, w: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics under item weights ``w`` (B, N) (how often each item is drawn; all ones = the
    bench itself) -> dict of (B,) arrays."""
    c = components(a)
    return metrics_from_sums(c, np.asarray(w, dtype=np.float64) @ c.values)


def vqa_metrics(a: VqaArrays, w: np.ndarray) -> dict[str, np.ndarray]:
    """As :func:`des_metrics` for VQA items."""
    c = components(a)
    return metrics_from_sums(c, np.asarray(w, dtype=np.float64) @ c.values)


def _chunks(n_items: int, n_boot: int) -> list[int]:
    per = max(1, int(4_000_000 // max(1, n_items)))  # (B, N) draws: <= 32 MB of int64
    sizes, left = [], n_boot
    while left > 0:
        sizes.append(min(per, left))
        left -= sizes[-1]
    return sizes


def _resample_weights(rng: np.random.Generator, n: int, n_boot: int) -> Iterator[np.ndarray]:
    """Chunks of (b, n) float64 draw counts: each row one resample of n items with replacement."""
    dtype = np.int32 if n < 2**31 else np.int64
    for b in _chunks(n, n_boot):
        idx = rng.integers(0, n, size=(b, n), dtype=dtype)
        w = np.empty((b, n), dtype=np.float64)
        for r in range(b):
            w[r] = np.bincount(idx[r], minlength=n)
        yield w


def _percentiles(values: np.ndarray, level: float) -> Optional[tuple[float, float]]:
    v = values[~np.isnan(values)]
    if not len(v):
        return None
    alpha = (1 - level) / 2
    return float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))


def bootstrap_cis(
    des: Union[DesArrays, Components, None],
    vqa: Union[VqaArrays, Components, None],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals ``{metric: (low, high)}`` from ``n_boot`` resamples of items.

    DES and VQA items are resampled by two generators spawned from ``seed``
    (``numpy.random.SeedSequence(seed).spawn(2)``), so the two tasks can run at once (big
    benches: two threads; NumPy's drawing, counting and matrix products release the GIL)
    and give the same intervals either way. A metric that is N/A or undefined on the bench
    itself gets no interval, even where some resamples happen to define it. Each task is given
    as its arrays or their :func:`components`."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot <= 0:
        return {}
    tasks = [a if a is None or isinstance(a, Components) else components(a) for a in (des, vqa)]
    jobs = [(c, np.random.default_rng(s)) for c, s in zip(tasks, np.random.SeedSequence(seed).spawn(2))
            if c is not None and len(c.values)]
    if len(jobs) == 2 and sum(len(c.values) for c, _ in jobs) >= _THREADED_ITEMS:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="giqa-bootstrap") as pool:
            parts = list(pool.map(lambda job: _task_cis(job[0], job[1], n_boot, level), jobs))
    else:
        parts = [_task_cis(a, rng, n_boot, level) for a, rng in jobs]
    return {k: v for part in parts for k, v in part.items()}


_THREADED_ITEMS = 20_000  # below this, a thread costs more than it saves


def _task_cis(c: Components, rng: np.random.Generator, n_boot: int, level: float) -> dict[str, tuple[float, float]]:
    """:func:`bootstrap_cis` of one task's items."""
    point = metrics_from_sums(c, c.values.sum(axis=0)[None, :])
    parts: dict[str, list[np.ndarray]] = {}
    for w in _resample_weights(rng, len(c.values), n_boot):
        for k, v in metrics_from_sums(c, w @ c.values).items():
            parts.setdefault(k, []).append(v)
    out = {}
    for k, vs in parts.items():
        if not np.isnan(point[k][0]):
            got = _percentiles(np.concatenate(vs), level)
            if got is not None:
                out[k] = got
    return out


def paired_bootstrap(
    a: Union[Arrays, "Components"], b: Union[Arrays, "Components"], *, n_boot: int = 1000, seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Paired bootstrap of model ``a`` minus model ``b`` on the same items (same task; arrays
    or their :func:`components`).

    Each resample draws the same items for both models. Per metric defined for both:
    ``diff`` (a - b on the bench), ``low``/``high`` (percentile interval of the difference)
    and ``p`` (two-sided: twice the smaller number of resampled differences on either side
    of 0, plus one, over the resamples plus one; at most 1, never 0).
    """
    ca = a if isinstance(a, Components) else components(a)
    cb = b if isinstance(b, Components) else components(b)
    if len(ca.values) != len(cb.values) or ca.task != cb.task:
        raise ValueError(f"paired test needs the same items: {ca.task} x {len(ca.values)} vs {cb.task} x {len(cb.values)}")
    if n_boot <= 0 or not len(ca.values):
        return {}
    pa = metrics_from_sums(ca, ca.values.sum(axis=0)[None, :])
    pb = metrics_from_sums(cb, cb.values.sum(axis=0)[None, :])
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[np.ndarray]] = {}
    for w in _resample_weights(rng, len(ca.values), n_boot):
        ma, mb = metrics_from_sums(ca, w @ ca.values), metrics_from_sums(cb, w @ cb.values)
        for k in ma:
            diffs.setdefault(k, []).append(ma[k] - mb[k])
    out = {}
    for k, parts in diffs.items():
        d0 = float(pa[k][0] - pb[k][0])
        if np.isnan(d0):
            continue
        d = np.concatenate(parts)
        d = d[~np.isnan(d)]
        if not len(d):
            continue
        lo, hi = _percentiles(d, level) or (float("nan"), float("nan"))
        # two-sided, counting the bench itself as one more draw so that p is never 0
        p = min(1.0, 2 * (min(int(np.sum(d <= 0)), int(np.sum(d >= 0))) + 1) / (len(d) + 1))
        out[k] = {"diff": d0, "low": lo, "high": hi, "p": p}
    return out
