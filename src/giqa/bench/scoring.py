"""Score predictions against a GIQA-Bench file: every Table 5 metric for any grounding model.

A prediction is ``{"id": <sample id>, "answer": <model output>}``; the output may carry boxes in
any format :mod:`giqa.text.formats` reads (``fmt``). The ground truth is a list of
:class:`giqa.types.Sample` (DES and VQA items). What each metric uses:

* DES: BLEU@4 (``bleu_flavour``) and LLM-Score on the text without coordinates; mIoU and
  Tag-Recall on the boxes of the answer against the reference answer's grounded phrases.
* VQA: Acc(Y) on ``yes_no`` items by the word rule (:mod:`giqa.bench.yesno`, optional judge
  fallback); Acc(W) by the judge on the others; mIoU and Tag-Recall on items whose reference
  answer has boxes (grounding questions).

Missing predictions count as empty answers (wrong, no boxes) and are reported; predictions
for ids not in the bench are ignored and reported; a duplicated id is an error.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from giqa.bench.bleu import FLAVOURS, bleu as corpus_bleu, bleu_stats
from giqa.bench.bootstrap import DesArrays, VqaArrays, bootstrap_cis, des_metrics, vqa_metrics
from giqa.bench.grounding import Instance, match_items, name_key
from giqa.bench.judge import Judge
from giqa.bench.ptb import ptb_tokenize
from giqa.bench.report import BenchReport
from giqa.bench.yesno import extract_yes_no
from giqa.errors import ParseError
from giqa.types import Sample, Task, VqaKind

__all__ = ["Prediction", "score", "read_bench", "read_predictions", "parse_prediction"]


@dataclass(frozen=True)
class Prediction:
    """One model output for one bench item."""

    id: str
    answer: str
    model: Optional[str] = None


# -- I/O -------------------------------------------------------------------------------------
def _jsonl(path: Union[str, Path]) -> Iterable[tuple[int, dict[str, Any]]]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise ParseError(f"{p}:{lineno}: not JSON ({exc})") from exc
            if not isinstance(rec, dict):
                raise ParseError(f"{p}:{lineno}: expected a JSON object")
            yield lineno, rec


def read_bench(path: Union[str, Path]) -> list[Sample]:
    """A bench file: JSONL, one :class:`giqa.types.Sample` per line."""
    out = []
    for lineno, rec in _jsonl(path):
        try:
            out.append(Sample.model_validate(rec))
        except ValueError as exc:
            raise ParseError(f"{path}:{lineno}: not a Sample: {exc}") from exc
    return out


def read_predictions(path: Union[str, Path]) -> list[Prediction]:
    """A predictions file: JSONL of ``{"id": str, "answer": str}`` (extra keys such as
    ``model`` are allowed)."""
    out = []
    for lineno, rec in _jsonl(path):
        pid, ans = rec.get("id"), rec.get("answer")
        if not isinstance(pid, (str, int)) or not isinstance(ans, str):
            raise ParseError(f"{path}:{lineno}: a prediction needs a string 'id' and a string 'answer'")
        model = rec.get("model")
        out.append(Prediction(str(pid), ans, model if isinstance(model, str) else None))
    return out


def _as_predictions(predictions: Any) -> list[Prediction]:
    if isinstance(predictions, (str, Path)):
        return read_predictions(predictions)
    if isinstance(predictions, Mapping):
        return [Prediction(str(k), v) for k, v in predictions.items()]
    out = []
    for p in predictions:
        if isinstance(p, Prediction):
            out.append(p)
        elif isinstance(p, Mapping):
            out.append(Prediction(str(p["id"]), str(p["answer"]), p.get("model")))
        else:
            raise TypeError(f"expected Prediction or dict, got {type(p).__name__}")
    return out


# -- parsing ---------------------------------------------------------------------------------
def _parser(fmt: str) -> Callable[[str, tuple[int, int]], Any]:
    """``(text, grid) -> ParsedText`` for a box format."""
    if fmt == "giqa":
        from giqa.text import parse_grounded

        return lambda text, grid: parse_grounded(text, n=grid[0], m=grid[1], strict=False)
    from giqa.text.formats import get_format

    f = get_format(fmt)  # raises for an unknown name
    return lambda text, grid: f.parse(text)


def _cached(parse: Callable[[str, tuple[int, int]], Any]) -> Callable[[str, tuple[int, int]], Any]:
    """Memoise a parser for one scoring run (short answers such as "Yes." repeat a lot)."""
    memo: dict[tuple[str, tuple[int, int]], Any] = {}

    def run(text: str, grid: tuple[int, int]) -> Any:
        key = (text, grid)
        got = memo.get(key)
        if got is None:
            got = memo[key] = parse(text, grid)
        return got

    return run


def parse_prediction(text: str, fmt: str = "giqa", grid: tuple[int, int] = (20, 20)):
    """Parse one model output in format ``fmt`` -> :class:`giqa.text.ParsedText`."""
    return _parser(fmt)(text, grid)


def _instances(parsed: Any) -> list[Instance]:
    return [Instance(s.phrase, (b.x1, b.y1, b.x2, b.y2)) for s in parsed.spans for b in s.boxes]


def _ref_instances(sample: Sample, parsed_answer: Any) -> list[Instance]:
    inst = _instances(parsed_answer)
    if not inst and sample.task is Task.des:  # a DES reference kept clean: use its regions
        inst = [Instance(r.phrase, b.as_tuple()) for r in sample.regions for b in r.boxes]
    return inst


# -- scoring ---------------------------------------------------------------------------------
def score(
    predictions: Any,
    ground_truth: Union[Sequence[Sample], str, Path],
    *,
    fmt: str = "giqa",
    judge: Optional[Judge] = None,
    embedder: Any = None,
    bleu_flavour: str = "coco",
    yes_no_fallback: bool = False,
    name: Optional[str] = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> BenchReport:
    """Every Table 5 metric of ``predictions`` on ``ground_truth``.

    Parameters
    ----------
    predictions : sequence of Prediction or dicts, mapping id -> answer, or a JSONL path.
    ground_truth : sequence of Sample or a bench JSONL path.
    fmt : box format of the predictions (``giqa``, ``giqa-norm``, ``kosmos2``, ``qwen-vl``,
        ``shikra``, ``ferret``, ``florence2``, ``paligemma``). References are always giqa.
    judge : :class:`giqa.bench.judge.Judge` for LLM-Score and Acc(W) (N/A without one).
    embedder : :class:`giqa.models.protocols.Embedder` for Tag-Recall's name similarity;
        exact normalised names without one.
    bleu_flavour : ``"coco"`` (pycocoevalcap, default) or ``"sacrebleu-13a"``.
    yes_no_fallback : ask the judge about Yes/No answers the word rule cannot read.
    n_boot, seed : bootstrap resamples and seed for the confidence intervals (0: none).
    """
    # Without a judge the run is pure Python bookkeeping, where the cyclic collector costs
    # ~40% of the time; with one, LLM calls dominate and may make cycles: leave it alone.
    with _gc_paused() if judge is None else contextlib.nullcontext():
        return _score(
            predictions, ground_truth, fmt=fmt, judge=judge, embedder=embedder, bleu_flavour=bleu_flavour,
            yes_no_fallback=yes_no_fallback, name=name, n_boot=n_boot, seed=seed,
        )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector for the duration of a scoring run.

    Scoring builds millions of small container objects (parsed spans, instances, per-sample
    rows) that all stay alive until the report is returned, so every full collection the
    allocator triggers walks the whole growing heap and frees nothing: 5-6 s of a 13 s run on
    100,000 items (``benchmarks/results/bench.md``). Acyclic garbage is still freed at once by
    reference counting; the collector is switched back on (if it was on) however the run ends.
    The switch is process-wide, as in :mod:`timeit`, so other threads' reference cycles wait
    until the run finishes. Used only for runs without a judge (no model calls inside).
    """
    was_enabled = gc.isenabled()
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _score(
    predictions: Any,
    ground_truth: Union[Sequence[Sample], str, Path],
    *,
    fmt: str,
    judge: Optional[Judge],
    embedder: Any,
    bleu_flavour: str,
    yes_no_fallback: bool,
    name: Optional[str],
    n_boot: int,
    seed: int,
) -> BenchReport:
    if bleu_flavour not in FLAVOURS:
        raise ValueError(f"unknown BLEU flavour {bleu_flavour!r}; choose one of {', '.join(FLAVOURS)}")
    if yes_no_fallback and judge is None:
        raise ValueError("yes_no_fallback needs a judge")
    gt = read_bench(ground_truth) if isinstance(ground_truth, (str, Path)) else list(ground_truth)
    preds = _as_predictions(predictions)
    ids = [s.id for s in gt]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"ground truth has the id {dup!r} twice")
    by_id: dict[str, Prediction] = {}
    for p in preds:
        if p.id in by_id:
            raise ValueError(f"predictions have the id {p.id!r} twice")
        by_id[p.id] = p
    gt_ids = set(ids)
    extra = sorted(set(by_id) - gt_ids)
    missing = [i for i in ids if i not in by_id]
    parse_pred = _cached(_parser(fmt))
    parse_ref = _cached(_parser("giqa"))
    notes: list[str] = []
    if missing:
        notes.append(f"{len(missing)} bench items have no prediction (scored as empty answers)")
    if extra:
        notes.append(f"{len(extra)} predictions have ids not in the bench (ignored)")
    model_names = {p.model for p in preds if p.model}

    per_sample: list[dict[str, Any]] = []
    des_rows, vqa_rows = [], []
    for s in gt:
        p = by_id.get(s.id)
        text = p.answer if p is not None else ""
        try:
            parsed = parse_pred(text, s.grid)
        except ParseError as exc:  # lenient parsers rarely raise; keep the item, no boxes
            parsed = None
            notes.append(f"{s.id}: prediction could not be parsed ({exc})")
        clean = parsed.text if parsed is not None else text
        pred_inst = _instances(parsed) if parsed is not None else []
        ref_parsed = parse_ref(s.answer, s.grid)
        row = {
            "id": s.id,
            "task": s.task.value,
            "vqa_kind": s.vqa_kind.value if s.vqa_kind else None,
            "missing": p is None,
            "prediction": clean,
            "reference": ref_parsed.text,
            "pred": pred_inst,
            "ref": _ref_instances(s, ref_parsed),
            "question": s.question,  # clean text made below, only where a judge reads it
            "issues": list(parsed.issues) if parsed is not None else [],
        }
        (des_rows if s.task is Task.des else vqa_rows).append(row)
        per_sample.append(row)

    if judge is not None:
        for row, s in zip(per_sample, gt):
            if s.task is Task.vqa:
                row["question"] = parse_ref(s.question, s.grid).text
    sim_fn = _similarity_fn(embedder, per_sample)
    matched = match_items([(row["pred"], row["ref"]) for row in per_sample], sim_fn)
    for row, g in zip(per_sample, matched):
        row.update(n_pred_boxes=g.n_pred, n_ref_boxes=g.n_ref, iou_sum=g.iou_sum, tag_tp=g.tp)

    # DES: BLEU and LLM-Score
    des = None
    if des_rows:
        toks_h = [ptb_tokenize(r["prediction"]) for r in des_rows] if bleu_flavour == "coco" else None
        if bleu_flavour == "coco":
            stats = bleu_stats(toks_h, [[ptb_tokenize(r["reference"])] for r in des_rows])
        else:
            stats = np.zeros((0, 10))
        llm = np.full(len(des_rows), np.nan)
        if judge is not None:
            res = judge.score_descriptions([r["prediction"] for r in des_rows], [r["reference"] for r in des_rows])
            for k, (r, jr) in enumerate(zip(des_rows, res)):
                r["judge_score"], r["judge_error"] = jr.score, jr.error
                if jr.score is not None:
                    llm[k] = jr.score
        des = DesArrays(stats, llm, *_garrays(des_rows))

    # VQA: Acc(Y), Acc(W)
    vqa = None
    if vqa_rows:
        is_y = np.array([r["vqa_kind"] == VqaKind.yes_no.value for r in vqa_rows])
        y = np.full(len(vqa_rows), np.nan)
        w = np.full(len(vqa_rows), np.nan)
        unknown = []
        for k, r in enumerate(vqa_rows):
            if not is_y[k]:
                continue
            ref = extract_yes_no(r["reference"])
            if ref is None:
                raise ValueError(f"bench item {r['id']!r}: the Yes/No reference {r['reference']!r} is neither Yes nor No")
            got = extract_yes_no(r["prediction"])
            r["yes_no"] = None if got is None else ("yes" if got else "no")
            if got is None:
                unknown.append(k)
            y[k] = float(got is ref)
            r["correct"] = bool(y[k])
        if unknown and yes_no_fallback:
            res = judge.yes_no([vqa_rows[k]["question"] for k in unknown], [vqa_rows[k]["prediction"] for k in unknown])
            for k, jr in zip(unknown, res):
                r = vqa_rows[k]
                if jr.score is not None:
                    ref = extract_yes_no(r["reference"])
                    r["yes_no"] = "yes" if jr.score == 1 else "no"
                    y[k] = float(bool(jr.score) is ref)
                    r["correct"] = bool(y[k])
                r["judge_yes_no_error"] = jr.error
        if unknown:
            notes.append(f"{len(unknown)} Yes/No answers were neither Yes nor No"
                         + (" (judge fallback used)" if yes_no_fallback else " (counted wrong)"))
        w_idx = [k for k in range(len(vqa_rows)) if not is_y[k]]
        if judge is not None and w_idx:
            res = judge.score_answers(
                [vqa_rows[k]["question"] for k in w_idx],
                [vqa_rows[k]["prediction"] for k in w_idx],
                [vqa_rows[k]["reference"] for k in w_idx],
            )
            for k, jr in zip(w_idx, res):
                vqa_rows[k]["judge_score"], vqa_rows[k]["judge_error"] = jr.score, jr.error
                if jr.score is not None:
                    w[k] = jr.score / 4.0
        vqa = VqaArrays(is_y, y, w, *_garrays(vqa_rows), has_judge=judge is not None)

    metrics: dict[str, Optional[float]] = {}
    one = lambda n: np.ones((1, n))  # noqa: E731 - every item once: the bench itself
    if des is not None:
        metrics.update({k: _scalar(v) for k, v in des_metrics(des, one(len(des_rows))).items()})
        if bleu_flavour != "coco":
            metrics["bleu4"] = corpus_bleu(
                [r["prediction"] for r in des_rows], [r["reference"] for r in des_rows], flavour=bleu_flavour
            ).score * 100.0
    if vqa is not None:
        metrics.update({k: _scalar(v) for k, v in vqa_metrics(vqa, one(len(vqa_rows))).items()})
    for k in ("des_miou", "des_tag_recall", "bleu4", "llm_score", "vqa_miou", "vqa_tag_recall", "acc_y", "acc_w", "acc_total"):
        metrics.setdefault(k, None)
    ci = bootstrap_cis(des, vqa, n_boot=n_boot, seed=seed)
    if bleu_flavour != "coco":
        ci.pop("bleu4", None)
        notes.append("no bootstrap interval for sacrebleu-13a BLEU (computed by sacrebleu)")

    judge_failed = [r["id"] for r in per_sample if r.get("judge_error")]
    if judge_failed:
        notes.append(f"judge output unparseable after retries for {len(judge_failed)} items "
                     f"(left out of the means): {', '.join(judge_failed[:10])}{' ...' if len(judge_failed) > 10 else ''}")
    if judge is None:
        notes.append("no judge: LLM-Score and Acc(W) (hence Acc(Total)) are N/A")
    elif judge.random_weights:
        notes.append(f"judge {judge.model_id} has random weights: judge metrics are meaningless")
    for row in per_sample:
        row["pred"] = [{"name": i.name, "box": list(i.box)} for i in row["pred"]]
        row["ref"] = [{"name": i.name, "box": list(i.box)} for i in row["ref"]]
    counts = {
        "des": len(des_rows),
        "vqa_y": int(sum(1 for r in vqa_rows if r["vqa_kind"] == VqaKind.yes_no.value)),
        "vqa_w": int(sum(1 for r in vqa_rows if r["vqa_kind"] != VqaKind.yes_no.value)),
        "missing": len(missing),
        "extra": len(extra),
        "judge_failed": len(judge_failed),
    }
    settings = {
        "format": fmt,
        "bleu": bleu_flavour,
        "judge": None if judge is None else {"model": judge.model_id, "prompt_version": judge.prompt_version,
                                             "temperature": judge.temperature, "random_weights": judge.random_weights},
        "name_similarity": "exact" if embedder is None else {"embedder": getattr(embedder, "model_id", "?")},
        "matching": "hungarian",
        "bootstrap": {"n": n_boot, "seed": seed, "level": 0.95},
    }
    label = name or (next(iter(model_names)) if len(model_names) == 1 else "model")
    return BenchReport(label, metrics, ci, counts, per_sample, settings, notes)


