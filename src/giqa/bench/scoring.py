"""Score predictions against a GIQA-Bench file: every Table 5 metric for any grounding model.

A prediction is ``{"id": <sample id>, "answer": <model output>}``; the output may carry boxes in
any format :mod:`giqa.text.formats` reads, detected per answer by default (``fmt="auto"``).
The ground truth is a list of :class:`giqa.types.Sample` (DES and VQA items). What each
metric uses:

* DES: BLEU@4 (``bleu_flavour``; COCO BLEU tokenises with the Java PTBTokenizer when it can
  run, giqa's port otherwise) and LLM-Score on the text without coordinates; mIoU and
  Tag-Recall on the boxes of the answer against the reference answer's grounded phrases,
  with box precision / recall / F1 and boxes per answer next to them.
* VQA: Acc(Y) on ``yes_no`` items by the word rule (:mod:`giqa.bench.yesno`, optional judge
  fallback); Acc(W) by the judge on the others; grounding as for DES, over VQA items.

Missing predictions count as empty answers (wrong, no boxes) and are reported; predictions
for ids not in the bench are ignored and reported; a duplicated id is an input error
(:class:`giqa.errors.ParseError`).
"""

from __future__ import annotations

import contextlib
import gc
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from giqa.bench.bleu import FLAVOURS, bleu as corpus_bleu
from giqa.bench.bleu_job import CocoBleuJob
from giqa.bench.bootstrap import Components, DesArrays, VqaArrays, bootstrap_cis, components, metrics_from_sums
from giqa.bench.breakdown import vqa_breakdown
from giqa.bench.grounding import match_items
from giqa.bench.items import (
    Prediction, ScoredItem, as_predictions, build_items, format_counts, index_predictions, read_bench, read_predictions,
    read_references, warn_other_markup,
)
from giqa.bench.judge import Judge
from giqa.bench.report import BenchReport, LazyRows
from giqa.bench.yesno import extract_yes_no
from giqa.types import Sample, Task

__all__ = ["Prediction", "score", "read_bench", "read_predictions", "parse_prediction"]


def parse_prediction(text: str, fmt: str = "auto", grid: tuple[int, int] = (20, 20)):
    """Parse one model output in format ``fmt`` (``auto``: its own markup's format, plain
    text without markup) -> :class:`giqa.text.ParsedText`."""
    from giqa.bench.items import _Reader

    return _Reader(fmt).parse(text, grid)[1]


@dataclass(frozen=True)
class _Options:
    fmt: str
    judge: Optional[Judge]
    embedder: Any
    bleu_flavour: str
    tokenizer: Any
    yes_no_fallback: bool
    name: Optional[str]
    n_boot: int
    seed: int
    command: Optional[Sequence[str]]


