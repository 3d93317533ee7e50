"""Ray Data runner: the same stages as :func:`giqa.pipeline.run_local`, scaled over a cluster.

Every stage of ``pipeline.stages`` runs, as the very same stage object, inside a
``Dataset.map_batches`` step; typed records cross processes as JSON
(:func:`giqa.pipeline.records.to_json`) in an Arrow column. A *model stage* (one with a
configured backend) runs in an actor pool: every actor unpickles the stage once and builds its
backend lazily from its :class:`giqa.models.BackendSpec` (resolved on the driver, so a worker
builds exactly what the driver's configuration says), so a model is loaded once per actor, with
the actor's own ``num_gpus``, ``num_cpus`` and ``batch_size`` (:class:`StageOptions`). CPU-only
stages (``input``, ``fuse``, ``refine`` without a quality filter) run as Ray tasks. Consecutive
CPU stages share one task (records are decoded and encoded once), and the finalize step
(:func:`giqa.pipeline.runner.finalize_chunk`) runs in the last one, on the workers.

**At node scale.** On a cluster with GPUs, a model stage whose backend runs on a local device
(a spec with a ``device`` setting other than ``"cpu"``; not the ``openai`` client) gets one GPU
per actor, and its pool grows to the GPUs the other GPU stages leave: a pipeline with one GPU
stage gets a pool of one actor per GPU (8 GPUs: 8 actors, ~8x); with several, each pool
autoscales between 1 actor and the GPUs left once every other GPU stage has its one, so Ray
Data moves GPUs to the stage with the backlog (fewer GPUs than GPU stages: they share GPUs,
one actor each). A stage's CPU work on pixels (DES ``detect``: decoding the images;
``refine``: decoding and cropping) runs in the CPU tasks before its actor pool
(``prepare_pixels`` / ``using_pixels``, see :class:`giqa.pipeline.des.DetectStage`): the arrays
travel to the actor through Ray's object store, and the actor only runs its model.
:func:`ray_plan` shows what a run will do on a given cluster.

Around the stages the driver does exactly what :func:`run_local` does, through the same
:class:`giqa.pipeline.runner.RunBook`: lock, configuration check, resume from the output
directory's index, input records, writing, counting, the fail-fast rule and the summary; a run
started with one runner can be resumed with the other. With ``output_format="parquet"`` or
``"jsonl-shards"`` samples go to ``out_dir/samples/part-<run>-<n>.{parquet,jsonl}``, one shard
per finished block (:func:`giqa.data.io.sample_schema` for Parquet), each written to a
temporary name and renamed when complete (a shard is whole or absent), then indexed.

When ``run_ray`` starts a local Ray itself (no ``address`` and no running Ray), a small watcher
process (:mod:`giqa.pipeline._reaper`) ends the Ray processes if the driver is killed.

Inputs are raw items, records from ``pipeline.make_inputs``, or a path to a JSONL / JSON /
Parquet file or a directory of such shards.

Example::

    from giqa.pipeline import DesPipeline, DesConfig
    from giqa.pipeline.ray_runner import run_ray, StageOptions

    pipe = DesPipeline.from_preset("paper", config=DesConfig(root="/data"))
    run_ray(pipe, "items/", "out/des", address="auto")  # 8 GPUs: each model stage 1 to 6 actors
    run_ray(pipe, "items/", "out/des", address="auto",
            stage_options={"tags": StageOptions(num_gpus=1, concurrency=4, batch_size=16),
                           "detect": StageOptions(num_gpus=1, concurrency=2, batch_size=8),
                           "refine": StageOptions(num_gpus=1, concurrency=2, batch_size=32)})
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

from giqa.data.io import SHARD_DIR, atomic_target, dumps, iter_run_samples, sample_record_batch
from giqa.errors import ConfigError, require
from giqa.pipeline.records import Record, from_json, to_json
from giqa.pipeline.runner import ChunkResult, FailurePolicy, RunBook, RunSummary, finalize_chunk
from giqa.pipeline.stages import Stage, run_stages

__all__ = ["run_ray", "StageOptions", "RayStep", "ray_plan", "read_run_samples", "OUTPUT_FORMATS"]

log = logging.getLogger(__name__)

OUTPUT_FORMATS = ("jsonl", "jsonl-shards", "parquet")
_Concurrency = Union[int, tuple[int, int]]


@dataclass(frozen=True)
class StageOptions:
    """Ray settings of one stage (``None`` = default; :func:`ray_plan` shows the resolved ones).

    * ``concurrency``: actor-pool size (``n`` fixed, or ``(min, max)`` autoscaling) for a model
      stage; the most concurrent tasks for a CPU stage. Default for a GPU stage: one actor per
      GPU when it is the only GPU stage, else ``(1, GPUs left when every other GPU stage has
      its minimum)``; 1 actor for other model stages; tasks as the cluster allows.
    * ``num_gpus``: GPUs per actor. Default: 1 for a model stage whose backend runs on a local
      device when the cluster has GPUs (a share of one when there are fewer GPUs than GPU
      stages), else 0.
    * ``num_cpus``: CPUs per actor/task. Default: 1, or a fraction on a small CPU-only
      cluster so that every actor stage fits at once (2 cores: 0.25 each).
    * ``batch_size``: records per call. Default: the stage's own ``batch_size``.
    * ``actors``: force an actor pool (True) or tasks (False). Default: actors for model stages.
    * ``prepare``: run the stage's pixel work (decode, crop) in the CPU tasks before its actor
      pool. Default: True for a GPU actor stage that has such work (DES ``detect``, ``refine``).
    """

    concurrency: Optional[_Concurrency] = None
    num_gpus: Optional[float] = None
    num_cpus: Optional[float] = None
    batch_size: Optional[int] = None
    actors: Optional[bool] = None
    prepare: Optional[bool] = None

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
def _decode(table: Any, record_type: type[Record]) -> list[Any]:
    return [from_json(record_type, json.loads(s)) for s in table.column("record").to_pylist()]


def _encode(records: Sequence[Record], pixels: Optional[Sequence[Optional[list[Any]]]] = None) -> Any:
    """Records as an Arrow table (``key``, ``record`` JSON); with ``pixels`` (per record: a list
    of uint8 ``(H, W, C)`` arrays, or ``None``) also their columns for the next stage."""
    import pyarrow as pa

    columns = {
        "key": pa.array([r.key for r in records], pa.string()),
        "record": pa.array([dumps(to_json(r)) for r in records], pa.string()),
    }
    if pixels is not None:
        columns["pixels"], columns["pixel_shapes"] = _pixel_columns(pixels)
    return pa.table(columns)


def _pixel_columns(pixels: Sequence[Optional[list[Any]]]) -> tuple[Any, Any]:
    """Per record, its arrays' bytes (``large_list<large_binary>``, all in one buffer: one copy)
    and their shapes (``list<int32>``, 3 per array); null for a record without."""
    import numpy as np
    import pyarrow as pa

    flat: list[Any] = []
    shapes: list[int] = []
    counts: list[Optional[int]] = []
    for arrays in pixels:
        counts.append(None if arrays is None else len(arrays))
        for a in arrays or ():
            a = np.ascontiguousarray(a, dtype=np.uint8)
            if a.ndim != 3:
                raise ValueError(f"prepared pixels must be (H, W, C) uint8 arrays, got shape {a.shape}")
            flat.append(a.reshape(-1))
            shapes.extend(a.shape)
    ends = np.cumsum([0] + [f.size for f in flat], dtype=np.int64)
    data = np.concatenate(flat) if flat else np.zeros(0, np.uint8)
    blobs = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(flat), [None, pa.py_buffer(ends), pa.py_buffer(data)])
    rows = np.cumsum([0] + [c or 0 for c in counts], dtype=np.int64)
    mask = pa.array([c is None for c in counts])
    return (pa.LargeListArray.from_arrays(pa.array(rows), blobs, mask=mask),
            pa.ListArray.from_arrays(pa.array(3 * rows.astype(np.int32)), pa.array(shapes, pa.int32()), mask=mask))


def _given_pixels(table: Any) -> dict[str, list[Any]]:
    """``{record key: arrays}`` of a table's pixel columns (empty without them); the arrays are
    read-only views of the table's buffers (no copy)."""
    if "pixels" not in table.column_names:
        return {}
    import numpy as np

    blobs, shapes = table.column("pixels").combine_chunks(), table.column("pixel_shapes").combine_chunks()
    values = blobs.values  # the unsliced child: the list offsets index into it
    ends = np.frombuffer(values.buffers()[1], np.int64)[values.offset:values.offset + len(values) + 1]
    data = np.frombuffer(values.buffers()[2], np.uint8)
    offsets = blobs.offsets.to_numpy()
    out = {}
    for i, key in enumerate(table.column("key").to_pylist()):
        if blobs[i].is_valid:
            dims = shapes[i].values.to_numpy()
            out[key] = [data[ends[j]:ends[j + 1]].reshape(dims[3 * k:3 * k + 3])
                        for k, j in enumerate(range(offsets[i], offsets[i + 1]))]
    return out


