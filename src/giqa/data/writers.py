"""Dataset writers (and the matching loaders): LLaVA JSON, JSON Lines, Parquet, HF ``datasets``.

Every writer streams its input, writes into ``<path>.incomplete`` and renames it to ``<path>``
only on success (as Hugging Face ``datasets`` does), so a crash never leaves a half file that
looks whole. An existing target raises :class:`FileExistsError` unless ``overwrite=True``.

Formats (one row per :class:`giqa.types.Sample`):

* ``llava`` - one JSON list of LLaVA records ``{"id", "image", "conversations": [human, gpt]}``
  (what LLaVA / mPLUG-Owl2 training scripts read). With ``extra_fields=True`` (default) each
  record also carries ``"task"``, ``"vqa_kind"``, ``"vqa_mode"``, ``"source"`` (the sample's
  ``meta["source"]``) and ``"random_weights"``, which those scripts ignore and
  :func:`read_llava_json` uses to rebuild the sample.
* ``jsonl`` - one full :class:`Sample` per line (``model_dump(mode="json")``): lossless.
* ``parquet`` - :func:`giqa.data.io.sample_schema`: flat columns ``key, id, image, task,
  vqa_kind, vqa_mode, question, answer, description, source, random_weights, conversations
  (list<struct<from, value>>)`` for browsing and filtering, plus ``sample`` (the full sample as
  JSON) for a lossless read-back. The Ray runner's Parquet shards use the same schema.
* ``hf`` - the same table saved with ``datasets.Dataset.save_to_disk`` (``load_from_disk``
  opens it).

pyarrow and datasets are imported only by the functions that need them (extra ``scale``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from giqa.data.io import atomic_target, is_run_dir, iter_jsonl, iter_run_samples, sample_record_batch, sample_schema
from giqa.errors import ParseError, require
from giqa.types import Sample, Task, VqaKind, VqaMode

__all__ = [
    "FORMATS",
    "write_llava_json",
    "write_jsonl",
    "write_parquet",
    "write_hf_dataset",
    "export_samples",
    "read_llava_json",
    "read_jsonl",
    "read_parquet",
    "read_hf_dataset",
    "load_samples",
    "iter_samples",
    "sample_from_llava",
]

PathLike = Union[str, "os.PathLike[str]"]
FORMATS = ("llava", "jsonl", "parquet", "hf")
_ROW_BATCH = 4096


def _atomic(path: PathLike, overwrite: bool, write: Callable[[Path], None]) -> Path:
    with atomic_target(path, overwrite=overwrite) as tmp:
        write(tmp)
    return Path(os.fspath(path))


# -- record conversions ----------------------------------------------------------------------
def _enum_value(v: Any) -> Optional[str]:
    return None if v is None else str(getattr(v, "value", v))


def _source(sample: Sample) -> Optional[str]:
    source = sample.meta.get("source") if isinstance(sample.meta, dict) else None
    return source if isinstance(source, str) else None


def _llava_record(sample: Sample, extra_fields: bool) -> dict[str, Any]:
    rec = sample.to_llava()
    if extra_fields:
        rec["task"] = _enum_value(sample.task)
        rec["vqa_kind"] = _enum_value(sample.vqa_kind)
        rec["vqa_mode"] = _enum_value(sample.vqa_mode)
        rec["source"] = _source(sample)
        rec["random_weights"] = sample.provenance.random_weights
    return rec


def _check_samples(samples: Iterable[Any]) -> Iterator[Sample]:
    for i, s in enumerate(samples):
        if not isinstance(s, Sample):
            raise TypeError(f"sample {i}: expected giqa.types.Sample, got {type(s).__name__}")
        yield s


# -- writers ---------------------------------------------------------------------------------
def write_llava_json(
    samples: Iterable[Sample],
    path: PathLike,
    *,
    extra_fields: bool = True,
    indent: Optional[int] = None,
    overwrite: bool = False,
) -> Path:
    """Write one JSON list of LLaVA records (streamed, record by record). Returns the path."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("[")
            for i, s in enumerate(_check_samples(samples)):
                fh.write(",\n" if i else "\n")
                fh.write(json.dumps(_llava_record(s, extra_fields), ensure_ascii=False, indent=indent))
            fh.write("\n]\n")

    return _atomic(path, overwrite, write)


def write_jsonl(samples: Iterable[Sample], path: PathLike, *, overwrite: bool = False) -> Path:
    """One full sample per line (lossless). Returns the path."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            for s in _check_samples(samples):
                fh.write(s.model_dump_json())
                fh.write("\n")

    return _atomic(path, overwrite, write)


def _arrow_batches(samples: Iterable[Sample], batch_rows: int = _ROW_BATCH) -> Iterator[Any]:
    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    for s in _check_samples(samples):
        rows.append(s.model_dump(mode="json"))
        lines.append(s.model_dump_json())
        if len(rows) >= batch_rows:
            yield sample_record_batch(rows, lines)
            rows, lines = [], []
    if rows:
        yield sample_record_batch(rows, lines)


def write_parquet(
    samples: Iterable[Sample], path: PathLike, *, row_group_size: int = 16_384, overwrite: bool = False
) -> Path:
    """One Parquet file (zstd), written batch by batch. Returns the path."""
    pq = require("pyarrow.parquet", "scale")

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(str(tmp), sample_schema(), compression="zstd") as writer:
            for batch in _arrow_batches(samples):
                writer.write_batch(batch, row_group_size=row_group_size)

    return _atomic(path, overwrite, write)


def write_hf_dataset(
    samples: Iterable[Sample], path: PathLike, *, num_shards: Optional[int] = None, overwrite: bool = False
) -> Path:
    """A Hugging Face ``datasets`` directory (``save_to_disk``); open with ``load_from_disk``."""
    pa = require("pyarrow", "scale")
    datasets = require("datasets", "scale")
    from datasets.table import InMemoryTable

    table = pa.Table.from_batches(list(_arrow_batches(samples)), schema=sample_schema())
    ds = datasets.Dataset(InMemoryTable(table))

    def write(tmp: Path) -> None:
        ds.save_to_disk(str(tmp), num_shards=num_shards)

    return _atomic(path, overwrite, write)


def export_samples(samples: Iterable[Sample], path: PathLike, *, to: str, overwrite: bool = False, **kwargs: Any) -> Path:
    """Write ``samples`` in format ``to`` (one of :data:`FORMATS`)."""
    writers = {"llava": write_llava_json, "jsonl": write_jsonl, "parquet": write_parquet, "hf": write_hf_dataset}
    if to not in writers:
        raise ValueError(f"unknown format {to!r}; formats are {', '.join(FORMATS)}")
    return writers[to](samples, path, overwrite=overwrite, **kwargs)


# -- loaders ---------------------------------------------------------------------------------
def sample_from_llava(
    record: dict[str, Any],
    *,
    task: Task | str | None = None,
    vqa_kind: VqaKind | str | None = None,
    vqa_mode: VqaMode | str | None = None,
    grid: tuple[int, int] = (20, 20),
) -> Sample:
    """A :class:`Sample` from a LLaVA record ``{"id", "image", "conversations"}``.

    Regions are read back from the grounded text (lenient parse on the ``grid``). ``task``
    defaults to DES unless ``vqa_kind`` is given. Only the first human/gpt pair is used; a
    record without one raises :class:`giqa.errors.ParseError`. (This was ``Sample.from_llava``;
    it lives here so that ``giqa.types`` does not import ``giqa.text``.)
    """
    from giqa.text import parse_grounded

    try:
        rid, image, convs = record["id"], record["image"], record["conversations"]
        human = next((c["value"] for c in convs if c.get("from") == "human"), None)
        gpt = next((c["value"] for c in convs if c.get("from") == "gpt"), None)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ParseError(f"not a LLaVA record (needs id, image, conversations): {exc!r}") from exc
    if not isinstance(human, str) or not isinstance(gpt, str):
        raise ParseError(f"record {rid!r} lacks a human or a gpt turn")
    question = human.replace("<image>\n", "", 1).replace("<image>", "", 1).strip()
    if task is None:
        task = Task.vqa if vqa_kind is not None else Task.des
    n, m = grid
    regions = [g for text in (question, gpt) for g in parse_grounded(text, n=n, m=m, strict=False).to_phrases()]
    return Sample(
        id=str(rid), image=str(image), task=Task(task), question=question, answer=gpt,
        vqa_kind=VqaKind(vqa_kind) if vqa_kind is not None else None,
        vqa_mode=VqaMode(vqa_mode) if vqa_mode else None, regions=tuple(regions), grid=grid,
    )


def _sample_from_llava(rec: Any, where: str) -> Sample:
    if not isinstance(rec, dict):
        raise ParseError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    task, kind, mode = rec.get("task"), rec.get("vqa_kind"), rec.get("vqa_mode")
    try:
        s = sample_from_llava(rec, task=task or None, vqa_kind=kind or None, vqa_mode=mode or None)
        update: dict[str, Any] = {}
        if isinstance(rec.get("source"), str):
            update["meta"] = {**s.meta, "source": rec["source"]}
        if rec.get("random_weights") is True:
            update["provenance"] = {**s.provenance.model_dump(), "random_weights": True}
        if update:
            s = Sample.model_validate({**s.model_dump(), **update})
    except ValueError as exc:  # ParseError and pydantic's ValidationError included
        raise ParseError(f"{where}: {exc}") from exc
    return s


def _sample_from_dict(rec: Any, where: str) -> Sample:
    try:
        return Sample.model_validate(rec)
    except ValueError as exc:
        raise ParseError(f"{where}: not a giqa Sample: {exc}") from exc


def iter_samples(path: PathLike) -> Iterator[Sample]:
    """Samples from a file or directory written by this module (format auto-detected).

    A run directory of ``giqa des`` / ``giqa vqa`` (``samples.jsonl`` or ``samples/`` shards);
    ``.parquet`` -> :func:`read_parquet`; another directory -> :func:`read_hf_dataset`; ``.json`` /
    ``.jsonl`` -> each record is a full sample dict, or a LLaVA record (has ``conversations``
    and no ``question``).
    """
    from giqa.data.jsonstream import iter_json_records

    p = Path(os.fspath(path))
    if is_run_dir(p):
        for i, rec in enumerate(iter_run_samples(p)):
            yield _sample_from_dict(rec, f"{p}: sample {i}")
        return
    if p.is_dir():
        yield from read_hf_dataset(p)
        return
    if p.suffix == ".parquet":
        yield from read_parquet(p)
        return
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    for index, rec in iter_json_records(p):
        where = f"{p}: record {index}"
        if isinstance(rec, dict) and "conversations" in rec and "question" not in rec:
            yield _sample_from_llava(rec, where)
        else:
            yield _sample_from_dict(rec, where)


def load_samples(path: PathLike) -> list[Sample]:
    """All samples of ``path`` (see :func:`iter_samples`)."""
    return list(iter_samples(path))


def read_llava_json(path: PathLike) -> list[Sample]:
    """Samples from a LLaVA JSON list (``task``, ``vqa_kind``, ``vqa_mode``, ``source`` and
    ``random_weights`` used when present)."""
    from giqa.data.jsonstream import iter_json_records

    return [_sample_from_llava(rec, f"{path}: record {i}") for i, rec in iter_json_records(path)]


def read_jsonl(path: PathLike) -> list[Sample]:
    """Samples of a JSONL file (a bad line is a :class:`ParseError` naming it)."""
    return [_sample_from_dict(rec, f"{path}: record {i}") for i, rec in enumerate(iter_jsonl(path, objects=False))]


def read_parquet(path: PathLike) -> list[Sample]:
    pq = require("pyarrow.parquet", "scale")
    table = pq.read_table(os.fspath(path), columns=["sample"])
    return [
        _sample_from_dict(json.loads(text), f"{path}: row {i}")
        for i, text in enumerate(table.column("sample").to_pylist())
    ]


def read_hf_dataset(path: PathLike) -> list[Sample]:
    datasets = require("datasets", "scale")
    ds = datasets.load_from_disk(os.fspath(path))
    return [_sample_from_dict(json.loads(text), f"{path}: row {i}") for i, text in enumerate(ds["sample"])]
