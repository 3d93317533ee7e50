"""Bench reports: Table 5 layout and the additions, as Markdown, CSV and JSON; per-sample JSONL;
radar chart PNG.

Scales follow Table 5: BLEU@4 and LLM-Score in 0..100, mIoU, Tag-Recall and accuracies in 0..1.
``None`` is N/A (a model without boxes, or a judge metric scored without a judge). BLEU is
always labelled with its flavour (``BLEU@4 (coco)``). Rows of the paper's Table 5
(:mod:`giqa.bench.paper_table5`) can stand beside the user's models, marked as references.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import UserList
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from giqa.bench.bootstrap import GROUNDING_EXTRA, METRICS
from giqa.data.io import atomic_target, write_jsonl_atomic, write_text_atomic

__all__ = [
    "BenchReport", "LazyRows", "table5_markdown", "table5_csv", "radar_chart", "write_reports", "compare_reports",
    "unique_names", "COLUMNS", "EXTRA_COLUMNS",
]

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
#: The other side of grounding (additions beyond Table 5), same layout.
EXTRA_COLUMNS = tuple(
    (f"{t}_{k}", h, g, d)
    for t, g in (("des", "GIQA-DES"), ("vqa", "GIQA-VQA"))
    for k, h, d in (("box_precision", "Box-P", 4), ("box_recall", "Box-R", 4), ("box_f1", "Box-F1", 4),
                    ("boxes_per_answer", "Boxes/answer", 2))
)
_ALL_KEYS = METRICS + GROUNDING_EXTRA


class LazyRows(UserList):
    """A list built by ``make()`` the first time it is read (per-sample rows of a big run
    cost time that only writers and readers of them should pay)."""

    def __init__(self, make: Callable[[], list]) -> None:  # no super().__init__: nothing built yet
        self._make: Optional[Callable[[], list]] = make
        self._rows: Optional[list] = None

    @property
    def data(self) -> list:
        if self._rows is None:
            self._rows = self._make() if self._make is not None else []
            self._make = None
        return self._rows

    @data.setter
    def data(self, value: list) -> None:
        self._rows, self._make = value, None


@dataclass
class BenchReport:
    """The scores of one model on one bench.

    ``metrics``: key (see :data:`COLUMNS`, :data:`EXTRA_COLUMNS`) -> value or ``None`` (N/A);
    ``ci``: key -> (low, high) bootstrap interval; ``counts``: item counts (des, vqa_y, vqa_w,
    missing, extra, judge_failed, formats read); ``per_sample``: one dict per ground-truth item
    (raw prediction, clean text, boxes, raw judge reply...); ``settings``: how it was scored
    (format, BLEU flavour, tokeniser, judge, embedder, bootstrap); ``notes``: warnings;
    ``breakdown``: VQA breakdowns (:func:`giqa.bench.breakdown.vqa_breakdown`);
    ``provenance``: versions, input hashes, command, time (:mod:`giqa.bench.provenance`);
    ``reference``: a row copied from the paper, not scored here; ``components``: per-task
    item matrices for paired tests (not serialised).
    """

    name: str
    metrics: dict[str, Optional[float]]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    per_sample: Union[list[dict[str, Any]], LazyRows] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    breakdown: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    reference: bool = False
    components: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def value(self, key: str) -> Optional[float]:
        v = self.metrics.get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    @property
    def bleu_flavour(self) -> str:
        return str(self.settings.get("bleu", "coco"))

    def to_dict(self, *, per_sample: bool = False) -> dict[str, Any]:
        d = {
            "name": self.name,
            "reference": self.reference,
            "metrics": {k: self.value(k) for k in _ALL_KEYS if k in self.metrics or k in METRICS},
            "ci95": {k: list(v) for k, v in self.ci.items()},
            "counts": self.counts,
            "settings": self.settings,
            "breakdown": self.breakdown,
            "provenance": self.provenance,
            "notes": self.notes,
        }
        if per_sample:
            d["per_sample"] = list(self.per_sample)
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
            breakdown=dict(d.get("breakdown", {})),
            provenance=dict(d.get("provenance", {})),
            reference=bool(d.get("reference", False)),
        )


def unique_names(paths: Sequence[Union[str, Path]]) -> list[str]:
    """Row names for prediction files: the file stem, with parent folders added (as many as
    it takes) where stems clash (``runA/preds``, ``runB/preds``); a numeric suffix as a last
    resort (the same path twice)."""
    parts = [Path(p).resolve().with_suffix("").parts for p in paths]
    depth = [1] * len(paths)
    while True:
        names = ["/".join(pt[-d:]) for pt, d in zip(parts, depth)]
        grow = [k for k, n in enumerate(names) if depth[k] < len(parts[k])
                and any(names[j] == n and parts[j] != parts[k] for j in range(len(names)))]
        if not grow:
            break
        for k in grow:
            depth[k] += 1
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if names.count(n) == 1 else f"{n} #{seen[n]}")
    return out


def _fmt(v: Optional[float], decimals: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "N/A"
    return f"{v:.{decimals}f}"


def _bleu_header(reports: Sequence[BenchReport]) -> str:
    flavours = sorted({r.bleu_flavour for r in reports})
    return f"BLEU@4 ({flavours[0]})" if len(flavours) == 1 else "BLEU@4 (flavour per row)"


def _headers(reports: Sequence[BenchReport], columns) -> str:
    cells = [f"{g} {_bleu_header(reports) if k == 'bleu4' else h}" for k, h, g, _ in columns]
    return "| Method | " + " | ".join(cells) + " |\n|---|" + "---:|" * len(columns)


def _cell(r: BenchReport, key: str, decimals: int, mixed: bool) -> str:
    text = _fmt(r.value(key), decimals)
    return f"{text} [{r.bleu_flavour}]" if key == "bleu4" and mixed and text != "N/A" else text


def _row_name(r: BenchReport) -> str:
    return f"*{r.name}*" if r.reference else r.name


def table5_markdown(reports: Sequence[BenchReport], *, with_ci: bool = True,
                    comparisons: Optional[Sequence[dict[str, Any]]] = None) -> str:
    """Table 5's layout, one row per report (paper references in italics), then the 95%
    intervals, the other side of grounding, the VQA breakdowns, paired tests
    (``comparisons`` from :func:`compare_reports`), provenance and notes."""
    mixed = len({r.bleu_flavour for r in reports}) > 1
    lines = [_headers(reports, COLUMNS)]
    lines += ["| " + _row_name(r) + " | " + " | ".join(_cell(r, k, d, mixed) for k, _, _, d in COLUMNS) + " |"
              for r in reports]
    scored = [r for r in reports if not r.reference]
    if with_ci and any(r.ci for r in scored):
        lines += ["", "95% bootstrap confidence intervals (resampling items):", "", _headers(scored, COLUMNS)]
        for r in scored:
            cells = []
            for k, _, _, d in COLUMNS:
                lo_hi = r.ci.get(k)
                cells.append("N/A" if r.value(k) is None or lo_hi is None else f"[{lo_hi[0]:.{d}f}, {lo_hi[1]:.{d}f}]")
            lines.append("| " + r.name + " | " + " | ".join(cells) + " |")
    if any(k in r.metrics for r in scored for k, *_ in EXTRA_COLUMNS):
        lines += ["", "Grounding, both sides (additions beyond Table 5: box precision, recall and F1 count "
                  "predicted boxes matched one-to-one to reference boxes at IoU > 0.5, names ignored):", "",
                  _headers(scored, EXTRA_COLUMNS)]
        lines += ["| " + r.name + " | " + " | ".join(_fmt(r.value(k), d) for k, _, _, d in EXTRA_COLUMNS) + " |"
                  for r in scored]
    lines += _breakdown_lines(scored)
    lines += _comparison_lines(comparisons or [])
    lines += _provenance_lines(scored)
    notes = [f"- {r.name}: {n}" for r in reports for n in r.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def _breakdown_lines(reports: Sequence[BenchReport]) -> list[str]:
    rows = [r for r in reports if r.breakdown.get("by_kind")]
    if not rows:
        return []
    kinds = ("yes_no", "what", "which", "why", "how")
    head = ("| Method | " + " | ".join(f"Acc {k} (n)" for k in kinds)
            + " | Acc GT=Yes (n) | Acc GT=No (n) | yes-ratio | unreadable | always-No | always-Yes |")
    out = ["", "VQA breakdown (Yes/No by the word rule; What/Which/Why/How by the judge, score / 4):", "",
           head, "|---|" + "---:|" * (len(kinds) + 6)]
    for r in rows:
        b = r.breakdown
        cells = []
        for k in kinds:
            g = b["by_kind"].get(k)
            cells.append("-" if g is None else f"{_fmt(g['acc'], 4)} ({g['n']})")
        gy, gn = b["by_gt"]["yes"], b["by_gt"]["no"]
        cells += [f"{_fmt(gy['acc'], 4)} ({gy['n']})", f"{_fmt(gn['acc'], 4)} ({gn['n']})",
                  _fmt(b["yes_ratio"], 4), str(b["unreadable"]), _fmt(b["always_no"], 4), _fmt(b["always_yes"], 4)]
        out.append("| " + r.name + " | " + " | ".join(cells) + " |")
    return out


def _comparison_lines(comparisons: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for c in comparisons:
        out += ["", f"Paired bootstrap, {c['a']} minus {c['b']} ({c['n_boot']} resamples of the same items, seed "
                f"{c['seed']}; p two-sided):", "", "| metric | difference | 95% CI | p |", "|---|---:|---:|---:|"]
        for k, v in c["metrics"].items():
            d = 2 if k in ("bleu4", "llm_score") or k.endswith("per_answer") else 4
            out.append(f"| {k} | {v['diff']:+.{d}f} | [{v['low']:+.{d}f}, {v['high']:+.{d}f}] | {v['p']:.3f} |")
    return out


def _provenance_lines(reports: Sequence[BenchReport]) -> list[str]:
    out = []
    for r in reports:
        p = r.provenance
        if not p:
            continue
        judge = p.get("judge")
        out.append(
            f"- {r.name}: giqa {p['giqa_version']}, {p['timestamp']}; bench sha256 {p['bench']['sha256'][:16]}..., "
            f"predictions sha256 {p['predictions']['sha256'][:16]}...; BLEU {p['bleu']}, tokenizer {p['tokenizer']}; "
            f"judge {'none' if not judge else judge['model'] + (' at ' + judge['url'] if judge.get('url') else '')}"
            + (f"; command: {' '.join(p['command'])}" if p.get("command") else "")
        )
    return ["", "Provenance (full hashes in report.json):", *out] if out else []


def table5_csv(reports: Sequence[BenchReport]) -> str:
    """One row per report: method, reference flag, BLEU flavour, each metric (empty = N/A),
    then ``<metric>_ci_low/high``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = [k for k, *_ in COLUMNS] + [k for k, *_ in EXTRA_COLUMNS]
    w.writerow(["method", "reference", "bleu_flavour", *keys, *[f"{k}_ci_low" for k in keys], *[f"{k}_ci_high" for k in keys]])
    for r in reports:
        vals = ["" if r.value(k) is None else f"{r.value(k):.6f}" for k in keys]
        lows = ["" if k not in r.ci or r.value(k) is None else f"{r.ci[k][0]:.6f}" for k in keys]
        highs = ["" if k not in r.ci or r.value(k) is None else f"{r.ci[k][1]:.6f}" for k in keys]
        w.writerow([r.name, int(r.reference), r.bleu_flavour, *vals, *lows, *highs])
    return buf.getvalue()