def _apply_stages(table: Any, stages: Sequence[Any], record_type: type[Record], pipeline: Any = None,
                  prepare: Any = None) -> Any:
    """One batch through consecutive stages (each splits it into its own ``batch_size``, guarded
    exactly as the in-process runner guards it); with ``pipeline``, finalised as well; with
    ``prepare`` (the next actor stage), its pixel work done here, for that stage's actors.
    Records are decoded once and encoded once per call, however many stages run in it."""
    records = run_stages(list(stages), _decode(table, record_type))
    if pipeline is not None:
        return _result_table(finalize_chunk(pipeline, records))
    return _encode(records, prepare.prepare_pixels(records) if prepare is not None else None)


class _StageActor:
    """Actor-pool worker: holds one stage (and so one lazily built backend) for its lifetime."""

    def __init__(self, stage: Any, record_type: type[Record]) -> None:
        self.stage = stage
        self.record_type = record_type

    def __call__(self, table: Any) -> Any:
        given = _given_pixels(table)
        if not given:
            return _apply_stages(table, [self.stage], self.record_type)
        with self.stage.using_pixels(given):
            return _apply_stages(table, [self.stage], self.record_type)


def _result_table(result: ChunkResult) -> Any:
    """A :class:`ChunkResult` as one Arrow row (it crosses from the worker to the driver)."""
    import pyarrow as pa

    groups = dumps([[k, rid, lines] for k, rid, lines in result.groups])
    return pa.table({"groups": pa.array([groups], pa.string()), "errors": pa.array([dumps(result.errors)], pa.string()),
                     "records": pa.array([result.records], pa.int64())})


