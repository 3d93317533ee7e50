"""Reading bench and prediction files, and turning each bench item into a :class:`ScoredItem`.

A prediction is ``{"id": <sample id>, "answer": <model output>}``. Its boxes are read in the
format given, or, with ``fmt="auto"`` (the default), in the format its own markup shows
(:mod:`giqa.bench.detect`; answers without markup are plain text). References are giqa's
grounded syntax on the sample's grid. Duplicate ids are an input error naming their lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence, Union

from giqa.bench.detect import detect_format, markup_formats
from giqa.bench.grounding import Instance, ItemGrounding
from giqa.errors import ParseError
from giqa.types import Sample, Task, VqaKind

__all__ = [
    "Prediction", "ScoredItem", "AnswerRead", "read_bench", "read_predictions", "as_predictions", "index_predictions",
    "read_references", "build_items", "format_counts", "warn_other_markup", "FORMAT_CHOICES",
]

#: ``fmt`` values :func:`build_items` takes.
FORMAT_CHOICES = ("auto", "giqa", "giqa-norm", "kosmos2", "qwen-vl", "shikra", "ferret", "florence2", "paligemma")


class Prediction(NamedTuple):
    """One model output for one bench item (``line``: where it was read, if from a file).

    A named tuple: files of 100,000 predictions are read into these."""

    id: str
    answer: str
    model: Optional[str] = None
    line: Optional[int] = None


@dataclass(slots=True)
class ScoredItem:
    """One bench item while it is scored (text without coordinates, boxes as instances)."""

    sample: Sample
    raw: str  # the model's answer as given ("" when missing)
    missing: bool
    fmt: Optional[str]  # the box format it was read in (None: plain text)
    clean: str
    pred: list[Instance]
    reference: str
    ref: list[Instance]
    issues: list[str]
    is_yes_no: bool = False
    question: str = ""
    grounding: ItemGrounding = ItemGrounding(0.0, 0, 0, 0, 0)  # immutable: a shared default is safe
    gt_yes: Optional[bool] = None
    yes_no: Optional[str] = None
    correct: Optional[bool] = None
    judge_score: Optional[float] = None
    judge_raw: Optional[str] = None
    judge_error: Optional[str] = None

    def row(self) -> dict[str, Any]:
        """The per-sample record of a report (JSON-ready)."""
        g = self.grounding
        row: dict[str, Any] = {
            "id": self.sample.id,
            "task": self.sample.task.value,
            "vqa_kind": self.sample.vqa_kind.value if self.sample.vqa_kind else None,
            "missing": self.missing,
            "raw_prediction": self.raw,
            "format": self.fmt,
            "prediction": self.clean,
            "reference": self.reference,
            "pred": [{"name": name, "box": list(box)} for name, box in self.pred],
            "ref": [{"name": name, "box": list(box)} for name, box in self.ref],
            "issues": self.issues,
            "n_pred_boxes": g.n_pred, "n_ref_boxes": g.n_ref, "iou_sum": g.iou_sum, "tag_tp": g.tp, "box_hits": g.hits,
        }
        if self.is_yes_no:
            row.update(gt=("yes" if self.gt_yes else "no"), yes_no=self.yes_no, correct=self.correct)
        if self.judge_raw is not None or self.judge_error is not None:
            row.update(judge_score=self.judge_score, judge_raw=self.judge_raw, judge_error=self.judge_error)
        return row


# -- reading ----------------------------------------------------------------------------------
def _jsonl(path: Union[str, Path]) -> Iterable[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of a JSONL input (:func:`giqa.data.io.iter_jsonl_numbered`:
    a line that is not UTF-8, JSON or an object is a :class:`ParseError` naming its line)."""
    from giqa.data.io import iter_jsonl_numbered

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    return iter_jsonl_numbered(p, on_bad="raise")


def read_bench(path: Union[str, Path]) -> list[Sample]:
    """A bench file: JSONL, one :class:`giqa.types.Sample` per line (ids must be unique)."""
    out: list[Sample] = []
    seen: dict[str, int] = {}
    for lineno, rec in _jsonl(path):
        try:
            s = Sample.model_validate(rec)
        except ValueError as exc:
            raise ParseError(f"{path}: line {lineno}: not a Sample: {exc}") from exc
        if s.id in seen:
            raise ParseError(f"{path}: the id {s.id!r} appears twice (lines {seen[s.id]} and {lineno})")
        seen[s.id] = lineno
        out.append(s)
    return out


