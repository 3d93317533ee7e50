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
* ``parquet`` - flat columns ``id, image, task, vqa_kind, vqa_mode, question, answer,
  description, source, random_weights, conversations (list<struct<from, value>>)`` for browsing
  and filtering, plus ``sample`` (the full sample as JSON) for a lossless read-back.
* ``hf`` - the same table saved with ``datasets.Dataset.save_to_disk`` (``load_from_disk``
  opens it).

pyarrow and datasets are imported only by the functions that need them (extra ``scale``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

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
]

PathLike = Union[str, "os.PathLike[str]"]
FORMATS = ("llava", "jsonl", "parquet", "hf")
_ROW_BATCH = 4096


# -- atomic output ---------------------------------------------------------------------------
def _prepare(path: PathLike, overwrite: bool) -> tuple[Path, Path]:
    target = Path(os.fspath(path))
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    tmp = target.with_name(target.name + ".incomplete")
    _remove(tmp)  # leftover of a crashed run
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return target, tmp


def _commit(tmp: Path, target: Path) -> Path:
    if target.exists():
        old = target.with_name(target.name + ".old")
        _remove(old)
        target.rename(old)
        tmp.rename(target)
        _remove(old)
    else:
        tmp.rename(target)
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _atomic(path: PathLike, overwrite: bool, write: Callable[[Path], None]) -> Path:
    target, tmp = _prepare(path, overwrite)
    try:
        write(tmp)
    except BaseException:
        _remove(tmp)
        raise
    return _commit(tmp, target)


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


def _arrow_schema():
    pa = require("pyarrow", "scale")
    return pa.schema(
        [
            ("id", pa.string()),
            ("image", pa.string()),
            ("task", pa.string()),
            ("vqa_kind", pa.string()),
            ("vqa_mode", pa.string()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("description", pa.string()),
            ("source", pa.string()),
            ("random_weights", pa.bool_()),
            ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
            ("sample", pa.string()),
        ]
    )


def _arrow_batches(samples: Iterable[Sample], batch_rows: int = _ROW_BATCH) -> Iterator[Any]:
    pa = require("pyarrow", "scale")
    schema = _arrow_schema()
    cols: dict[str, list[Any]] = {name: [] for name in schema.names}

    def flush():
        batch = pa.RecordBatch.from_pydict(cols, schema=schema)
        for v in cols.values():
            v.clear()
        return batch

    for s in _check_samples(samples):
        llava = s.to_llava()
        cols["id"].append(s.id)
        cols["image"].append(s.image)
        cols["task"].append(_enum_value(s.task))
        cols["vqa_kind"].append(_enum_value(s.vqa_kind))
        cols["vqa_mode"].append(_enum_value(s.vqa_mode))
        cols["question"].append(s.question)
        cols["answer"].append(s.answer)
        cols["description"].append(s.description)
        cols["source"].append(_source(s))
        cols["random_weights"].append(s.provenance.random_weights)
        cols["conversations"].append(llava["conversations"])
        cols["sample"].append(s.model_dump_json())
        if len(cols["id"]) >= batch_rows:
            yield flush()
    if cols["id"]:
        yield flush()


def write_parquet(
    samples: Iterable[Sample], path: PathLike, *, row_group_size: int = 16_384, overwrite: bool = False
) -> Path:
    """One Parquet file (zstd), written batch by batch. Returns the path."""
    pq = require("pyarrow.parquet", "scale")

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(str(tmp), _arrow_schema(), compression="zstd") as writer:
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

    table = pa.Table.from_batches(list(_arrow_batches(samples)), schema=_arrow_schema())
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
def _sample_from_llava(rec: Any, where: str) -> Sample:
    if not isinstance(rec, dict):
        raise ParseError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    task, kind, mode = rec.get("task"), rec.get("vqa_kind"), rec.get("vqa_mode")
    try:
        s = Sample.from_llava(rec, task=Task(task) if task else None, vqa_kind=VqaKind(kind) if kind else None)
        update: dict[str, Any] = {}
        if mode:
            update["vqa_mode"] = VqaMode(mode)
        if isinstance(rec.get("source"), str):
            update["meta"] = {**s.meta, "source": rec["source"]}
        if rec.get("random_weights") is True:
            update["provenance"] = {**s.provenance.model_dump(), "random_weights": True}
        if update:
            s = Sample.model_validate({**s.model_dump(), **update})
    except ParseError as exc:
        raise ParseError(f"{where}: {exc}") from exc
    except ValueError as exc:
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
    if p.is_dir() and ((p / "samples.jsonl").is_file() or (p / "samples").is_dir()):
        from giqa.pipeline.ray_runner import read_run_samples  # a run directory (either runner)

        for i, rec in enumerate(read_run_samples(p)):
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
    from giqa.data.jsonstream import iter_json_records

    return [_sample_from_dict(rec, f"{path}: record {i}") for i, rec in iter_json_records(path)]


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