def _results(table: Any) -> Iterator[ChunkResult]:
    for groups, errors, n in zip(table.column("groups").to_pylist(), table.column("errors").to_pylist(),
                                 table.column("records").to_pylist()):
        yield ChunkResult(groups=[(k, rid, lines) for k, rid, lines in json.loads(groups)],
                          errors=json.loads(errors), records=int(n))


# -- outputs ----------------------------------------------------------------------------
def read_run_samples(out_dir: Union[str, Path]) -> list[dict[str, Any]]:
    """Every sample dict of a run directory (``samples.jsonl`` and shards); see
    :func:`giqa.data.io.iter_run_samples` to stream them."""
    return list(iter_run_samples(out_dir))


def _write_shard(out_dir: Path, fmt: str, run_id: str, seq: int, lines: list[str]) -> Path:
    shard_dir = out_dir / SHARD_DIR
    shard_dir.mkdir(parents=True, exist_ok=True)
    final = shard_dir / f"part-{run_id}-{seq:05d}.{'parquet' if fmt == 'parquet' else 'jsonl'}"
    with atomic_target(final) as tmp:
        if fmt == "parquet":
            pa = require("pyarrow", "scale")
            pq = require("pyarrow.parquet", "scale")
            batch = sample_record_batch([json.loads(line) for line in lines], lines)
            pq.write_table(pa.Table.from_batches([batch]), str(tmp), compression="zstd")
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write("".join(line + "\n" for line in lines))
                fh.flush()
                os.fsync(fh.fileno())
    return final