def compare_reports(reports: Sequence[BenchReport], *, n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Paired bootstrap tests between every two scored reports on the same bench items
    (:func:`giqa.bench.bootstrap.paired_bootstrap`); pairs on different items are skipped."""
    from giqa.bench.bootstrap import paired_bootstrap

    scored = [r for r in reports if not r.reference and r.components]
    out = []
    for i in range(len(scored)):
        for j in range(i + 1, len(scored)):
            a, b = scored[i], scored[j]
            if [s["id"] for s in a.per_sample] != [s["id"] for s in b.per_sample]:
                continue
            metrics: dict[str, Any] = {}
            for task in ("des", "vqa"):
                if task in a.components and task in b.components:
                    got = paired_bootstrap(a.components[task], b.components[task], n_boot=n_boot, seed=seed)
                    metrics.update({k: v for k, v in got.items() if k in _ALL_KEYS})
            order = {k: n for n, k in enumerate(_ALL_KEYS)}
            metrics = dict(sorted(metrics.items(), key=lambda kv: order[kv[0]]))
            out.append({"a": a.name, "b": b.name, "n_boot": n_boot, "seed": seed, "metrics": metrics})
    return out


def radar_chart(reports: Sequence[BenchReport], path: Union[str, Path], *, title: str = "GIQA-Bench") -> Path:
    """A radar chart like the paper's Fig. 1 on absolute axes: every metric on 0..100 (0..1
    metrics x 100), each value printed by its point, N/A marked on its axis and left out of
    the polygon. Needs matplotlib (``giqa[bench]``); uses Agg."""
    from giqa.errors import require

    matplotlib = require("matplotlib", "bench")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{'DES' if g == 'GIQA-DES' else 'VQA'} {_bleu_header(reports) if k == 'bleu4' else h}"
              for k, h, g, _ in COLUMNS]
    keys = [k for k, *_ in COLUMNS]
    angles = np.linspace(0, 2 * np.pi, len(keys), endpoint=False)
    fig = plt.figure(figsize=(8, 8))
    try:
        ax = fig.add_subplot(111, polar=True)
        for r in reports:
            vals = np.array([_radar_value(r.value(k), k) for k in keys])
            (line,) = ax.plot(np.append(angles, angles[0]), np.append(vals, vals[0]), marker="o", linewidth=1.5,
                              label=r.name + (" (paper)" if r.reference else ""))
            if not np.isnan(vals).any():
                ax.fill(angles, vals, alpha=0.10, color=line.get_color())
            for a, v in zip(angles, vals):
                ax.annotate("N/A" if np.isnan(v) else f"{v:.1f}", (a, 6 if np.isnan(v) else v), fontsize=7,
                            color=line.get_color(), ha="center", va="bottom")
        ax.set_xticks(angles)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_yticks([20, 40, 60, 80, 100])
        ax.set_yticklabels(["20", "40", "60", "80", "100"], fontsize=7)
        ax.set_title(title + " (all axes 0-100: mIoU, Tag-Recall and accuracies x 100)", fontsize=10)
        ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.12), fontsize=8)
        path = Path(path)
        with atomic_target(path) as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return path


def _radar_value(v: Optional[float], key: str) -> float:
    """A metric on the radar's 0-100 scale (nan: N/A)."""
    if v is None:
        return float("nan")
    return v if key in ("bleu4", "llm_score") else v * 100


