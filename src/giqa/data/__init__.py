"""Building GIQA-160K: source readers, dataset writers, statistics.

* Readers (stream the published files, yield DES input items
  ``{"image", "description", "source", "source_id"}``):
  :class:`QPathwayReader` / :func:`read_qpathway` (Q-Instruct's ``cleaned_labels.json``) and
  :class:`DQ495KReader` / :func:`read_dq495k` (DataDepictQA metas).
* Writers: :func:`export_samples` to LLaVA JSON, JSON Lines, Parquet or a Hugging Face
  ``datasets`` directory (atomic: ``<path>.incomplete`` renamed on success);
  :func:`load_samples` reads any of them back.
* :mod:`giqa.data.io`: the one I/O layer every file write and JSONL read of giqa goes through.
* Statistics: :func:`dataset_stats` (Table 1) and :func:`box_area_histogram` (Fig. 6).

Balancing lives in :func:`giqa.pipeline.balance_vqa`; the Ray runner in
``giqa.pipeline.ray_runner`` (``giqa.data`` never imports ``giqa.pipeline``). Nothing heavy (pyarrow, datasets, matplotlib) is imported until
a function needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from giqa._lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first use
    from giqa.data.dq495k import DQ495KReader, read_dq495k
    from giqa.data.jsonstream import iter_json_records
    from giqa.data.qpathway import QPathwayReader, read_qpathway
    from giqa.data.sources import SOURCE_NAMES, RecordError, RecordParseError, SourceItem
    from giqa.data.stats import DatasetStats, area_histogram, box_area_histogram, box_areas, dataset_stats
    from giqa.data.writers import (
        FORMATS,
        export_samples,
        iter_samples,
        load_samples,
        read_llava_json,
        sample_from_llava,
        write_hf_dataset,
        write_jsonl,
        write_llava_json,
        write_parquet,
    )

__all__ = [
    "SOURCE_NAMES",
    "SourceItem",
    "RecordError",
    "RecordParseError",
    "QPathwayReader",
    "read_qpathway",
    "DQ495KReader",
    "read_dq495k",
    "iter_json_records",
    "FORMATS",
    "export_samples",
    "write_llava_json",
    "write_jsonl",
    "write_parquet",
    "write_hf_dataset",
    "load_samples",
    "iter_samples",
    "read_llava_json",
    "sample_from_llava",
    "DatasetStats",
    "dataset_stats",
    "box_areas",
    "area_histogram",
    "box_area_histogram",
]

_LAZY = {
    "SOURCE_NAMES": "giqa.data.sources",
    "SourceItem": "giqa.data.sources",
    "RecordError": "giqa.data.sources",
    "RecordParseError": "giqa.data.sources",
    "QPathwayReader": "giqa.data.qpathway",
    "read_qpathway": "giqa.data.qpathway",
    "DQ495KReader": "giqa.data.dq495k",
    "read_dq495k": "giqa.data.dq495k",
    "iter_json_records": "giqa.data.jsonstream",
    "FORMATS": "giqa.data.writers",
    "export_samples": "giqa.data.writers",
    "write_llava_json": "giqa.data.writers",
    "write_jsonl": "giqa.data.writers",
    "write_parquet": "giqa.data.writers",
    "write_hf_dataset": "giqa.data.writers",
    "load_samples": "giqa.data.writers",
    "iter_samples": "giqa.data.writers",
    "read_llava_json": "giqa.data.writers",
    "sample_from_llava": "giqa.data.writers",
    "DatasetStats": "giqa.data.stats",
    "dataset_stats": "giqa.data.stats",
    "box_areas": "giqa.data.stats",
    "area_histogram": "giqa.data.stats",
    "box_area_histogram": "giqa.data.stats",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