def score(
    predictions: Any,
    ground_truth: Union[Sequence[Sample], str, Path],
    *,
    fmt: str = "auto",
    judge: Optional[Judge] = None,
    embedder: Any = None,
    bleu_flavour: str = "coco",
    tokenizer: Any = "auto",
    yes_no_fallback: bool = False,
    name: Optional[str] = None,
    n_boot: int = 1000,
    seed: int = 0,
    command: Optional[Sequence[str]] = None,
) -> BenchReport:
    """Every Table 5 metric of ``predictions`` on ``ground_truth``, with provenance.

    Parameters
    ----------
    predictions : sequence of Prediction or dicts, mapping id -> answer, or a JSONL path.
    ground_truth : sequence of Sample or a bench JSONL path.
    fmt : box format of the predictions: ``auto`` (default: each answer's own markup, so a
        file may mix formats), ``giqa``, ``giqa-norm``, ``kosmos2``, ``qwen-vl``, ``shikra``,
        ``ferret``, ``florence2``, ``paligemma``. References are always giqa.
    judge : :class:`giqa.bench.judge.Judge` for LLM-Score and Acc(W) (N/A without one).
    embedder : :class:`giqa.models.protocols.Embedder` for Tag-Recall's name similarity;
        exact normalised names without one.
    bleu_flavour : ``"coco"`` (pycocoevalcap, default) or ``"sacrebleu-13a"``.
    tokenizer : COCO BLEU's PTB tokeniser: ``auto`` (Java when it can run, else the port),
        ``java`` or ``python`` (:mod:`giqa.bench.tokenizers`); the report names the one used.
    yes_no_fallback : ask the judge about Yes/No answers the word rule cannot read.
    n_boot, seed : bootstrap resamples and seed for the confidence intervals (0: none).
    command : the command line to record in the report's provenance (the CLI passes it).
    """
    if bleu_flavour not in FLAVOURS:
        raise ValueError(f"unknown BLEU flavour {bleu_flavour!r}; choose one of {', '.join(FLAVOURS)}")
    if yes_no_fallback and judge is None:
        raise ValueError("yes_no_fallback needs a judge")
    opts = _Options(fmt, judge, embedder, bleu_flavour, tokenizer, yes_no_fallback, name, n_boot, seed, command)
    # Without a judge the run is pure Python bookkeeping, where the cyclic collector costs
    # ~40% of the time; with one, LLM calls dominate and may make cycles: leave it alone.
    with _gc_paused() if judge is None else contextlib.nullcontext():
        return _score(predictions, ground_truth, opts)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector for the duration of a scoring run.

    Scoring builds millions of small container objects (parsed spans, instances, per-sample
    rows) that all stay alive until the report is returned, so every full collection the
    allocator triggers walks the whole growing heap and frees nothing (5-6 s of a 13 s run on
    100,000 items, ``benchmarks/results/bench.md``). Acyclic garbage is still freed at once by
    reference counting; the collector is switched back on (if it was on) however the run ends.
    The switch is process-wide, as in :mod:`timeit`. Used only for runs without a judge.
    """
    was_enabled = gc.isenabled()
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _score(predictions: Any, ground_truth: Any, opts: _Options) -> BenchReport:
    """The scoring run: read, parse, evaluate each item, aggregate, report.

    COCO BLEU runs in the background from the moment the references are read
    (:class:`giqa.bench.bleu_job.CocoBleuJob`); all that does not need it is done before
    waiting for it."""
    gt, preds, by_id = _read_inputs(predictions, ground_truth)
    notes: list[str] = []
    des_gt, vqa_gt = [s for s in gt if s.task is Task.des], [s for s in gt if s.task is Task.vqa]
    job = _bleu_job(des_gt, opts)
    with job if job is not None else contextlib.nullcontext():
        des = _des_items(des_gt, by_id, opts, notes, job)
        vqa = build_items(vqa_gt, by_id, opts.fmt, notes)
        items = _in_bench_order(gt, des, vqa)
        warn_other_markup(items, opts.fmt, notes)
        _evaluate_items(items, des, vqa, opts)
        vqa_c = components(_vqa_arrays(vqa, opts.judge is not None)) if vqa else None
        vqa_ci = bootstrap_cis(None, vqa_c, n_boot=opts.n_boot, seed=opts.seed)
        summary: list[str] = []
        _summary_notes(items, by_id, gt, opts, summary)
        formats = format_counts(items)
        breakdown, counts = vqa_breakdown(items), _counts(items, by_id, gt, formats)
        prov = _provenance(predictions, preds, ground_truth, gt, opts, None)
        stats, tok_name = _bleu_stats(job, notes)
    des_c = components(_des_arrays(des, stats)) if des else None
    ci = {**_des_intervals(des_c, opts, notes), **vqa_ci}
    prov["tokenizer"] = tok_name
    return BenchReport(
        name=_report_name(opts, preds), metrics=_metrics(des_c, vqa_c, des, opts), ci=ci, counts=counts,
        per_sample=LazyRows(lambda: [it.row() for it in items]), settings=_settings(opts, tok_name, formats),
        notes=notes + summary, breakdown=breakdown, provenance=prov,
        components={k: c for k, c in (("des", des_c), ("vqa", vqa_c)) if c is not None},
    )


def _read_inputs(predictions: Any, ground_truth: Any) -> tuple[list[Sample], list[Prediction], dict[str, Prediction]]:
    """``(bench samples, predictions, id -> prediction)``; duplicate ids are input errors."""
    gt = read_bench(ground_truth) if isinstance(ground_truth, (str, Path)) else list(ground_truth)
    preds = as_predictions(predictions)
    by_id = index_predictions(preds, str(predictions) if isinstance(predictions, (str, Path)) else "predictions")
    _check_unique_bench(gt)
    return gt, preds, by_id


def _bleu_job(des: Sequence[Sample], opts: _Options) -> Optional[CocoBleuJob]:
    """The background COCO BLEU job of the DES items (None: no DES item, or another flavour)."""
    if not des or opts.bleu_flavour != "coco":
        return None
    return CocoBleuJob(opts.tokenizer)


def _des_items(des: Sequence[Sample], by_id: dict[str, Prediction], opts: _Options, notes: list[str],
               job: Optional[CocoBleuJob]) -> list[ScoredItem]:
    """The DES items; ``job`` gets the references as soon as they are read (their JVM runs
    while the predictions are parsed) and the predictions' clean text right after."""
    refs = read_references(des)
    if job is not None:
        job.references([r.text for r in refs])
    items = build_items(des, by_id, opts.fmt, notes, refs)
    if job is not None:
        job.hypotheses([it.clean for it in items])
    return items