def _scalar(v: np.ndarray) -> Optional[float]:
    x = float(v[0])
    return None if math.isnan(x) else x


def _garrays(rows: Sequence[dict[str, Any]]) -> tuple[np.ndarray, ...]:
    return (
        np.array([r["iou_sum"] for r in rows], dtype=np.float64),
        np.array([r["n_ref_boxes"] for r in rows], dtype=np.float64),
        np.array([r["tag_tp"] for r in rows], dtype=np.float64),
        np.array([r["n_pred_boxes"] for r in rows], dtype=np.float64),
    )


def _similarity_fn(embedder: Any, rows: Sequence[dict[str, Any]]):
    """Name similarity ``(preds, refs) -> (P, R)``: one embedding call for all names."""
    if embedder is None:
        return None  # exact names
    names = sorted({name_key(i.name) for row in rows if row["pred"] and row["ref"] for i in row["pred"] + row["ref"]})
    if not names:
        return None
    vecs = np.asarray(embedder.embed(names), dtype=np.float64)
    if vecs.shape[0] != len(names):
        raise ValueError(f"embedder returned {vecs.shape[0]} vectors for {len(names)} names")
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs = vecs / np.where(norms == 0, 1.0, norms)
    index = {n: k for k, n in enumerate(names)}

    def sim(preds: Sequence[Instance], refs: Sequence[Instance]) -> np.ndarray:
        a = vecs[[index[name_key(i.name)] for i in preds]]
        b = vecs[[index[name_key(i.name)] for i in refs]]
        return a @ b.T

    return sim