def read_predictions(path: Union[str, Path]) -> list[Prediction]:
    """A predictions file: JSONL of ``{"id": str, "answer": str}`` (extra keys such as
    ``model`` are allowed)."""
    out = []
    for lineno, rec in _jsonl(path):
        pid, ans = rec.get("id"), rec.get("answer")
        if not isinstance(pid, (str, int)) or isinstance(pid, bool) or not isinstance(ans, str):
            raise ParseError(f"{path}: line {lineno}: a prediction needs a string 'id' and a string 'answer'")
        model = rec.get("model")
        out.append(Prediction(str(pid), ans, model if isinstance(model, str) else None, lineno))
    return out


def as_predictions(predictions: Any) -> list[Prediction]:
    """Predictions from a JSONL path, a mapping ``id -> answer`` or a sequence of
    :class:`Prediction` / dicts."""
    if isinstance(predictions, (str, Path)):
        return read_predictions(predictions)
    if isinstance(predictions, Mapping):
        return [Prediction(str(k), v) for k, v in predictions.items()]
    out = []
    for k, p in enumerate(predictions):
        if isinstance(p, Prediction):
            out.append(p)
        elif isinstance(p, Mapping):
            if "id" not in p or not isinstance(p.get("answer"), str):
                raise ParseError(f"prediction {k}: needs an 'id' and a string 'answer'")
            out.append(Prediction(str(p["id"]), p["answer"], p.get("model")))
        else:
            raise TypeError(f"expected Prediction or dict, got {type(p).__name__}")
    return out


def index_predictions(preds: Sequence[Prediction], source: str = "predictions") -> dict[str, Prediction]:
    """``id -> Prediction``; a repeated id is a :class:`giqa.errors.ParseError` naming where."""
    by_id: dict[str, Prediction] = {}
    for k, p in enumerate(preds):
        first = by_id.get(p.id)
        if first is not None:
            where = (f"lines {first.line} and {p.line}" if p.line is not None and first.line is not None
                     else f"entries {preds.index(first) + 1} and {k + 1}")
            raise ParseError(f"{source}: the id {p.id!r} appears twice ({where}); keep one answer per bench item")
        by_id[p.id] = p
    return by_id


# -- parsing ----------------------------------------------------------------------------------
Parser = Callable[[str, tuple[int, int]], Any]


def _parser(fmt: str) -> Parser:
    """``(text, grid) -> ParsedText`` for a box format (lenient)."""
    if fmt == "giqa":
        from giqa.text import parse_grounded

        return lambda text, grid: parse_grounded(text, n=grid[0], m=grid[1], strict=False)
    from giqa.text.formats import get_format

    f = get_format(fmt)  # raises for an unknown name
    return lambda text, grid: f.parse(text)


class AnswerRead(NamedTuple):
    """One answer as read: the format used (None: plain text), its clean text (no
    coordinates), its boxes as instances and what the lenient parser worked around."""

    fmt: Optional[str]
    text: str
    instances: list[Instance]
    issues: list[str]


class _Reader:
    """Reads answers in a fixed format or, for ``auto``, in each answer's own format;
    memoised for one scoring run (short answers such as "Yes." repeat a lot).

    giqa text whose every mention is canonical (giqa's own references, well-behaved models)
    takes :func:`giqa.text.scanner.canonical_mentions`' fast path: the same result as
    detecting its format and parsing it, without building spans (tested)."""

    def __init__(self, fmt: str) -> None:
        if fmt not in FORMAT_CHOICES:
            raise ValueError(f"unknown box format {fmt!r}; choose one of {', '.join(FORMAT_CHOICES)}")
        from giqa.text.scanner import canonical_mentions

        self.fmt = fmt
        self._canonical = canonical_mentions if fmt in ("auto", "giqa") else None
        self._parsers: dict[str, Parser] = {}
        self._memo: dict[tuple[str, tuple[int, int]], AnswerRead] = {}

    def parser(self, fmt: str) -> Parser:
        got = self._parsers.get(fmt)
        if got is None:
            got = self._parsers[fmt] = _parser(fmt)
        return got

    def read(self, text: str, grid: tuple[int, int]) -> AnswerRead:
        """The answer ``text`` on a ``grid`` sample (raises :class:`ParseError` as its parser)."""
        key = (text, grid)
        got = self._memo.get(key)
        if got is None:
            got = self._memo[key] = self._fast(text, grid) or self._parse(text, grid)
        return got

    def _fast(self, text: str, grid: tuple[int, int]) -> Optional[AnswerRead]:
        if self._canonical is None:
            return None
        found = self._canonical(text, grid[0], grid[1])
        if found is None:
            return None
        clean, mentions, plain_outside = found
        if self.fmt == "giqa":
            used: Optional[str] = "giqa"
        elif plain_outside:  # no other format's markup: detection would say giqa, or plain
            used = "giqa" if mentions else None
        else:
            return None
        return AnswerRead(used, clean, [Instance(phrase, box) for phrase, boxes in mentions for box in boxes], [])

    def parse(self, text: str, grid: tuple[int, int]) -> tuple[Optional[str], Any]:
        """``(format used or None for plain text, ParsedText)``, not memoised."""
        fmt = self.fmt if self.fmt != "auto" else detect_format(text, self._count)
        return fmt, self.parser(fmt or "giqa")(text, grid)

    def _parse(self, text: str, grid: tuple[int, int]) -> AnswerRead:
        fmt, parsed = self.parse(text, grid)
        return AnswerRead(fmt, parsed.text, _instances(parsed), list(parsed.issues))

    def _count(self, text: str, fmt: str) -> int:
        return sum(len(s.boxes) for s in self.parser(fmt)(text, (20, 20)).spans)


