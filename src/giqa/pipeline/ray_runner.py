"""Ray Data runner: the same stages as :func:`giqa.pipeline.run_local`, scaled over a cluster.

Every stage of ``pipeline.stages`` runs, as the very same stage object, inside a
``Dataset.map_batches`` step (records travel as JSON strings in an Arrow column, so any JSON-serialisable
record works). A *model stage* (one whose backend roles in ``stage.needs`` are configured)
runs in an actor pool: every actor unpickles the stage once and builds its backend lazily from
its :class:`giqa.pipeline.BackendSpec` (or preset), so a model is loaded once per actor, with
the actor's own ``num_gpus``, ``num_cpus`` and ``batch_size`` (:class:`StageOptions`).
CPU-only stages (e.g. ``fuse``, or ``refine`` without a quality filter) run as Ray tasks.
Consecutive CPU stages share one task (records are decoded and encoded once), and
``pipeline.finalize`` runs in the last one, on the workers; the driver only appends lines.

Output and resume are shared with the in-process runner (:class:`giqa.pipeline.runner.OutputState`):
``samples.jsonl`` / ``errors.jsonl`` / ``run_summary.json`` in ``out_dir`` by default, so a run
started with one runner can be resumed with the other. With ``output_format="parquet"`` or
``"jsonl-shards"`` samples go instead to ``out_dir/samples/part-<run>-<n>.{parquet,jsonl}``, one
shard per finished block, each written to a temporary name and renamed when complete (a shard
is whole or absent). Resume skips every key already written (in either layout) and, unless
``retry_failed``, every key in ``errors.jsonl``; failed records always land in ``errors.jsonl``.

Inputs are records from ``pipeline.make_inputs``, raw items (then ``make_inputs`` runs in
parallel Ray tasks, since it hashes image bytes), or a path to a JSONL / JSON / Parquet file or
a directory of such shards holding either.

Example::

    from giqa.pipeline import DesPipeline, DesConfig
    from giqa.pipeline.ray_runner import run_ray, StageOptions

    pipe = DesPipeline.from_preset("paper", config=DesConfig(root="/data"))
    run_ray(pipe, "items/", "out/des", address="auto",
            stage_options={"tags": StageOptions(num_gpus=1, concurrency=4, batch_size=16),
                           "detect": StageOptions(num_gpus=1, concurrency=2, batch_size=8),
                           "refine": StageOptions(num_gpus=1, concurrency=2, batch_size=32)})
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from giqa.errors import BackendError, ConfigError, require

__all__ = ["run_ray", "StageOptions", "read_run_samples", "done_shard_keys", "OUTPUT_FORMATS"]

OUTPUT_FORMATS = ("jsonl", "jsonl-shards", "parquet")
SHARD_DIR = "samples"
_Concurrency = Union[int, tuple[int, int]]


@dataclass(frozen=True)
class StageOptions:
    """Ray settings of one stage (``None`` = default).

    * ``concurrency``: actor-pool size (``n`` fixed, or ``(min, max)`` autoscaling) for a model
      stage; the most concurrent tasks for a CPU stage. Default: 1 actor per model stage;
      tasks as the cluster allows.
    * ``num_gpus``: GPUs per actor. Default: 1 for model stages when the cluster has GPUs, else 0.
    * ``num_cpus``: CPUs per actor/task. Default: 1, or a fraction on a small CPU-only
      cluster so that every actor stage fits at once (2 cores: 0.25 each).
    * ``batch_size``: records per call. Default: the stage's own ``batch_size``.
    * ``actors``: force an actor pool (True) or tasks (False). Default: actors for model stages.
    """

    concurrency: Optional[_Concurrency] = None
    num_gpus: Optional[float] = None
    num_cpus: Optional[float] = None
    batch_size: Optional[int] = None
    actors: Optional[bool] = None

    @classmethod
    def coerce(cls, value: Any) -> "StageOptions":
        if isinstance(value, StageOptions):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ConfigError(f"unknown stage option(s) {sorted(unknown)}; options are {sorted(cls.__dataclass_fields__)}")
            data = dict(value)
            if isinstance(data.get("concurrency"), list):
                data["concurrency"] = tuple(data["concurrency"])
            return cls(**data)
        raise TypeError(f"stage options must be StageOptions or a dict, got {type(value).__name__}")


# -- worker-side functions (module level, so Ray pickles them by reference) ------------------
def _decode(table: Any) -> list[dict[str, Any]]:
    return [json.loads(s) for s in table.column("record").to_pylist()]


def _encode(records: Sequence[dict[str, Any]]) -> Any:
    import pyarrow as pa

    return pa.table({
        "key": pa.array([r["key"] for r in records], pa.string()),
        "record": pa.array([json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records], pa.string()),
    })


def _apply_stages(table: Any, stages: Sequence[Any], pipeline: Any = None) -> Any:
    """One batch through consecutive stages (each splits it into its own ``batch_size``, guarded
    exactly as the in-process runner guards it); with ``pipeline``, finalised as well. Records
    are decoded once and encoded once per call, however many stages run in it."""
    from giqa.pipeline.runner import run_stages

    records = run_stages(list(stages), _decode(table))
    return _encode(records) if pipeline is None else _finalize_records(records, pipeline)


class _StageActor:
    """Actor-pool worker: holds one stage (and so one lazily built backend) for its lifetime."""

    def __init__(self, stage: Any) -> None:
        self.stage = stage

    def __call__(self, table: Any) -> Any:
        return _apply_stages(table, [self.stage])


def _finalize_records(records: list[dict[str, Any]], pipeline: Any) -> Any:
    """Records -> per record: its sample lines (with ``group_size``) or its error entries.

    Mirrors the bookkeeping of ``run_local``: samples grouped by record key, a good record
    that gave no sample becomes an ``EmptyResult`` error, nothing is dropped.
    """
    import pyarrow as pa

    from giqa.pipeline.records import error_record, set_error

    samples, errors = pipeline.finalize(records)
    groups: dict[str, list[Any]] = {}
    for s in samples:
        groups.setdefault(s.meta["key"], []).append(s)
    error_keys = {e["key"] for e in errors}
    for r in records:
        if r.get("error") is None and r["key"] not in groups and r["key"] not in error_keys:
            errors.append(error_record(set_error(r, "finalize", "the record gave no sample", "EmptyResult")))
    errs_by_key: dict[str, list[dict[str, Any]]] = {}
    for e in errors:
        errs_by_key.setdefault(e["key"], []).append(e)
    keys, lines, errs = [], [], []
    for key in dict.fromkeys([r["key"] for r in records]):
        group = groups.get(key, [])
        keys.append(key)
        lines.append(json.dumps([
            s.model_copy(update={"meta": {**s.meta, "group_size": len(group)}}).model_dump_json() for s in group
        ]))
        errs.append(json.dumps(errs_by_key.get(key, [])))
    return pa.table({"key": pa.array(keys, pa.string()), "lines": pa.array(lines, pa.string()),
                     "errors": pa.array(errs, pa.string())})


def _make_inputs(table: Any, pipeline: Any) -> Any:
    items = [json.loads(s) for s in table.column("item").to_pylist()]
    return _encode(pipeline.make_inputs(items))


# -- inputs ------------------------------------------------------------------------------------
def _read_rows(path: Path) -> list[Any]:
    """Rows of a JSONL / JSON / Parquet file, or of every such file in a directory (sorted)."""
    from giqa.data.jsonstream import iter_json_records

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json", ".parquet") and p.is_file())
        if not files:
            raise FileNotFoundError(f"no .jsonl, .json or .parquet shard in {path}")
        return [row for f in files for row in _read_rows(f)]
    if not path.is_file():
        raise FileNotFoundError(f"no such input file: {path}")
    if path.suffix == ".parquet":
        pq = require("pyarrow.parquet", "scale")
        rows = pq.read_table(str(path)).to_pylist()
        # records stored by this module keep the whole record as JSON in "record"
        return [json.loads(r["record"]) if set(r) == {"key", "record"} else r for r in rows]
    return [row for _, row in iter_json_records(path)]


def _input_records(pipeline: Any, inputs: Any, block_rows: int) -> list[dict[str, Any]]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = _read_rows(Path(os.fspath(inputs)))
    inputs = list(inputs)
    if not inputs or all(isinstance(r, dict) and "key" in r for r in inputs):
        return inputs
    import ray

    n_blocks = max(1, -(-len(inputs) // block_rows))
    ds = ray.data.from_items([{"item": json.dumps(it, default=str)} for it in inputs], override_num_blocks=n_blocks)
    ds = ds.map_batches(_make_inputs, batch_size=block_rows, batch_format="pyarrow",
                        fn_kwargs={"pipeline": pipeline}, udf_modifying_row_count=False)
    out: list[dict[str, Any]] = []
    for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        out.extend(_decode(table))
    return out


# -- sharded output ----------------------------------------------------------------------------
def done_shard_keys(out_dir: Union[str, Path]) -> set[str]:
    """Record keys held by the shard layout ``out_dir/samples/part-*`` (complete shards only)."""
    return _shard_index(out_dir)[0]


def _shard_index(out_dir: Union[str, Path]) -> tuple[set[str], int]:
    """``(record keys, sample count)`` of the complete shards in ``out_dir/samples``."""
    keys: set[str] = set()
    n = 0
    shard_dir = Path(out_dir) / SHARD_DIR
    if not shard_dir.is_dir():
        return keys, n
    for p in sorted(shard_dir.iterdir()):
        if p.name.startswith("part-") and p.suffix == ".parquet":
            pq = require("pyarrow.parquet", "scale")
            col = pq.read_table(str(p), columns=["key"]).column("key").to_pylist()
        elif p.name.startswith("part-") and p.suffix == ".jsonl":
            from giqa.pipeline.records import read_jsonl

            col = [(s.get("meta") or {}).get("key") for s in read_jsonl(p)]
        else:
            continue  # temporary files of an interrupted write are ignored
        keys.update(k for k in col if k)
        n += len(col)
    return keys, n


def _write_shard(out_dir: Path, fmt: str, run_id: str, seq: int, lines: list[str]) -> Path:
    shard_dir = out_dir / SHARD_DIR
    shard_dir.mkdir(parents=True, exist_ok=True)
    ext = "parquet" if fmt == "parquet" else "jsonl"
    final = shard_dir / f"part-{run_id}-{seq:05d}.{ext}"
    tmp = shard_dir / f".{final.name}.tmp"
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        dicts = [json.loads(line) for line in lines]
        table = pa.table({
            "key": pa.array([(d.get("meta") or {}).get("key") for d in dicts], pa.string()),
            "id": pa.array([d.get("id") for d in dicts], pa.string()),
            "image": pa.array([d.get("image") for d in dicts], pa.string()),
            "task": pa.array([d.get("task") for d in dicts], pa.string()),
            "vqa_kind": pa.array([d.get("vqa_kind") for d in dicts], pa.string()),
            "question": pa.array([d.get("question") for d in dicts], pa.string()),
            "answer": pa.array([d.get("answer") for d in dicts], pa.string()),
            "sample": pa.array(lines, pa.string()),
        })
        pq.write_table(table, str(tmp), compression="zstd")
    else:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


def read_run_samples(out_dir: Union[str, Path]) -> list[dict[str, Any]]:
    """Every sample dict of a run directory, from ``samples.jsonl`` and from shards."""
    from giqa.pipeline.records import read_jsonl

    out = Path(out_dir)
    samples = list(read_jsonl(out / "samples.jsonl"))
    shard_dir = out / SHARD_DIR
    if shard_dir.is_dir():
        for p in sorted(shard_dir.iterdir()):
            if p.name.startswith("part-") and p.suffix == ".jsonl":
                samples.extend(read_jsonl(p))
            elif p.name.startswith("part-") and p.suffix == ".parquet":
                pq = require("pyarrow.parquet", "scale")
                samples.extend(json.loads(t) for t in pq.read_table(str(p), columns=["sample"]).column("sample").to_pylist())
    return samples


# -- the runner --------------------------------------------------------------------------------
def _uses_model(stage: Any) -> bool:
    from giqa.pipeline.stages import BackendSlot

    for role in getattr(stage, "needs", ()) or ():
        slot = getattr(stage, role, None)
        if isinstance(slot, BackendSlot):
            if slot.configured:
                return True
        elif slot is not None:
            return True
    return False


def _actor_cpus(cpus: float, n_actor_stages: int) -> float:
    """Default CPUs per actor: 1 when the cluster has room for every actor stage plus as many
    task slots; else half the CPUs shared among the actor stages, in steps of 0.25, so that all
    actor pools fit at once (2 CPUs, 3 model stages: 0.25 each) and tasks still get a CPU."""
    if cpus >= 2 * (n_actor_stages + 1):
        return 1.0
    share = cpus / 2 / max(n_actor_stages, 1)
    return max(0.25, math.floor(share * 4) / 4)


def _resolve_options(
    stages: Sequence[Any], given: Mapping[str, Any], resources: Mapping[str, float]
) -> list[tuple[StageOptions, bool]]:
    names = [getattr(s, "name", type(s).__name__) for s in stages]
    unknown = set(given) - set(names)
    if unknown:
        raise ConfigError(f"stage_options for unknown stage(s) {sorted(unknown)}; stages are {names}")
    opts = [StageOptions.coerce(given.get(n, StageOptions())) for n in names]
    use_actor = [o.actors if o.actors is not None else _uses_model(s) for s, o in zip(stages, opts)]
    gpus = float(resources.get("GPU", 0.0))
    cpus = float(resources.get("CPU", 1.0))
    actor_cpu = _actor_cpus(cpus, sum(use_actor))
    out = []
    for stage, o, actor in zip(stages, opts, use_actor):
        num_gpus = o.num_gpus if o.num_gpus is not None else (1.0 if actor and gpus >= 1 and _uses_model(stage) else 0.0)
        num_cpus = o.num_cpus if o.num_cpus is not None else (actor_cpu if actor else 1.0)
        batch = o.batch_size or int(getattr(stage, "batch_size", 64))
        if batch < 1:
            raise ConfigError(f"stage {stage.name!r}: batch_size must be >= 1, got {batch}")
        out.append((replace(o, num_gpus=num_gpus, num_cpus=num_cpus, batch_size=batch,
                            concurrency=o.concurrency if o.concurrency is not None else (1 if actor else None)), actor))
    return out


def _check_picklable(pipeline: Any) -> None:
    """Fail before any work when a stage cannot travel to the workers (e.g. a loaded model)."""
    from ray import cloudpickle

    for stage in pipeline.stages:
        try:
            cloudpickle.dumps(stage)
        except Exception as exc:  # noqa: BLE001 - pickling raises many types
            raise BackendError(
                f"stage {getattr(stage, 'name', stage)!r} cannot be sent to Ray workers ({exc}); give its "
                "backend as a BackendSpec or a preset name, so that each worker builds its own"
            ) from exc


def _build_dataset(pipeline: Any, todo: list[dict[str, Any]], block_rows: int, options: Any) -> Any:
    """Input blocks -> one ``map_batches`` per actor stage; consecutive task stages, and the
    finalize step after them, share one ``map_batches`` (one JSON decode/encode per record)."""
    import ray
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    n_blocks = max(1, -(-len(todo) // block_rows))
    ds = ray.data.from_items(
        [{"key": r["key"], "record": json.dumps(r, ensure_ascii=False, separators=(",", ":"))} for r in todo],
        override_num_blocks=n_blocks,
    )
    group: list[Any] = []  # pending task stages
    group_opts: list[StageOptions] = []

    def task_step(ds: Any, finalize: bool) -> Any:
        conc = [int(o.concurrency) for o in group_opts if o.concurrency]
        return ds.map_batches(
            _apply_stages, batch_size=block_rows, batch_format="pyarrow",
            fn_kwargs={"stages": list(group), "pipeline": pipeline if finalize else None},
            num_cpus=max([o.num_cpus or 1.0 for o in group_opts], default=1.0),
            compute=TaskPoolStrategy(size=min(conc)) if conc else None,
            udf_modifying_row_count=finalize,
        )

    for stage, (opt, actor) in zip(pipeline.stages, options):
        if getattr(stage, "batch_size", None) not in (None, opt.batch_size):
            stage = copy.copy(stage)  # a batch_size option sets the records per stage call
            stage.batch_size = opt.batch_size
        if not actor:
            group.append(stage)
            group_opts.append(opt)
            continue
        if group:
            ds = task_step(ds, finalize=False)
            group, group_opts = [], []
        conc = opt.concurrency
        compute = (ActorPoolStrategy(min_size=conc[0], max_size=conc[1]) if isinstance(conc, tuple)
                   else ActorPoolStrategy(size=int(conc)))
        extra = {"num_gpus": opt.num_gpus} if opt.num_gpus else {}
        ds = ds.map_batches(_StageActor, fn_constructor_kwargs={"stage": stage}, compute=compute,
                            batch_size=opt.batch_size, batch_format="pyarrow", num_cpus=opt.num_cpus,
                            udf_modifying_row_count=False, **extra)
    return task_step(ds, finalize=True)


def run_ray(
    pipeline: Any,
    inputs: Any,
    out_dir: Union[str, Path],
    *,
    address: Optional[str] = None,
    batch_size: int = 64,
    retry_failed: bool = False,
    stage_options: Optional[Mapping[str, Any]] = None,
    output_format: str = "jsonl",
    progress: bool = True,
    init_kwargs: Optional[Mapping[str, Any]] = None,
    on_block: Optional[Callable[[int, int], None]] = None,
) -> Any:
    """Run ``pipeline`` on Ray Data over ``inputs``, writing into ``out_dir``; returns a
    :class:`giqa.pipeline.runner.RunSummary` (same fields as ``run_local``'s).

    Parameters
    ----------
    address:
        Ray cluster address (``"auto"``, ``"ray://host:10001"``); ``None`` joins the running
        Ray instance of this process or starts a local one (shut down again at the end).
    batch_size:
        Records per Ray block: the unit that is finalised and written (and lost on a crash).
    stage_options:
        ``{stage name: StageOptions or dict}``, see :class:`StageOptions`.
    output_format:
        ``"jsonl"`` (``samples.jsonl``, as ``run_local``), ``"jsonl-shards"`` or ``"parquet"``.
    on_block:
        Called on the driver after each written block with ``(blocks_done, records_done)``;
        an exception it raises stops the run (what is written stays; a re-run resumes).
    """
    require("ray", "scale")
    require("pyarrow", "scale")
    import ray
    from ray.data import DataContext

    from giqa.pipeline.records import JsonlWriter
    from giqa.pipeline.runner import SUMMARY_FILE, OutputState, RunSummary, _progress

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    t0 = time.perf_counter()
    started = False
    bars: Optional[bool] = None
    if not ray.is_initialized():
        kwargs = {"include_dashboard": False, "log_to_driver": False, **dict(init_kwargs or {})}
        ray.init(address=address, **kwargs)
        started = True
    try:
        ctx = DataContext.get_current()
        bars = ctx.enable_progress_bars
        ctx.enable_progress_bars = False  # one giqa bar instead of one per operator
        options = _resolve_options(pipeline.stages, stage_options or {}, ray.cluster_resources())
        _check_picklable(pipeline)

        records = _input_records(pipeline, inputs, batch_size)
        state = OutputState(out_dir)
        shard_keys, shard_samples = _shard_index(state.dir)
        state.done_keys |= shard_keys
        state.compact_errors()
        summary = RunSummary(out_dir=str(state.dir), inputs=len(records))
        todo = state.select(records, retry_failed=retry_failed, summary=summary)
        bar = _progress(len(todo), progress, f"{getattr(pipeline, 'task', 'run')} (ray)")
        sharded = output_format != "jsonl"
        samples_out = None if sharded else JsonlWriter(state.samples_path)
        errors_out = JsonlWriter(state.errors_path)
        run_id = uuid.uuid4().hex[:8]
        blocks = 0
        batches: Any = iter(())
        try:
            if todo:
                ds = _build_dataset(pipeline, todo, batch_size, options)
                batches = ds.iter_batches(batch_size=None, batch_format="pyarrow")
                for table in batches:
                    keys = table.column("key").to_pylist()
                    shard_lines: list[str] = []
                    n_err = 0
                    for key, lines_s, errs_s in zip(keys, table.column("lines").to_pylist(),
                                                    table.column("errors").to_pylist()):
                        lines = json.loads(lines_s)
                        if lines:
                            if sharded:
                                shard_lines.extend(lines)
                            else:
                                samples_out.write_group(lines)  # type: ignore[union-attr]
                            state.done_keys.add(key)
                            first = json.loads(lines[0])
                            state.done_ids.add((first.get("meta") or {}).get("record_id") or first.get("id"))
                            summary.samples_written += len(lines)
                            summary.succeeded += 1
                        for e in json.loads(errs_s):
                            errors_out.write(e)
                            state.errors[e["key"]] = e
                            stage = str(e.get("stage"))
                            summary.errors_by_stage[stage] = summary.errors_by_stage.get(stage, 0) + 1
                            n_err += 1
                    if sharded and shard_lines:
                        _write_shard(state.dir, output_format, run_id, blocks, shard_lines)
                    summary.failed += n_err
                    summary.processed += len(keys)
                    blocks += 1
                    if bar is not None:
                        bar.update(len(keys))
                    if on_block is not None:
                        on_block(blocks, summary.processed)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # an interrupted run stops the streaming executor now, not at GC
            if bar is not None:
                bar.close()
            if samples_out is not None:
                samples_out.close()
            errors_out.close()
            state.compact_errors()
            summary.seconds = time.perf_counter() - t0
            summary.total_samples = state.n_samples + shard_samples + summary.samples_written
            summary.total_errors = len(state.errors)
            (state.dir / SUMMARY_FILE).write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")
        return summary
    finally:
        if bars is not None and ray.is_initialized():
            DataContext.get_current().enable_progress_bars = bars
        if started:
            ray.shutdown()