def _in_bench_order(gt: Sequence[Sample], des: list[ScoredItem], vqa: list[ScoredItem]) -> list[ScoredItem]:
    """The DES and VQA items (each in bench order) merged back into the bench's order."""
    des_items, vqa_items = iter(des), iter(vqa)
    return [next(des_items) if s.task is Task.des else next(vqa_items) for s in gt]


def _evaluate_items(items: Sequence[ScoredItem], des: Sequence[ScoredItem], vqa: Sequence[ScoredItem],
                    opts: _Options) -> None:
    """Fill each item's grounding, Yes/No reading and (with a judge) judge scores."""
    _ground(items, opts.embedder)
    _read_yes_no(vqa)
    if opts.judge is not None:
        _judge(opts.judge, des, vqa, opts.yes_no_fallback)


def _des_intervals(des_c: Optional[Components], opts: _Options, notes: list[str]) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of the DES metrics (none for BLEU that sacrebleu computes); the same
    as :func:`bootstrap_cis` of both tasks gives for DES."""
    ci = bootstrap_cis(des_c, None, n_boot=opts.n_boot, seed=opts.seed)
    if opts.bleu_flavour != "coco":
        ci.pop("bleu4", None)
        notes.append("no bootstrap interval for sacrebleu-13a BLEU (computed by sacrebleu)")
    return ci


def _report_name(opts: _Options, preds: Sequence[Prediction]) -> str:
    """``name``, else the predictions' one ``model`` field, else ``"model"``."""
    model_names = {p.model for p in preds if p.model}
    return opts.name or (next(iter(model_names)) if len(model_names) == 1 else "model")


def _check_unique_bench(gt: Sequence[Sample]) -> None:
    seen: set[str] = set()
    for s in gt:
        if s.id in seen:
            from giqa.errors import ParseError

            raise ParseError(f"ground truth has the id {s.id!r} twice")
        seen.add(s.id)


def _bleu_stats(job: Optional[CocoBleuJob], notes: list[str]) -> tuple[np.ndarray, Optional[str]]:
    if job is None:
        return np.zeros((0, 10)), None
    stats, name, tok_notes = job.result()
    notes.extend(tok_notes)
    return stats, name


def _ground(items: Sequence[ScoredItem], embedder: Any) -> None:
    sim_fn = _similarity_fn(embedder, items)
    for it, g in zip(items, match_items([(it.pred, it.ref) for it in items], sim_fn)):
        it.grounding = g


