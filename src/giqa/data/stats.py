"""Dataset statistics like the paper's Table 1, and the box-area histogram of Fig. 6.

:func:`dataset_stats` counts a list of :class:`giqa.types.Sample`: distinct images, samples
per task, VQA samples per kind (Yes/No vs What/Which/Why/How) and mode, Yes and No answers,
samples per source sub-dataset, boxes and their normalised areas. :meth:`DatasetStats.to_markdown`
prints the Table-1 row plus the detail tables; :func:`box_area_histogram` draws Fig. 6 (one
line per dataset, share of boxes per area bin) as a PNG with matplotlib's Agg canvas (imported
only there, without touching pyplot's global state).

Conventions (the paper does not define them):

* *Image* counts distinct ``Sample.image`` paths.
* *VQA (Y)* counts ``vqa_kind == yes_no``; *VQA (W)* every other kind (what/which/why/how).
* A Yes/No answer is Yes or No by its first word (``"Yes."``, ``"No, the sky is ..."``); a
  binary answer starting with neither is counted as ``other``.
* Box areas (Fig. 6) are those of the DES samples' regions (each distinct box of a sample
  once): VQA samples reuse the DES boxes and would count them again. ``tasks=`` changes it.
* Samples made by random-weight models (``provenance.random_weights``, e.g. the
  ``tiny-random`` preset) are counted and warned about: in :meth:`DatasetStats.to_markdown`,
  in :attr:`DatasetStats.warning`, and on the Fig. 6 PNG (a red line and the PNG's
  ``Description`` text field).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from giqa.data.io import atomic_target
from giqa.errors import require
from giqa.types import Sample, Task, VqaKind

__all__ = ["DatasetStats", "dataset_stats", "box_areas", "area_histogram", "box_area_histogram", "yes_no_of",
           "random_weights_warning"]

PathLike = Union[str, "os.PathLike[str]"]
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def yes_no_of(answer: str) -> Optional[str]:
    """``"yes"`` / ``"no"`` from the first word of a binary answer, else ``None``."""
    m = _YES_NO.match(answer)
    return m.group(1).lower() if m else None


def _value(v: Any) -> Optional[str]:
    return None if v is None else str(getattr(v, "value", v))


@dataclass
class DatasetStats:
    """Counts of a sample collection (see the module docstring for the conventions)."""

    name: str = "dataset"
    images: int = 0
    total: int = 0
    des: int = 0
    vqa: int = 0
    vqa_yes_no: int = 0  # VQA (Y)
    vqa_open: int = 0  # VQA (W): what/which/why/how
    yes: int = 0
    no: int = 0
    yes_no_other: int = 0
    vqa_kinds: dict[str, int] = field(default_factory=dict)
    vqa_modes: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)  # samples per meta["source"]
    source_images: dict[str, int] = field(default_factory=dict)  # distinct images per source
    boxes: int = 0  # boxes counted in ``box_areas`` (see ``box_tasks``)
    box_tasks: tuple[str, ...] = ("des",)
    random_weights: int = 0  # samples made by random-weight models (tiny-random preset)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def warning(self) -> Optional[str]:
        """What is wrong with these samples as a dataset (random-weight models), or ``None``."""
        return random_weights_warning(self.random_weights, self.total)

    def table1_row(self) -> str:
        return (
            f"| {self.name} | {self.images:,} | {self.total:,} | {self.des:,} | "
            f"{self.vqa_yes_no:,} | {self.vqa_open:,} |"
        )

    def to_markdown(self) -> str:
        """Table 1's columns, then per-kind, Yes/No, per-mode and per-source tables."""
        from giqa.data.sources import SOURCE_NAMES

        lines = [
            "| Dataset | Image | Total | DES | VQA (Y) | VQA (W) |",
            "|---|---:|---:|---:|---:|---:|",
            self.table1_row(),
            "",
            "| VQA kind | samples |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {v:,} |" for k, v in sorted(self.vqa_kinds.items())]
        lines += ["", "| Yes/No answer | samples |", "|---|---:|",
                  f"| Yes | {self.yes:,} |", f"| No | {self.no:,} |", f"| other | {self.yes_no_other:,} |"]
        if self.vqa_modes:
            lines += ["", "| VQA mode | samples |", "|---|---:|"]
            lines += [f"| {k} | {v:,} |" for k, v in sorted(self.vqa_modes.items())]
        if self.sources:
            lines += ["", "| Source | images | samples |", "|---|---:|---:|"]
            lines += [
                f"| {SOURCE_NAMES.get(k, k)} | {self.source_images.get(k, 0):,} | {v:,} |"
                for k, v in sorted(self.sources.items())
            ]
        lines += ["", f"Boxes ({'+'.join(self.box_tasks)} samples): {self.boxes:,}"]
        if self.warning:
            lines.append(f"**{self.warning}**")
        return "\n".join(lines) + "\n"


def random_weights_warning(count: int, total: int) -> Optional[str]:
    """The warning for ``count`` of ``total`` samples made by random-weight models."""
    if not count:
        return None
    return (f"WARNING: {count:,} of {total:,} samples were made by random-weight models "
            "(e.g. the tiny-random preset): not a real dataset.")


