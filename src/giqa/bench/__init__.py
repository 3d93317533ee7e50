"""GIQA-Bench: the paper's evaluation (section 3.4, Table 5) for any grounding model.

Metrics are pure functions and import no torch or transformers: BLEU@4 (:mod:`.bleu`,
pycocoevalcap-exact without Java), Yes/No extraction (:mod:`.yesno`), mIoU and Tag-Recall
(:mod:`.grounding`); the LLM judge (:mod:`.judge`) takes any :class:`giqa.models.LLM`.
:func:`score` computes every Table 5 column, :mod:`.report` writes Markdown/CSV/JSON tables
with bootstrap intervals and radar charts, :mod:`.runner` generates predictions.
"""

from giqa.bench.bleu import BleuResult, bleu
from giqa.bench.grounding import Instance, aggregate_grounding, match_item
from giqa.bench.judge import Judge, JudgeCache, JudgeResult
from giqa.bench.ptb import ptb_tokenize
from giqa.bench.report import BenchReport, radar_chart, table5_markdown, write_reports
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
    "extract_yes_no",
    "match_item",
    "ptb_tokenize",
    "radar_chart",
    "read_bench",
    "read_predictions",
    "score",
    "table5_markdown",
    "write_reports",
    "yes_no_accuracy",
]


def acc_total(acc_y: float, acc_w: float, n_y: int, n_w: int) -> float:
    """Acc(Total) = (n_Y * Acc(Y) + n_W * Acc(W)) / (n_Y + n_W) (GIQA-Bench: n_Y=90, n_W=60)."""
    if n_y < 0 or n_w < 0 or n_y + n_w == 0:
        raise ValueError(f"need non-negative counts with a positive sum, got n_y={n_y}, n_w={n_w}")
    return (n_y * acc_y + n_w * acc_w) / (n_y + n_w)
