"""In-process runner: batches per stage, progress bar, resumable JSONL output.

Output files in ``out_dir``:

- ``samples.jsonl``: one :class:`giqa.types.Sample` JSON per line, appended and flushed per
  record. ``meta["key"]`` is the record key and ``meta["group_size"]`` the number of samples
  the record gave (a VQA record gives several); a record counts as done only when all its
  lines are present, and a partly written group (a run killed mid-write) is removed on resume.
- ``errors.jsonl``: one line per failed record ``{"key", "id", "image", "stage", "type",
  "message", "input"}``; compacted on every run (last entry per key; entries whose key or
  record id has since succeeded are removed).
- ``run_summary.json``: the counts of the last run.

A re-run skips done keys and, unless ``retry_failed``, failed keys; with ``retry_failed`` it
runs only the records of failed keys (or of failed record ids, e.g. a missing image that has
since been added changes the key but not the id).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from giqa.errors import MissingDependencyError, RegistryError
from giqa.pipeline.records import JsonlWriter, error_record, read_jsonl, set_error, write_jsonl_atomic

__all__ = ["run_local", "RunSummary", "OutputState", "run_stages"]

SAMPLES_FILE = "samples.jsonl"
ERRORS_FILE = "errors.jsonl"
SUMMARY_FILE = "run_summary.json"


@dataclass
class RunSummary:
    """Counts of one run (records, not samples, unless named ``samples``)."""

    out_dir: str
    inputs: int = 0
    duplicates: int = 0
    already_done: int = 0
    skipped_failed: int = 0
    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    samples_written: int = 0
    seconds: float = 0.0
    total_samples: int = 0
    total_errors: int = 0
    errors_by_stage: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _record_id(sample: dict[str, Any]) -> Optional[str]:
    meta = sample.get("meta") or {}
    return meta.get("record_id") or sample.get("id")


class OutputState:
    """What ``out_dir`` already holds: done keys/ids and failed records (after repair).

    Shared by the in-process and the Ray runner so both resume the same way.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.samples_path = self.dir / SAMPLES_FILE
        self.errors_path = self.dir / ERRORS_FILE
        self.done_keys: set[str] = set()
        self.done_ids: set[str] = set()
        self.n_samples = 0
        self._load_samples()
        self.errors: dict[str, dict[str, Any]] = {}
        for e in read_jsonl(self.errors_path):
            if e.get("key"):
                self.errors[e["key"]] = e  # last entry per key wins
        self.compact_errors()

    def _load_samples(self) -> None:
        groups: dict[str, list[dict[str, Any]]] = {}
        order: list[str] = []
        lines = 0
        for s in read_jsonl(self.samples_path):
            lines += 1
            key = (s.get("meta") or {}).get("key")
            if key is None:
                continue
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(s)
        keep: list[dict[str, Any]] = []
        changed = False
        for key in order:
            seen, uniq = set(), []
            for s in groups[key]:
                if s.get("id") not in seen:
                    seen.add(s.get("id"))
                    uniq.append(s)
            size = int((uniq[0].get("meta") or {}).get("group_size", 1))
            if len(uniq) != len(groups[key]):
                changed = True
            if len(uniq) < size:  # a group cut short by a crash: drop it, it will be redone
                changed = True
                continue
            keep.extend(uniq)
            self.done_keys.add(key)
            rid = _record_id(uniq[0])
            if rid:
                self.done_ids.add(rid)
        if lines and (changed or self._has_torn_tail()):
            write_jsonl_atomic(self.samples_path, keep)
        self.n_samples = len(keep)

    def _has_torn_tail(self) -> bool:
        p = self.samples_path
        if not p.exists() or p.stat().st_size == 0:
            return False
        with open(p, "rb") as f:
            f.seek(-1, 2)
            return f.read(1) != b"\n"

    def compact_errors(self) -> None:
        """Rewrite ``errors.jsonl``: last entry per key, none for keys/ids that succeeded."""
        before = len(self.errors)
        self.errors = {
            k: e for k, e in self.errors.items() if k not in self.done_keys and e.get("id") not in self.done_ids
        }
        if self.errors_path.exists() and (before != len(self.errors) or self._error_lines() != len(self.errors)):
            write_jsonl_atomic(self.errors_path, self.errors.values())

    def _error_lines(self) -> int:
        with open(self.errors_path, "rb") as f:
            return sum(1 for line in f if line.strip())

    def select(self, inputs: Sequence[dict[str, Any]], *, retry_failed: bool, summary: RunSummary) -> list[dict[str, Any]]:
        """The input records to run now (deduplicated by key), updating ``summary``'s counts."""
        failed_ids = {e.get("id") for e in self.errors.values()}
        todo, seen = [], set()
        for r in inputs:
            key = r["key"]
            if key in seen:
                summary.duplicates += 1
                continue
            seen.add(key)
            if key in self.done_keys:
                summary.already_done += 1
                continue
            was_failed = key in self.errors or (r.get("id") in failed_ids and r.get("id") is not None)
            if retry_failed != was_failed:
                if was_failed:
                    summary.skipped_failed += 1
                continue
            todo.append(r)
        return todo


