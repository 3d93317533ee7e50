"""GIQA-Bench: the paper's evaluation (section 3.4, Table 5) for any grounding model.

Metrics are pure functions and import no torch or transformers: BLEU@4 (:mod:`.bleu`, with
pycocoevalcap's PTB tokenisation: the Java tokeniser when it can run, giqa's port of it
otherwise, :mod:`.tokenizers`), Yes/No extraction (:mod:`.yesno`), mIoU and Tag-Recall with
box precision / recall / F1 beside them (:mod:`.grounding`); the LLM judge (:mod:`.judge`)
takes any :class:`giqa.models.LLM`. :func:`score` computes every Table 5 column (box format
detected per answer by default, :mod:`.detect`), :mod:`.report` writes Markdown/CSV/JSON tables
with bootstrap intervals, breakdowns, paired tests, provenance and radar charts,
:mod:`.paper_table5` holds the paper's own rows, :mod:`.runner` generates predictions.
"""

from giqa.bench.bleu import BleuResult, bleu
from giqa.bench.detect import detect_format, markup_formats
from giqa.bench.grounding import Instance, aggregate_grounding, box_precision_recall, match_item
from giqa.bench.judge import Judge, JudgeCache, JudgeResult
from giqa.bench.paper_table5 import reference_reports
from giqa.bench.ptb import ptb_tokenize, ptb_tokenize_batch
from giqa.bench.report import (
    BenchReport, compare_reports, radar_chart, table5_markdown, unique_names, write_reports,
)
from giqa.bench.scoring import Prediction, read_bench, read_predictions, score
from giqa.bench.yesno import extract_yes_no, yes_no_accuracy

__all__ = [
    "BenchReport",
    "BleuResult",
    "Instance",
    "Judge",
    "JudgeCache",
    "JudgeResult",
    "Prediction",
    "acc_total",
    "aggregate_grounding",
    "bleu",
    "box_precision_recall",
    "compare_reports",
    "detect_format",
    "extract_yes_no",
    "markup_formats",
    "match_item",
    "ptb_tokenize",
    "ptb_tokenize_batch",
    "radar_chart",
    "read_bench",
    "read_predictions",
    "reference_reports",
    "score",
    "table5_markdown",
    "unique_names",
    "write_reports",
    "yes_no_accuracy",
]


def acc_total(acc_y: float, acc_w: float, n_y: int, n_w: int) -> float:
    """Acc(Total) = (n_Y * Acc(Y) + n_W * Acc(W)) / (n_Y + n_W) (GIQA-Bench: n_Y=90, n_W=60)."""
    if n_y < 0 or n_w < 0 or n_y + n_w == 0:
        raise ValueError(f"need non-negative counts with a positive sum, got n_y={n_y}, n_w={n_w}")
    return (n_y * acc_y + n_w * acc_w) / (n_y + n_w)