def _instances(parsed: Any) -> list[Instance]:
    if not parsed.spans:
        return []
    return [Instance(s.phrase, (b.x1, b.y1, b.x2, b.y2)) for s in parsed.spans for b in s.boxes]


def _ref_instances(sample: Sample, read: AnswerRead) -> list[Instance]:
    if not read.instances and sample.task is Task.des:  # a DES reference kept clean: use its regions
        return [Instance(r.phrase, b.as_tuple()) for r in sample.regions for b in r.boxes]
    return read.instances


def read_references(gt: Sequence[Sample]) -> list[AnswerRead]:
    """The reference answer of each bench item as read (giqa grounded text on its grid)."""
    refs = _Reader("giqa")
    return [refs.read(s.answer, s.grid) for s in gt]


def build_items(gt: Sequence[Sample], by_id: Mapping[str, Prediction], fmt: str, notes: list[str],
                references: Optional[Sequence[AnswerRead]] = None) -> list[ScoredItem]:
    """One :class:`ScoredItem` per bench item; what went wrong on the way is added to ``notes``.
    ``references``: :func:`read_references` of ``gt`` if already made."""
    reader = _Reader(fmt)
    refs = read_references(gt) if references is None else references
    if len(refs) != len(gt):
        raise ValueError(f"{len(refs)} references read for {len(gt)} bench items")
    items = []
    for s, ref in zip(gt, refs):
        p = by_id.get(s.id)
        text = p.answer if p is not None else ""
        try:
            read: Optional[AnswerRead] = reader.read(text, s.grid)
        except ParseError as exc:  # lenient parsers rarely raise; keep the item, no boxes
            read = None
            notes.append(f"{s.id}: prediction could not be parsed ({exc})")
        items.append(ScoredItem(
            sample=s, raw=text, missing=p is None, fmt=read.fmt if read is not None and p is not None else None,
            clean=read.text if read is not None else text,
            pred=list(read.instances) if read is not None else [],
            reference=ref.text, ref=list(_ref_instances(s, ref)),
            issues=list(read.issues) if read is not None else [],
            is_yes_no=s.vqa_kind is VqaKind.yes_no,
        ))
    return items


def format_counts(items: Sequence[ScoredItem]) -> dict[str, int]:
    """How many answers were read in each format ("plain": no box markup; missing left out)."""
    return dict(sorted(Counter(it.fmt or "plain" for it in items if not it.missing).items()))


def warn_other_markup(items: Sequence[ScoredItem], fmt: str, notes: list[str]) -> None:
    """A note when a forced format read no boxes from answers that carry another format's markup."""
    if fmt == "auto":
        return
    other: Counter = Counter()
    for it in items:
        if not it.pred and it.raw:
            found = [f for f in markup_formats(it.raw) if f != fmt]
            if found:
                other[found[0]] += 1
    if other:
        what = ", ".join(f"{n} in {f} markup" for f, n in other.most_common())
        notes.append(f"--format {fmt} read no boxes from {sum(other.values())} answers that carry another "
                     f"format's markup ({what}); score with --format auto (the default) or the right --format")