def write_reports(
    reports: Sequence[BenchReport], out_dir: Union[str, Path], *, radar: bool = True,
    comparisons: Optional[Sequence[dict[str, Any]]] = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv``, ``report.json`` (a list, one object per row),
    ``comparisons.json`` (the paired tests, when there are any), one
    ``per_sample.<name>.jsonl`` per scored model and (``radar``) ``radar.png``."""
    names = [r.name for r in reports]
    if len(set(names)) != len(names):
        raise ValueError(f"report names must be unique, got {names}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "json": out / "report.json"}
    write_text_atomic(paths["md"], table5_markdown(reports, comparisons=comparisons))
    write_text_atomic(paths["csv"], table5_csv(reports))
    write_text_atomic(paths["json"], json.dumps([r.to_dict() for r in reports], indent=2, ensure_ascii=False) + "\n")
    if comparisons:
        paths["comparisons"] = out / "comparisons.json"
        write_text_atomic(paths["comparisons"], json.dumps(list(comparisons), indent=2, ensure_ascii=False) + "\n")
    used: set[str] = set()
    for r in reports:
        if r.reference:
            continue
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in r.name) or "model"
        while safe in used:
            safe += "_"
        used.add(safe)
        p = out / f"per_sample.{safe}.jsonl"
        write_jsonl_atomic(p, r.per_sample)
        paths[f"per_sample:{r.name}"] = p
    if radar:
        paths["png"] = radar_chart(reports, out / "radar.png")
    return paths