# -- stage placement -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RayStep:
    """One ``map_batches`` step of a Ray run (see :func:`ray_plan`).

    ``kind``: ``"actors"`` (one model stage in an actor pool) or ``"tasks"`` (consecutive CPU
    stages, maybe none, in Ray tasks). ``stages``: the names of the stages it runs.
    ``options``: its resolved settings (a task step: the largest ``num_cpus`` and smallest
    ``concurrency`` of its stages; ``batch_size``, records per task: the run's block size, or
    the actor stage's batch size for a step that prepares its pixels).
    ``prepares``: the actor stage whose pixel work (decode, crop) this task step does.
    ``finalize``: the last step, which also turns records into samples.
    """

    kind: str
    stages: tuple[str, ...]
    options: StageOptions
    prepares: Optional[str] = None
    finalize: bool = False

    def describe(self) -> str:
        o = self.options
        what = f"{self.kind}[{', '.join(self.stages)}]"
        if self.prepares:
            what += f" + {self.prepares}'s pixels"
        if self.finalize:
            what += " + finalize"
        pool = f" x{o.concurrency}" if o.concurrency is not None else ""
        return f"{what}{pool} gpus={o.num_gpus:g} cpus={o.num_cpus:g} batch={o.batch_size}"


def _cluster_resources() -> dict[str, float]:
    """The running Ray cluster's total resources (``{"CPU": 64.0, "GPU": 8.0, ...}``)."""
    import ray

    return {k: float(v) for k, v in ray.cluster_resources().items()}


def _uses_model(stage: Any) -> bool:
    if isinstance(stage, Stage):
        return any(slot.configured for slot in stage.slots().values())
    return bool(getattr(stage, "needs", ()))


def _runs_on_device(stage: Any) -> bool:
    """Whether a stage's backend runs a model on a local device: a spec whose settings have a
    ``device`` other than ``"cpu"`` (``"auto"`` takes the GPU an actor is given), or an object
    with such a ``device`` attribute. The ``openai`` client and callables have none."""
    if not isinstance(stage, Stage):
        return False
    for slot in stage.slots().values():
        if not slot.configured:
            continue
        device = slot.spec.full_settings().get("device") if slot.spec is not None else getattr(slot.get(), "device", None)
        if device is not None and not str(device).startswith("cpu"):
            return True
    return False


def _can_prepare(stage: Any) -> bool:
    return callable(getattr(stage, "prepare_pixels", None)) and callable(getattr(stage, "using_pixels", None))


def _actor_cpus(cpus: float, n_actor_stages: int) -> float:
    """Default CPUs per actor: 1 when the cluster has room for every actor stage plus as many
    task slots; else half the CPUs shared among the actor stages, in steps of 0.25, so that all
    actor pools fit at once (2 CPUs, 3 model stages: 0.25 each) and tasks still get a CPU."""
    if cpus >= 2 * (n_actor_stages + 1):
        return 1.0
    share = cpus / 2 / max(n_actor_stages, 1)
    return max(0.25, math.floor(share * 4) / 4)


def _least(conc: Optional[_Concurrency]) -> int:
    return 1 if conc is None else int(conc[0] if isinstance(conc, tuple) else conc)


def _pool_sizes(num_gpus: Sequence[float], given: Sequence[Optional[_Concurrency]], actor: Sequence[bool],
                shared: Sequence[bool], names: Sequence[str], gpus: float) -> list[Optional[_Concurrency]]:
    """Default pool sizes: a GPU stage gets the GPUs left once every other GPU stage has its
    minimum (the only GPU stage: a fixed pool of that many actors; several: autoscaling from 1);
    a stage on a shared GPU, and any other actor stage, 1 actor; task stages no limit."""
    on_gpu = [i for i, (n, a) in enumerate(zip(num_gpus, actor)) if a and n > 0]
    need = sum(num_gpus[i] * _least(given[i]) for i in on_gpu)
    if on_gpu and need > gpus + 1e-9:
        log.warning("the GPU stages %s need %g GPUs at once (their smallest pools); the cluster has %g now: "
                    "the run waits until that many are there", [names[i] for i in on_gpu], need, gpus)
    out: list[Optional[_Concurrency]] = []
    for i, (n, a, c) in enumerate(zip(num_gpus, actor, given)):
        if c is not None or not a:
            out.append(c)
        elif n <= 0 or shared[i]:
            out.append(1)
        else:
            most = int(math.floor((gpus - need + n) / n + 1e-9))
            out.append(1 if most <= 1 else most if len(on_gpu) == 1 else (1, most))
    return out


