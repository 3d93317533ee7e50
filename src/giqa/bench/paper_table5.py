"""The paper's Table 5 (GIQA-Bench results), as data: reference rows for reports.

Values copied from the Grounding-IQA paper, Table 5 ("Quantitative results on GIQA-Bench"),
in giqa's metric keys and Table 5's scales (BLEU@4 and LLM-Score 0..100, the rest 0..1);
``None`` is the paper's N/A. The paper's BLEU@4 is COCO-caption BLEU (pycocoevalcap).
:func:`reference_reports` turns them into :class:`giqa.bench.BenchReport` rows marked as
references, so a table can show them next to the user's models.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["TABLE5", "KEYS", "reference_reports"]

#: Metric keys in Table 5's column order.
KEYS = ("des_miou", "des_tag_recall", "bleu4", "llm_score", "vqa_miou", "vqa_tag_recall", "acc_y", "acc_w", "acc_total")
_NA = None

#: (group, method, values in KEYS order).
TABLE5: tuple[tuple[str, str, tuple[Optional[float], ...]], ...] = (
    ("General", "LLaVA-v1.5-7B", (_NA, _NA, 2.82, 47.00, _NA, _NA, 0.4444, 0.5167, 0.4733)),
    ("General", "LLaVA-v1.5-13B", (_NA, _NA, 3.00, 49.00, _NA, _NA, 0.3888, 0.5250, 0.4433)),
    ("General", "LLaVA-v1.6-7B", (_NA, _NA, 3.04, 50.50, _NA, _NA, 0.4889, 0.5333, 0.5067)),
    ("General", "mPLUG-Owl2-7B", (_NA, _NA, 3.62, 48.25, _NA, _NA, 0.5889, 0.5250, 0.5633)),
    ("Ground", "Shikra-7B", (0.4506, 0.4768, 0.40, 27.00, 0.4126, 0.4359, 0.5333, 0.3917, 0.4767)),
    ("Ground", "Kosmos-2-1.6B", (0.4946, 0.3448, 2.63, 39.25, 0.4982, 0.4103, 0.3889, 0.4750, 0.4233)),
    ("Ground", "Ferret-7B", (0.6458, 0.6778, 3.16, 43.75, 0.5393, 0.5769, 0.4111, 0.4875, 0.4417)),
    ("Ground", "GroundingGPT-7B", (0.4967, 0.5391, 1.99, 32.50, 0.3845, 0.5321, 0.5444, 0.5250, 0.5367)),
    ("IQA", "DepictQA-Wild-7B", (_NA, _NA, 3.34, 56.50, _NA, _NA, 0.4333, 0.5458, 0.4783)),
    ("IQA", "Q-Instruct (LLaVA-v1.5-7B)", (_NA, _NA, 22.69, 58.25, _NA, _NA, 0.6444, 0.5375, 0.6017)),
    ("IQA", "Q-Instruct (LLaVA-v1.5-13B)", (_NA, _NA, 19.01, 57.25, _NA, _NA, 0.6222, 0.5417, 0.5900)),
    ("IQA", "Q-Instruct (mPLUG-Owl2-7B)", (_NA, _NA, 21.46, 62.00, _NA, _NA, 0.6111, 0.5375, 0.5817)),
    ("Ours", "Grounding-IQA (LLaVA-v1.5-7B)", (0.5763, 0.5283, 19.02, 60.00, 0.5180, 0.5961, 0.7777, 0.5458, 0.6850)),
    ("Ours", "Grounding-IQA (LLaVA-v1.5-13B)", (0.6302, 0.5548, 20.24, 60.50, 0.6830, 0.7564, 0.7889, 0.5542, 0.6950)),
    ("Ours", "Grounding-IQA (LLaVA-v1.6-7B)", (0.6583, 0.5981, 19.17, 60.00, 0.5459, 0.6538, 0.8333, 0.5625, 0.7250)),
    ("Ours", "Grounding-IQA (mPLUG-Owl2-7B)", (0.5955, 0.5474, 22.87, 63.00, 0.6031, 0.7372, 0.8444, 0.5875, 0.7417)),
)


def reference_reports(methods: Optional[list[str]] = None) -> list:
    """Table 5 rows as reference :class:`giqa.bench.BenchReport` objects (all rows, or those
    whose method name contains one of ``methods``, case-insensitive). Their name is prefixed
    with ``paper:``; they carry no intervals, counts or per-sample rows."""
    from giqa.bench.report import BenchReport

    wanted = [m.lower() for m in methods] if methods else None
    out = []
    for group, method, values in TABLE5:
        if wanted is not None and not any(w in method.lower() for w in wanted):
            continue
        out.append(BenchReport(
            name=f"paper: {method}", metrics=dict(zip(KEYS, values)),
            settings={"bleu": "coco", "source": "Grounding-IQA paper, Table 5", "group": group},
            reference=True,
        ))
    if methods and not out:
        raise ValueError(f"no Table 5 method matches {methods}; methods: {', '.join(m for _, m, _ in TABLE5)}")
    return out