def dataset_stats(
    samples: Iterable[Sample], *, name: str = "dataset", box_tasks: Sequence[str] = ("des",)
) -> DatasetStats:
    """Count ``samples`` (any iterable, consumed once). See the module docstring."""
    st = DatasetStats(name=name, box_tasks=tuple(box_tasks))
    images: set[str] = set()
    source_images: dict[str, set[str]] = {}
    tasks = {Task(t) for t in box_tasks}
    for s in samples:
        if not isinstance(s, Sample):
            raise TypeError(f"expected giqa.types.Sample, got {type(s).__name__}")
        st.total += 1
        images.add(s.image)
        source = s.meta.get("source") if isinstance(s.meta, dict) else None
        if isinstance(source, str):
            st.sources[source] = st.sources.get(source, 0) + 1
            source_images.setdefault(source, set()).add(s.image)
        if s.provenance.random_weights:
            st.random_weights += 1
        if s.task is Task.des:
            st.des += 1
        else:
            st.vqa += 1
            kind = _value(s.vqa_kind) or "unknown"
            st.vqa_kinds[kind] = st.vqa_kinds.get(kind, 0) + 1
            if s.vqa_mode is not None:
                mode = _value(s.vqa_mode) or "unknown"
                st.vqa_modes[mode] = st.vqa_modes.get(mode, 0) + 1
            if s.vqa_kind is VqaKind.yes_no:
                st.vqa_yes_no += 1
                yn = yes_no_of(s.answer)
                if yn == "yes":
                    st.yes += 1
                elif yn == "no":
                    st.no += 1
                else:
                    st.yes_no_other += 1
            else:
                st.vqa_open += 1
        if s.task in tasks:
            st.boxes += len(_distinct_boxes(s))
    st.images = len(images)
    st.source_images = {k: len(v) for k, v in source_images.items()}
    return st


def _distinct_boxes(s: Sample) -> list[tuple[float, float, float, float]]:
    seen: dict[tuple[float, float, float, float], None] = {}
    for region in s.regions:
        for b in region.boxes:
            seen.setdefault(b.as_tuple(), None)
    return list(seen)


def box_areas(samples: Iterable[Sample], *, tasks: Sequence[str] = ("des",)) -> np.ndarray:
    """``(N,)`` float64 normalised areas (fraction of the image, in [0, 1]) of the samples'
    distinct region boxes, for samples whose task is in ``tasks``."""
    wanted = {Task(t) for t in tasks}
    areas: list[float] = []
    for s in samples:
        if s.task in wanted:
            areas.extend((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in _distinct_boxes(s))
    return np.asarray(areas, dtype=np.float64)


def area_histogram(areas: Any, *, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """``(edges (bins+1,), share (bins,))``: the fraction of boxes per area bin on [0, 1].

    The last bin is closed (area 1.0 counts). An empty input gives all-zero shares.
    """
    a = np.asarray(areas, dtype=np.float64).reshape(-1)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if a.size and (not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1):
        raise ValueError("box areas must be finite and inside [0, 1] (normalised)")
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts, _ = np.histogram(a, bins=edges)
    share = counts / a.size if a.size else np.zeros(bins, dtype=np.float64)
    return edges, share.astype(np.float64)


def _histogram_figure(data: dict[str, dict[str, list[float]]], bins: int, title: str, warning: Optional[str]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    k = max(len(data), 1)
    width = 1.0 / bins / (k + 0.5)
    for i, (label, d) in enumerate(data.items()):
        left = np.asarray(d["edges"][:-1]) + i * width
        ax.bar(left, np.asarray(d["share"]) * 100.0, width=width, align="edge",
               label=f"{label} (n={int(d['n'][0]):,})")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("box area (fraction of the image)")
    ax.set_ylabel("share of boxes (%)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    if warning:
        fig.subplots_adjust(top=0.82)
        fig.text(0.5, 0.975, warning, color="red", ha="center", va="top", fontsize="small", weight="bold", wrap=True)
    return fig


def box_area_histogram(
    series: Union[Mapping[str, Any], Any],
    path: PathLike,
    *,
    bins: int = 20,
    title: str = "Box area distribution",
    dpi: int = 120,
) -> dict[str, dict[str, list[float]]]:
    """Write Fig. 6 as a PNG: share of boxes per normalised-area bin, one bar group per series.

    ``series`` maps a label (e.g. ``"GIQA-160K (Ref)"``, ``"GIQA-160K (Raw)"``,
    ``"GIQA-Bench"``) to an array of areas or to a list of samples; a bare array or sample
    list is one series called ``"boxes"``. Returns ``{label: {"edges", "share", "n",
    "random_weights"}}`` (the last: how many of the series' samples random-weight models made).
    When any series holds such samples, the figure carries the warning in red under the title
    and in the PNG's ``Description`` text field. The file is written to ``<path>.incomplete``
    and renamed when complete.
    """
    require("matplotlib", "bench")
    if not isinstance(series, Mapping):
        series = {"boxes": series}
    data: dict[str, dict[str, list[float]]] = {}
    n_random, samples_seen = 0, 0
    for label, value in series.items():
        values = list(value) if not isinstance(value, np.ndarray) else value
        rw = 0
        if len(values) and isinstance(values[0], Sample):
            rw = sum(1 for s in values if s.provenance.random_weights)
            n_random, samples_seen = n_random + rw, samples_seen + len(values)
            values = box_areas(values)
        edges, share = area_histogram(values, bins=bins)
        data[str(label)] = {"edges": edges.tolist(), "share": share.tolist(), "n": [float(np.size(values))],
                            "random_weights": [float(rw)]}
    warning = random_weights_warning(n_random, samples_seen)
    fig = _histogram_figure(data, bins, title, warning)

    with atomic_target(path) as tmp:
        fig.savefig(str(tmp), dpi=dpi, format="png", metadata={"Description": warning or "giqa box-area histogram"})
    return data