def run_stages(stages: Sequence[Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ``records`` through ``stages``, each in batches of its ``batch_size``.

    A stage that raises or returns the wrong number of records marks that batch failed (the
    built-in stages never raise; this guards user stages). Setup errors
    (:class:`giqa.errors.MissingDependencyError`, :class:`giqa.errors.RegistryError`, e.g. an
    unknown backend name) propagate and stop the run.
    """
    for stage in stages:
        size = max(1, int(getattr(stage, "batch_size", len(records) or 1)))
        name = getattr(stage, "name", type(stage).__name__)
        nxt: list[dict[str, Any]] = []
        for start in range(0, len(records), size):
            batch = records[start:start + size]
            try:
                res = list(stage(batch))
                if len(res) != len(batch):
                    raise RuntimeError(f"stage {name} returned {len(res)} records for {len(batch)}")
            except (MissingDependencyError, RegistryError):
                raise  # setup problem: stop (nothing of this chunk was written; a re-run redoes it)
            except Exception as exc:  # noqa: BLE001 - one bad batch never stops the run
                res = [r if r.get("error") is not None else set_error(r, name, exc) for r in batch]
            nxt.extend(res)
        records = nxt
    return records


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm ships with giqa[models]; the run works without it
        return None
    return tqdm(total=total, desc=desc, unit="rec", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def run_local(
    pipeline: Any,
    inputs: Iterable[dict[str, Any]],
    out_dir: str | Path,
    *,
    batch_size: int = 64,
    progress: bool = True,
    retry_failed: bool = False,
) -> RunSummary:
    """Run ``pipeline`` over ``inputs`` in this process, writing into ``out_dir``.

    ``inputs`` are records from ``pipeline.make_inputs`` (raw items are accepted too and
    passed through ``make_inputs``). Records are processed in chunks of ``batch_size``; each
    stage splits a chunk into its own ``batch_size``. Samples and errors are written after
    every chunk, one flushed write per record. Nothing raises for bad input: it is counted and
    written to ``errors.jsonl``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    t0 = time.perf_counter()
    inputs = list(inputs)
    if inputs and "key" not in inputs[0]:
        inputs = pipeline.make_inputs(inputs)
    state = OutputState(out_dir)
    summary = RunSummary(out_dir=str(state.dir), inputs=len(inputs))
    todo = state.select(inputs, retry_failed=retry_failed, summary=summary)
    bar = _progress(len(todo), progress, getattr(pipeline, "task", "run"))
    samples_out = JsonlWriter(state.samples_path)
    errors_out = JsonlWriter(state.errors_path)
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            records = run_stages(pipeline.stages, [dict(r) for r in chunk])
            samples, errors = pipeline.finalize(records)
            groups: dict[str, list[str]] = {}
            for s in samples:
                key = s.meta["key"]
                groups.setdefault(key, []).append(s)
            for key, group in groups.items():
                lines = [s.model_copy(update={"meta": {**s.meta, "group_size": len(group)}}).model_dump_json() for s in group]
                samples_out.write_group(lines)
                state.done_keys.add(key)
                rid = group[0].meta.get("record_id") or group[0].id
                state.done_ids.add(rid)
                summary.samples_written += len(group)
            error_keys = {e["key"] for e in errors}
            for r in records:  # a good record that gave no sample is an error too, never lost
                if r.get("error") is None and r["key"] not in groups and r["key"] not in error_keys:
                    errors.append(error_record(set_error(r, "finalize", "the record gave no sample", "EmptyResult")))
            for e in errors:
                errors_out.write(e)
                state.errors[e["key"]] = e
                stage = str(e.get("stage"))
                summary.errors_by_stage[stage] = summary.errors_by_stage.get(stage, 0) + 1
            summary.processed += len(chunk)
            summary.succeeded += len(groups)
            summary.failed += len(errors)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
        samples_out.close()
        errors_out.close()
        state.compact_errors()
        summary.seconds = time.perf_counter() - t0
        summary.total_samples = state.n_samples + summary.samples_written
        summary.total_errors = len(state.errors)
        (state.dir / SUMMARY_FILE).write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")
    return summary