def _resolve_options(
    stages: Sequence[Any], given: Mapping[str, Any], resources: Mapping[str, float]
) -> list[tuple[StageOptions, bool]]:
    """Every stage's options with the defaults filled in for a cluster with ``resources``, and
    whether it runs in an actor pool."""
    names = [getattr(s, "name", type(s).__name__) for s in stages]
    unknown = set(given) - set(names)
    if unknown:
        raise ConfigError(f"stage_options for unknown stage(s) {sorted(unknown)}; stages are {names}")
    opts = [StageOptions.coerce(given.get(n, StageOptions())) for n in names]
    use_actor = [o.actors if o.actors is not None else _uses_model(s) for s, o in zip(stages, opts)]
    gpus = float(resources.get("GPU", 0.0))
    cpus = float(resources.get("CPU", 1.0))
    actor_cpu = _actor_cpus(cpus, sum(use_actor))
    default_gpu = [a and o.num_gpus is None and gpus >= 1 and _runs_on_device(s) for s, o, a in zip(stages, opts, use_actor)]
    n_gpu_stages = sum(default_gpu) + sum(1 for o, a in zip(opts, use_actor) if a and (o.num_gpus or 0) > 0)
    # fewer GPUs than GPU stages: equal shares that pack whole into GPUs (3 stages, 2 GPUs: 0.5)
    share = 1.0 if n_gpu_stages <= gpus else math.floor(1e4 / math.ceil(n_gpu_stages / max(gpus, 1.0))) / 1e4
    num_gpus = [o.num_gpus if o.num_gpus is not None else (share if d else 0.0) for o, d in zip(opts, default_gpu)]
    pools = _pool_sizes(num_gpus, [o.concurrency for o in opts], use_actor, [d and share < 1 for d in default_gpu],
                        names, gpus)
    out = []
    for stage, o, actor, n_gpu, pool in zip(stages, opts, use_actor, num_gpus, pools):
        batch = o.batch_size or int(getattr(stage, "batch_size", 64))
        if batch < 1:
            raise ConfigError(f"stage {stage.name!r}: batch_size must be >= 1, got {batch}")
        if o.prepare and not _can_prepare(stage):
            raise ConfigError(f"stage {stage.name!r} has no pixel work to prepare (prepare=True)")
        out.append((replace(o, num_gpus=n_gpu, num_cpus=o.num_cpus if o.num_cpus is not None else (actor_cpu if actor else 1.0),
                            batch_size=batch, concurrency=pool,
                            prepare=actor and (o.prepare if o.prepare is not None else n_gpu > 0 and _can_prepare(stage))),
                    actor))
    return out


def _steps(stages: Sequence[Any], options: Sequence[tuple[StageOptions, bool]], block_rows: int) -> list[RayStep]:
    """Consecutive task stages share a step; an actor stage is a step of its own, after a task
    step that prepares its pixels when it has any to prepare (in the actor's batches: decoded
    images are large, and small blocks keep them streaming); a task step finalises at the end."""
    steps: list[RayStep] = []
    group: list[tuple[str, StageOptions]] = []

    def tasks(prepares: Optional[str] = None, finalize: bool = False, rows: Optional[int] = None) -> None:
        conc = [int(o.concurrency) for _, o in group if isinstance(o.concurrency, int)]
        opts = StageOptions(concurrency=min(conc) if conc else None, num_gpus=0.0, actors=False,
                            batch_size=rows or block_rows, num_cpus=max([o.num_cpus or 1.0 for _, o in group], default=1.0))
        steps.append(RayStep("tasks", tuple(n for n, _ in group), opts, prepares=prepares, finalize=finalize))
        group.clear()

    for stage, (opt, actor) in zip(stages, options):
        if not actor:
            group.append((stage.name, opt))
            continue
        if group or opt.prepare:
            tasks(prepares=stage.name if opt.prepare else None, rows=opt.batch_size if opt.prepare else None)
        steps.append(RayStep("actors", (stage.name,), opt))
    tasks(finalize=True)
    return steps