def _read_yes_no(vqa: Sequence[ScoredItem]) -> None:
    for it in vqa:
        if not it.is_yes_no:
            continue
        ref = extract_yes_no(it.reference)
        if ref is None:
            raise ValueError(f"bench item {it.sample.id!r}: the Yes/No reference {it.reference!r} is neither Yes nor No")
        got = extract_yes_no(it.clean)
        it.gt_yes = ref
        it.yes_no = None if got is None else ("yes" if got else "no")
        it.correct = got is ref


def _judge(judge: Judge, des: Sequence[ScoredItem], vqa: Sequence[ScoredItem], fallback: bool) -> None:
    """LLM-Score for DES, Acc(W) for open-ended VQA and (``fallback``) unreadable Yes/No."""
    from giqa.bench.items import _Reader

    questions = _Reader("giqa")
    for it in vqa:
        it.question = questions.read(it.sample.question, it.sample.grid).text
    if des:
        for it, r in zip(des, judge.score_descriptions([it.clean for it in des], [it.reference for it in des])):
            it.judge_score, it.judge_raw, it.judge_error = r.score, r.raw, r.error
    unknown = [it for it in vqa if it.is_yes_no and it.yes_no is None]
    if fallback and unknown:
        for it, r in zip(unknown, judge.yes_no([it.question for it in unknown], [it.clean for it in unknown])):
            it.judge_raw = r.raw  # a failed reading leaves the item wrong, not out of the mean
            if r.error:
                it.issues.append(f"Yes/No judge: {r.error}")
            if r.score is not None:
                it.yes_no = "yes" if r.score == 1 else "no"
                it.correct = (r.score == 1) is it.gt_yes
    open_ = [it for it in vqa if not it.is_yes_no]
    if open_:
        res = judge.score_answers([it.question for it in open_], [it.clean for it in open_], [it.reference for it in open_])
        for it, r in zip(open_, res):
            it.judge_score, it.judge_raw, it.judge_error = r.score, r.raw, r.error


def _grounding_arrays(items: Sequence[ScoredItem]) -> dict[str, np.ndarray]:
    g = [it.grounding for it in items]
    return {
        "iou": np.array([x.iou_sum for x in g], dtype=np.float64),
        "ref": np.array([x.n_ref for x in g], dtype=np.float64),
        "tp": np.array([x.tp for x in g], dtype=np.float64),
        "pred": np.array([x.n_pred for x in g], dtype=np.float64),
        "hits": np.array([x.hits for x in g], dtype=np.float64),
    }


def _des_arrays(des: Sequence[ScoredItem], stats: np.ndarray) -> DesArrays:
    llm = np.array([np.nan if it.judge_score is None else it.judge_score for it in des], dtype=np.float64)
    return DesArrays(stats, llm, **_grounding_arrays(des))


def _vqa_arrays(vqa: Sequence[ScoredItem], has_judge: bool) -> VqaArrays:
    is_y = np.array([it.is_yes_no for it in vqa], dtype=bool)
    y = np.array([float(bool(it.correct)) if it.is_yes_no else np.nan for it in vqa])
    w = np.array([it.judge_score / 4.0 if (not it.is_yes_no and it.judge_score is not None) else np.nan for it in vqa])
    return VqaArrays(is_y, y, w, has_judge=has_judge, **_grounding_arrays(vqa))


def _metrics(des_c: Optional[Components], vqa_c: Optional[Components], des, opts: _Options) -> dict[str, Optional[float]]:
    from giqa.bench.bootstrap import GROUNDING_EXTRA, METRICS

    metrics: dict[str, Optional[float]] = {k: None for k in METRICS + GROUNDING_EXTRA}
    for c in (des_c, vqa_c):
        if c is not None:
            metrics.update({k: _scalar(v) for k, v in metrics_from_sums(c, c.values.sum(axis=0)[None, :]).items()})
    if des and opts.bleu_flavour != "coco":
        metrics["bleu4"] = corpus_bleu([it.clean for it in des], [it.reference for it in des],
                                       flavour="sacrebleu-13a").score * 100.0
    return metrics


def _scalar(v: np.ndarray) -> Optional[float]:
    x = float(v[0])
    return None if math.isnan(x) else x


