"""Bench reports: Table 5 layout as Markdown, CSV and JSON, per-sample JSONL, radar chart PNG.

Scales follow Table 5: BLEU@4 and LLM-Score in 0..100, mIoU, Tag-Recall and accuracies in 0..1.
``None`` is N/A (a model without boxes, or a judge metric scored without a judge).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from giqa.bench.bootstrap import METRICS

__all__ = ["BenchReport", "table5_markdown", "table5_csv", "radar_chart", "write_reports", "COLUMNS"]

#: (metric key, Table 5 column header, task group, decimals)
COLUMNS = (
    ("des_miou", "mIoU", "GIQA-DES", 4),
    ("des_tag_recall", "Tag-Recall", "GIQA-DES", 4),
    ("bleu4", "BLEU@4", "GIQA-DES", 2),
    ("llm_score", "LLM-Score", "GIQA-DES", 2),
    ("vqa_miou", "mIoU", "GIQA-VQA", 4),
    ("vqa_tag_recall", "Tag-Recall", "GIQA-VQA", 4),
    ("acc_y", "Acc (Y)", "GIQA-VQA", 4),
    ("acc_w", "Acc (W)", "GIQA-VQA", 4),
    ("acc_total", "Acc (Total)", "GIQA-VQA", 4),
)


@dataclass
class BenchReport:
    """The scores of one model on one bench.

    ``metrics``: key (see :data:`COLUMNS`) -> value or ``None`` (N/A); ``ci``: key ->
    (low, high) bootstrap interval; ``counts``: item counts (des, vqa_y, vqa_w, missing...);
    ``per_sample``: one dict per ground-truth item; ``settings``: how it was scored (format,
    BLEU flavour, judge model and prompt version, embedder, bootstrap); ``notes``: warnings
    (judge failures, random-weight models...).
    """

    name: str
    metrics: dict[str, Optional[float]]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def value(self, key: str) -> Optional[float]:
        v = self.metrics.get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    def to_dict(self, *, per_sample: bool = False) -> dict[str, Any]:
        d = {
            "name": self.name,
            "metrics": {k: self.value(k) for k in METRICS},
            "ci95": {k: list(v) for k, v in self.ci.items()},
            "counts": self.counts,
            "settings": self.settings,
            "notes": self.notes,
        }
        if per_sample:
            d["per_sample"] = self.per_sample
        return d

    def to_json(self, *, per_sample: bool = False) -> str:
        return json.dumps(self.to_dict(per_sample=per_sample), indent=2, ensure_ascii=False)

    def to_markdown(self) -> str:
        return table5_markdown([self])

    def to_csv(self) -> str:
        return table5_csv([self])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchReport":
        return cls(
            name=d["name"],
            metrics=dict(d["metrics"]),
            ci={k: (v[0], v[1]) for k, v in d.get("ci95", {}).items()},
            counts=dict(d.get("counts", {})),
            per_sample=list(d.get("per_sample", [])),
            settings=dict(d.get("settings", {})),
            notes=list(d.get("notes", [])),
        )


def _fmt(v: Optional[float], decimals: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "N/A"
    return f"{v:.{decimals}f}"


def table5_markdown(reports: Sequence[BenchReport], *, with_ci: bool = True) -> str:
    """Table 5's layout, one row per report, then (``with_ci``) the 95% intervals."""
    head1 = "| Method | " + " | ".join(f"{g} {h}" for _, h, g, _ in COLUMNS) + " |"
    sep = "|---|" + "---:|" * len(COLUMNS)
    lines = [head1, sep]
    for r in reports:
        lines.append("| " + r.name + " | " + " | ".join(_fmt(r.value(k), d) for k, _, _, d in COLUMNS) + " |")
    if with_ci and any(r.ci for r in reports):
        lines += ["", "95% bootstrap confidence intervals (resampling items):", "", head1, sep]
        for r in reports:
            cells = []
            for k, _, _, d in COLUMNS:
                lo_hi = r.ci.get(k)
                cells.append("N/A" if r.value(k) is None or lo_hi is None else f"[{lo_hi[0]:.{d}f}, {lo_hi[1]:.{d}f}]")
            lines.append("| " + r.name + " | " + " | ".join(cells) + " |")
    notes = [f"- {r.name}: {n}" for r in reports for n in r.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def table5_csv(reports: Sequence[BenchReport]) -> str:
    """One row per report: method, each metric (empty = N/A), then ``<metric>_ci_low/high``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = [k for k, *_ in COLUMNS]
    w.writerow(["method", *keys, *[f"{k}_ci_low" for k in keys], *[f"{k}_ci_high" for k in keys]])
    for r in reports:
        vals = ["" if r.value(k) is None else f"{r.value(k):.6f}" for k in keys]
        lows = ["" if k not in r.ci or r.value(k) is None else f"{r.ci[k][0]:.6f}" for k in keys]
        highs = ["" if k not in r.ci or r.value(k) is None else f"{r.ci[k][1]:.6f}" for k in keys]
        w.writerow([r.name, *vals, *lows, *highs])
    return buf.getvalue()


def radar_chart(reports: Sequence[BenchReport], path: Union[str, Path], *, title: str = "GIQA-Bench") -> Path:
    """A radar chart like the paper's Fig. 1: one axis per metric, each scaled by the best
    model's value on it (N/A plots as 0). Needs matplotlib (``giqa[bench]``); uses Agg."""
    from giqa.errors import require

    matplotlib = require("matplotlib", "bench")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{'DES' if g == 'GIQA-DES' else 'VQA'} {h}" for _, h, g, _ in COLUMNS]
    keys = [k for k, *_ in COLUMNS]
    best = {k: max((r.value(k) or 0.0) for r in reports) for k in keys}
    angles = np.linspace(0, 2 * np.pi, len(keys), endpoint=False).tolist()
    fig = plt.figure(figsize=(7, 7))
    try:
        ax = fig.add_subplot(111, polar=True)
        for r in reports:
            vals = [((r.value(k) or 0.0) / best[k]) if best[k] > 0 else 0.0 for k in keys]
            ax.plot(angles + angles[:1], vals + vals[:1], linewidth=1.5, label=r.name)
            ax.fill(angles + angles[:1], vals + vals[:1], alpha=0.12)
        ax.set_xticks(angles)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_yticks([0.25, 0.5, 0.75, 1.0])
        ax.set_yticklabels([])
        ax.set_ylim(0, 1.05)
        ax.set_title(title)
        ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".incomplete")
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".incomplete")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(
    reports: Sequence[BenchReport], out_dir: Union[str, Path], *, radar: bool = True
) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv``, ``report.json`` (all models), one
    ``per_sample.<name>.jsonl`` per model and (``radar``) ``radar.png``. Returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "json": out / "report.json"}
    _atomic_write(paths["md"], table5_markdown(reports))
    _atomic_write(paths["csv"], table5_csv(reports))
    _atomic_write(paths["json"], json.dumps([r.to_dict() for r in reports], indent=2, ensure_ascii=False) + "\n")
    for r in reports:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in r.name) or "model"
        p = out / f"per_sample.{safe}.jsonl"
        _atomic_write(p, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in r.per_sample))
        paths[f"per_sample:{r.name}"] = p
    if radar:
        paths["png"] = radar_chart(reports, out / "radar.png")
    return paths
