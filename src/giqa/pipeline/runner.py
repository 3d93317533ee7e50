"""Running a pipeline into an output directory: the in-process runner and the core it shares
with the Ray runner.

The shared core:

- :func:`finalize_chunk`: records that went through the stages -> a :class:`ChunkResult`
  (per record, its sample lines or its error entry; a good record that gave no sample is an
  ``EmptyResult`` error, so nothing is lost). The Ray runner calls it on the workers.
- :class:`RunBook`: everything the driver does around the stages, for both runners: lock the
  output directory, check its configuration, resume from its index
  (:class:`giqa.pipeline.rundir.RunDir`), make and select the input records, write each chunk's
  samples and errors, count, show progress, apply the :class:`FailurePolicy`, and write
  ``run_summary.json``, also when the run stops early.

:func:`run_local` runs the stages in this process. See :mod:`giqa.pipeline.rundir` for the
files of an output directory.

**Fail-fast** (:class:`FailurePolicy`): a run stops with :class:`giqa.errors.RunAborted` (the
CLI exits non-zero; the summary is written, and a re-run resumes) when its first ``first_n``
records (default 20) all failed, or when more than ``max_share`` (default 0.5) of its records
failed, checked after every chunk once ``first_n`` records ran, and at the end. Input errors
(a missing or corrupt image, an empty description) are data, not a failing run: they are
written to ``errors.jsonl`` and not counted here. The first chunk is at most ``first_n``
records, so a dead server is found within seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

from giqa.errors import RunAborted
from giqa.pipeline.records import Record
from giqa.pipeline.rundir import SUMMARY_FILE, ResumeState, RunDir
from giqa.pipeline.stages import run_stages

__all__ = [
    "ChunkResult", "FailurePolicy", "RunBook", "RunSummary", "finalize_chunk", "run_local", "run_stages",
]

_MAX_LISTED_DUPLICATES = 1000


@dataclass
class RunSummary:
    """Counts of one run (records, not samples, unless named ``samples``).

    ``duplicate_ids``: content duplicates, ``{id that ran: [ids with the same content]}`` (at
    most 1000 listed; ``duplicates`` counts them all). ``aborted``: why the run stopped early.
    ``quarantined``: corrupt pieces of ``samples.jsonl`` moved aside on resume.
    """

    out_dir: str
    inputs: int = 0
    duplicates: int = 0
    duplicate_ids: dict[str, list[str]] = field(default_factory=dict)
    already_done: int = 0
    skipped_failed: int = 0
    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    input_errors: int = 0
    samples_written: int = 0
    seconds: float = 0.0
    total_samples: int = 0
    total_errors: int = 0
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    aborted: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FailurePolicy:
    """When a run stops early (see the module docstring). ``first_n=0`` and ``max_share=1``
    switch the two rules off."""

    first_n: int = 20
    max_share: float = 0.5

    def __post_init__(self) -> None:
        from giqa.errors import ConfigError

        if self.first_n < 0 or not 0.0 <= self.max_share <= 1.0:
            raise ConfigError(f"fail-fast needs first_n >= 0 and 0 <= max_share <= 1, got {self.first_n}, {self.max_share}")

    def verdict(self, ran: int, failed: int, *, final: bool = False) -> Optional[str]:
        """Why to stop after ``failed`` of ``ran`` records failed, or None."""
        if ran == 0:
            return None
        if self.first_n and failed == ran >= self.first_n:
            return f"the first {ran} records all failed"
        if failed > self.max_share * ran and (final or ran >= max(self.first_n, 1)):
            return (f"{failed} of {ran} records failed, more than the allowed share {self.max_share:g} "
                    "(--max-failures)")
        return None


@dataclass
class ChunkResult:
    """What a chunk of records gave: ``groups`` ``(key, record id, sample JSON lines)`` and
    ``errors`` (``errors.jsonl`` entries); ``records`` counts the records of the chunk."""

    groups: list[tuple[str, str, list[str]]]
    errors: list[dict[str, Any]]
    records: int


def finalize_chunk(pipeline: Any, records: Sequence[Record]) -> ChunkResult:
    """Finalise records that went through the stages (see the module docstring)."""
    outputs, errors = pipeline.finalize(records)
    groups: dict[str, list[Any]] = {}
    for s in outputs:
        groups.setdefault(s.meta["key"], []).append(s)
    error_keys = {e["key"] for e in errors}
    for r in records:
        if r.error is None and r.key not in groups and r.key not in error_keys:
            errors.append(r.failed("finalize", "the record gave no sample", "EmptyResult").error_entry())
    out = []
    ids = {r.key: r.id for r in records}
    for key, group in groups.items():
        lines = [s.model_copy(update={"meta": {**s.meta, "group_size": len(group)}}).model_dump_json() for s in group]
        out.append((key, str(group[0].meta.get("record_id") or ids.get(key) or group[0].id), lines))
    return ChunkResult(groups=out, errors=errors, records=len(records))


class RunBook:
    """The driver's side of a run, shared by :func:`run_local` and ``run_ray`` (see the module
    docstring). Use as a context manager: it holds the output directory's lock and writes
    ``run_summary.json`` when it closes, however the run ends."""

    def __init__(self, pipeline: Any, out_dir: "str | Path", *, retry_failed: bool = False,
                 policy: Optional[FailurePolicy] = None, progress: bool = True, desc: Optional[str] = None,
                 run_info: Optional[dict[str, Any]] = None) -> None:
        self.pipeline = pipeline
        self.rundir = RunDir(out_dir)
        self.retry_failed = retry_failed
        self.policy = policy or FailurePolicy()
        self.progress = progress
        self.desc: str = desc or str(getattr(pipeline, "task", "run"))
        self.run_info = dict(run_info or {})
        self.summary = RunSummary(out_dir=str(self.rundir.dir))
        self.state = ResumeState()
        self.input_keys: set[str] = set()
        self._t0 = time.perf_counter()
        self._bar: Any = None
        self._lock: Any = None

    # -- set-up ----------------------------------------------------------------------------------
    def __enter__(self) -> "RunBook":
        from giqa.data.io import exclusive_lock

        self._lock = exclusive_lock(self.rundir.dir)
        self._lock.__enter__()
        try:
            self.rundir.check_config({**self.run_info, **self.pipeline.resolved_config()})
            self.state = self.rundir.open(progress=self.progress)
            self.summary.quarantined = self.state.quarantined
            self.rundir.start()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def prepare(self, inputs: Iterable[Any]) -> list[Record]:
        """Input records (made here from raw items, with the directory's image-hash cache),
        deduplicated by key and without the keys already done (or failed, unless
        ``retry_failed``): the records to run now."""
        from giqa.pipeline.inputs import ImageHasher, mark_id_clashes

        items = list(inputs)
        known = self.state.key_of_id.get
        if items and all(isinstance(r, Record) for r in items):
            records = mark_id_clashes(items, known)
        else:
            root = getattr(getattr(self.pipeline, "config", None), "root", None)
            hasher = ImageHasher(root, self.rundir.hash_cache_path)
            records = self.pipeline.make_inputs(items, hasher=hasher, known_ids=known, progress=self.progress)
        self.summary.inputs = len(records)
        todo = self._select(records)
        from giqa.pipeline.inputs import progress_bar

        self._bar = progress_bar(len(todo), self.progress, self.desc)
        return todo

    def _select(self, records: Sequence[Record]) -> list[Record]:
        s, state = self.summary, self.state
        first_id: dict[str, str] = {}
        todo = []
        for r in records:
            self.input_keys.add(r.key)
            if r.key in first_id:
                s.duplicates += 1
                if r.id != first_id[r.key] and len(s.duplicate_ids) < _MAX_LISTED_DUPLICATES:
                    s.duplicate_ids.setdefault(first_id[r.key], []).append(r.id)
                continue
            first_id[r.key] = r.id
            if r.key in state.done:
                s.already_done += 1
            elif r.key in state.errors and not self.retry_failed:
                s.skipped_failed += 1
            else:
                todo.append(r)
        return todo

    def chunks(self, todo: list[Record], size: int) -> Iterator[list[Record]]:
        """``todo`` in chunks of ``size``; the first is at most ``first_n`` records (a probe)."""
        start = 0
        first = min(size, self.policy.first_n) if self.policy.first_n else size
        while start < len(todo):
            n = first if start == 0 else size
            yield todo[start:start + n]
            start += n

    # -- bookkeeping -----------------------------------------------------------------------------
    def accept(self, result: ChunkResult, *, written_elsewhere: bool = False) -> None:
        """Write one chunk's samples (unless ``written_elsewhere``, e.g. a shard) and errors,
        count them, and stop the run when the failure policy says so."""
        s, state = self.summary, self.state
        for key, rid, lines in result.groups:
            if not written_elsewhere:
                self.rundir.write_group(key, rid, lines)
            state.done.add(key)
            state.key_of_id[rid] = key
            s.samples_written += len(lines)
            s.succeeded += 1
        for e in result.errors:
            self.rundir.write_error(e)
            state.errors[str(e["key"])] = e
            stage = str(e.get("stage"))
            s.errors_by_stage[stage] = s.errors_by_stage.get(stage, 0) + 1
            s.failed += 1
            s.input_errors += stage == "input"
        s.processed += result.records
        if self._bar is not None:
            self._bar.update(result.records)
        self._check(final=False)

    def _check(self, *, final: bool) -> None:
        s = self.summary
        reason = self.policy.verdict(s.processed - s.input_errors, s.failed - s.input_errors, final=final)
        if reason is not None:
            s.aborted = reason
            raise RunAborted(f"run stopped: {reason}; see {self.rundir.errors_path} (summary in "
                             f"{self.rundir.dir / SUMMARY_FILE}); what was written stays, a re-run resumes", s)

    def finish(self) -> None:
        """The end-of-run check (the failure share over the whole run)."""
        self._check(final=True)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        s = self.summary
        try:
            if self._bar is not None:
                self._bar.close()
            self.rundir.close()
            if exc is not None and s.aborted is None:
                s.aborted = f"{exc_type.__name__}: {exc}"
            keep = (self.input_keys or set(self.state.errors)) - self.state.done
            s.total_errors = self.rundir.compact_errors(self.state.errors, keep)
            s.seconds = time.perf_counter() - self._t0
            s.total_samples = self.state.n_samples + s.samples_written
            from giqa.data.io import write_text_atomic

            write_text_atomic(self.rundir.dir / SUMMARY_FILE, json.dumps(s.as_dict(), indent=2) + "\n")
        finally:
            self._lock.__exit__(None, None, None)


def run_local(
    pipeline: Any,
    inputs: Iterable[Any],
    out_dir: "str | Path",
    *,
    batch_size: int = 64,
    progress: bool = True,
    retry_failed: bool = False,
    max_failures: float = 0.5,
    fail_fast: int = 20,
    run_info: Optional[dict[str, Any]] = None,
) -> RunSummary:
    """Run ``pipeline`` over ``inputs`` in this process, writing into ``out_dir`` (resumable).

    ``inputs``: raw items (made into records here, with the output directory's image-hash
    cache) or records from ``pipeline.make_inputs``. Records go through in chunks of
    ``batch_size``; each stage splits a chunk into its own ``batch_size``; samples and errors
    are written after every chunk. Bad input is counted and written to ``errors.jsonl``, never
    raised. Raises :class:`giqa.errors.RunAborted` by the fail-fast rule (``fail_fast``: the
    first N records all failed; ``max_failures``: the largest failure share), a setup error
    or a backend contract break; ``run_summary.json`` is written in every case.
    ``retry_failed`` also runs the records that failed before. ``run_info`` is written into
    ``run.json`` beside the pipeline's resolved configuration (the CLI puts the whole run
    configuration there).
    """
    from giqa.errors import ConfigError

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    policy = FailurePolicy(first_n=fail_fast, max_share=max_failures)
    with RunBook(pipeline, out_dir, retry_failed=retry_failed, policy=policy, progress=progress,
                 run_info=run_info) as book:
        todo = book.prepare(inputs)
        for chunk in book.chunks(todo, batch_size):
            book.accept(finalize_chunk(pipeline, run_stages(pipeline.stages, chunk)))
        book.finish()
    return book.summary