def ray_plan(pipeline: Any, stage_options: Optional[Mapping[str, Any]] = None, *, batch_size: int = 64,
             resources: Optional[Mapping[str, float]] = None) -> list[RayStep]:
    """The ``map_batches`` steps :func:`run_ray` runs ``pipeline`` in, with every option
    resolved for a cluster with ``resources`` (e.g. ``{"CPU": 96, "GPU": 8}``; default: the
    running Ray cluster's). ``stage_options`` and ``batch_size`` as for :func:`run_ray`.

    >>> for step in ray_plan(des, resources={"CPU": 96, "GPU": 8}):  # doctest: +SKIP
    ...     print(step.describe())
    tasks[input] gpus=0 cpus=1 batch=64
    actors[tags] x(1, 6) gpus=1 cpus=1 batch=8
    tasks[] + detect's pixels gpus=0 cpus=1 batch=64
    ...
    """
    options = _resolve_options(pipeline.stages, stage_options or {},
                               _cluster_resources() if resources is None else resources)
    return _steps(pipeline.stages, options, batch_size)


def _check_picklable(pipeline: Any) -> None:
    """Fail before any work when a stage cannot travel to the workers (e.g. a loaded model)."""
    from ray import cloudpickle

    for stage in pipeline.stages:
        try:
            cloudpickle.dumps(stage)
        except Exception as exc:  # noqa: BLE001 - pickling raises many types
            raise ConfigError(
                f"stage {getattr(stage, 'name', stage)!r} cannot be sent to Ray workers ({exc}); give its "
                "backend as a BackendSpec or a preset name, so that each worker builds its own"
            ) from exc