def _counts(items: Sequence[ScoredItem], by_id, gt, formats: dict[str, int]) -> dict[str, Any]:
    gt_ids = {s.id for s in gt}
    n_des = sum(1 for s in gt if s.task is Task.des)
    n_y = sum(1 for it in items if it.is_yes_no)
    return {
        "des": n_des,
        "vqa_y": n_y,
        "vqa_w": len(items) - n_des - n_y,
        "missing": sum(1 for it in items if it.missing),
        "extra": sum(1 for k in by_id if k not in gt_ids),
        "judge_failed": sum(1 for it in items if it.judge_error),
        "formats": formats,
    }


def _summary_notes(items: Sequence[ScoredItem], by_id, gt, opts: _Options, notes: list[str]) -> None:
    missing = sum(1 for it in items if it.missing)
    extra = len(set(by_id) - {s.id for s in gt})
    if missing:
        notes.append(f"{missing} bench items have no prediction (scored as empty answers)")
    if extra:
        notes.append(f"{extra} predictions have ids not in the bench (ignored)")
    unknown = sum(1 for it in items if it.is_yes_no and it.yes_no is None and not it.missing)
    if unknown:
        notes.append(f"{unknown} Yes/No answers were neither Yes nor No (counted wrong)")
    failed = [it.sample.id for it in items if it.judge_error]
    if failed:
        notes.append(f"judge output unparseable after retries for {len(failed)} items "
                     f"(left out of the means): {', '.join(failed[:10])}{' ...' if len(failed) > 10 else ''}")
    if opts.judge is None:
        notes.append("no judge: LLM-Score and Acc(W) (hence Acc(Total)) are N/A")
    elif opts.judge.random_weights:
        notes.append(f"judge {opts.judge.model_id} has random weights: judge metrics are meaningless")


def _settings(opts: _Options, tok_name: Optional[str], formats: dict[str, int]) -> dict[str, Any]:
    j = opts.judge
    return {
        "format": opts.fmt,
        "formats_read": formats,
        "bleu": opts.bleu_flavour,
        "tokenizer": tok_name,
        "judge": None if j is None else {"model": j.model_id, "url": j.base_url, "prompt_version": j.prompt_version,
                                         "temperature": j.temperature, "random_weights": j.random_weights},
        "name_similarity": "exact" if opts.embedder is None else {"embedder": getattr(opts.embedder, "model_id", "?")},
        "matching": "hungarian",
        "bootstrap": {"n": opts.n_boot, "seed": opts.seed, "level": 0.95},
    }


def _provenance(predictions, preds, ground_truth, gt, opts: _Options, tok_name: Optional[str]) -> dict[str, Any]:
    from giqa.bench.provenance import provenance

    return provenance(
        bench=ground_truth, bench_lines=lambda: [f"{s.id}\t{s.task.value}\t{s.question}\t{s.answer}" for s in gt],
        predictions=predictions, prediction_lines=lambda: [f"{p.id}\t{p.answer}" for p in preds],
        command=opts.command, tokenizer=tok_name, bleu_flavour=opts.bleu_flavour, judge=opts.judge,
    )


def _similarity_fn(embedder: Any, items: Sequence[ScoredItem]):
    """Name similarity ``(preds, refs) -> (P, R)``: one embedding call for all names."""
    from giqa.bench.grounding import name_key

    if embedder is None:
        return None  # exact names
    names = sorted({name_key(i.name) for it in items if it.pred and it.ref for i in it.pred + it.ref})
    if not names:
        return None
    vecs = np.asarray(embedder.embed(names), dtype=np.float64)
    if vecs.shape[0] != len(names):
        raise ValueError(f"embedder returned {vecs.shape[0]} vectors for {len(names)} names")
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs = vecs / np.where(norms == 0, 1.0, norms)
    index = {n: k for k, n in enumerate(names)}

    def sim(preds, refs) -> np.ndarray:
        a = vecs[[index[name_key(i.name)] for i in preds]]
        b = vecs[[index[name_key(i.name)] for i in refs]]
        return a @ b.T

    return sim