def _build_dataset(pipeline: Any, todo: Sequence[Record], block_rows: int, steps: Sequence[RayStep],
                   options: Mapping[str, StageOptions]) -> Any:
    """Input blocks -> one ``map_batches`` per step of :func:`ray_plan` (one JSON decode/encode
    per record and step)."""
    import ray
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    rtype = pipeline.record_type
    by_name = {s.name: s for s in pipeline.stages}

    def staged(name: str) -> Any:
        stage, batch = by_name[name], options[name].batch_size
        if getattr(stage, "batch_size", None) not in (None, batch):
            stage = copy.copy(stage)  # a batch_size option sets the records per stage call
            stage.batch_size = batch
        return stage

    ds: Any = ray.data.from_items([{"key": r.key, "record": dumps(to_json(r))} for r in todo],
                                  override_num_blocks=max(1, -(-len(todo) // block_rows)))
    for step in steps:
        opt = step.options
        conc = opt.concurrency
        if step.kind == "tasks":
            ds = ds.map_batches(
                _apply_stages, batch_size=opt.batch_size, batch_format="pyarrow",
                fn_kwargs={"stages": [staged(n) for n in step.stages], "record_type": rtype,
                           "pipeline": pipeline if step.finalize else None,
                           "prepare": staged(step.prepares) if step.prepares else None},
                num_cpus=opt.num_cpus, compute=TaskPoolStrategy(size=int(conc)) if isinstance(conc, int) else None,
                udf_modifying_row_count=step.finalize,
            )
            continue
        compute = (ActorPoolStrategy(min_size=conc[0], max_size=conc[1]) if isinstance(conc, tuple)
                   else ActorPoolStrategy(size=int(conc or 1)))
        extra = {"num_gpus": opt.num_gpus} if opt.num_gpus else {}
        ds = ds.map_batches(_StageActor, fn_constructor_kwargs={"stage": staged(step.stages[0]), "record_type": rtype},
                            compute=compute, batch_size=opt.batch_size, batch_format="pyarrow", num_cpus=opt.num_cpus,
                            udf_modifying_row_count=False, **extra)
    return ds


# -- the runner --------------------------------------------------------------------------------------
@contextmanager
def _ray_session(address: Optional[str], init_kwargs: Mapping[str, Any]) -> Iterator[None]:
    """Join the running Ray or start one; a Ray started here is shut down at the end, and a
    watcher ends its processes if this process dies first."""
    import ray
    from ray.data import DataContext

    watcher = None
    started = not ray.is_initialized()
    if started:
        from giqa.pipeline import _reaper

        watcher = _reaper.start() if address is None else None
        ray.init(address=address, **{"include_dashboard": False, "log_to_driver": False, **dict(init_kwargs)})
        if watcher is not None:
            watcher.watch_children()
    ctx = DataContext.get_current()
    bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = False  # one giqa bar instead of one per operator
    try:
        yield
    finally:
        if ray.is_initialized():
            DataContext.get_current().enable_progress_bars = bars
        if started:
            ray.shutdown()
        if watcher is not None:
            watcher.done()


def _drive(book: RunBook, pipeline: Any, todo: Sequence[Record], batch_size: int, steps: Sequence[RayStep],
           options: Mapping[str, StageOptions], output_format: str, on_block: Optional[Callable[[int, int], None]]) -> None:
    """Run ``todo`` through the dataset and hand every finished block to ``book``."""
    if not todo:
        return
    run_id = uuid.uuid4().hex[:8]
    ds = _build_dataset(pipeline, todo, batch_size, steps, options)
    batches = ds.iter_batches(batch_size=None, batch_format="pyarrow")
    blocks = 0
    try:
        for table in batches:
            for result in _results(table):
                if output_format != "jsonl" and result.groups:
                    shard = _write_shard(book.rundir.dir, output_format, run_id, blocks,
                                         [line for _, _, lines in result.groups for line in lines])
                    book.rundir.index_shard(shard, [(k, rid, len(lines)) for k, rid, lines in result.groups])
                book.accept(result, written_elsewhere=output_format != "jsonl")
                blocks += 1
                if on_block is not None:
                    on_block(blocks, book.summary.processed)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # an interrupted run stops the streaming executor now, not at GC


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
    max_failures: float = 0.5,
    fail_fast: int = 20,
    run_info: Optional[dict[str, Any]] = None,
) -> RunSummary:
    """Run ``pipeline`` on Ray Data over ``inputs``, writing into ``out_dir``; returns the same
    :class:`giqa.pipeline.runner.RunSummary` as ``run_local`` and raises as it does.

    ``address``: Ray cluster address (``"auto"``, ``"ray://host:10001"``); ``None`` joins the
    running Ray instance of this process or starts a local one (shut down again at the end).
    ``batch_size``: records per Ray block, the unit that is finalised, written and checked by
    the fail-fast rule (``max_failures``, ``fail_fast``, see :class:`FailurePolicy`).
    ``stage_options``: ``{stage name: StageOptions or dict}``. ``output_format``: ``"jsonl"``
    (``samples.jsonl``, as ``run_local``), ``"jsonl-shards"`` or ``"parquet"``. ``on_block``:
    called after each written block with ``(blocks_done, records_done)``; an exception it
    raises stops the run (what is written stays; a re-run resumes).
    """
    require("ray", "scale")
    require("pyarrow", "scale")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    policy = FailurePolicy(first_n=fail_fast, max_share=max_failures)
    with _ray_session(address, init_kwargs or {}):
        resolved = _resolve_options(pipeline.stages, stage_options or {}, _cluster_resources())
        steps = _steps(pipeline.stages, resolved, batch_size)
        log.info("Ray plan: %s", "; ".join(step.describe() for step in steps))
        options = {s.name: o for s, (o, _) in zip(pipeline.stages, resolved)}
        _check_picklable(pipeline)
        if isinstance(inputs, (str, os.PathLike)):
            from giqa.pipeline.inputs import read_input_rows

            inputs = read_input_rows(Path(os.fspath(inputs)))
        with RunBook(pipeline, out_dir, retry_failed=retry_failed, policy=policy, progress=progress,
                     desc=f"{pipeline.task} (ray)", run_info=run_info) as book:
            todo = book.prepare(inputs)
            _drive(book, pipeline, todo, batch_size, steps, options, output_format, on_block)
            book.finish()
    return book.summary
