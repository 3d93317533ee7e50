"""Ray runner scaling on a CPU-bound DES run: in-process vs Ray with 1 and 2 workers (pytest-benchmark).

Run: ``.venv/bin/python -m pytest benchmarks/bench_scaling.py`` (``GIQA_BENCH_SCALING_RECORDS``
records, default 800, in Ray blocks of 50; 2 rounds each).

The work is real CPU work per record: read and decode a 1024 x 768 JPEG (detect stage), decode
it again and crop it for the quality filter (refine stage), Box-Merge (Numba), fusion and
question draw (fuse stage), Sample validation (finalize), one JSON line written. The backends
are instant in-memory callables, so no model time hides the runner. Every contender runs the
same ``DesPipeline`` on the same input records (``make_inputs`` is done once, untimed), each
round into a fresh directory:

- ``run_local``: the in-process runner (one core), the reference;
- ``run_ray, 1 worker``: ``ray.init(num_cpus=1)``, every stage as Ray tasks;
- ``run_ray, 2 workers``: ``ray.init(num_cpus=2)``, same;
- ``run_ray, 2 workers, actors``: ``detect`` and ``refine`` in actor pools (the model-stage
  path, their own batch sizes: 4 and 8), with and without their pixels prepared in the CPU
  tasks before them (the GPU default: decoded images and crops travel to the actors through
  the object store, and the actors only call their backends).

A calibration group pushes records through a stage that burns 20 ms of CPU time each
(perfectly parallel work) with 1 and 2 workers: the CPU share it obtains (``extra_info``) shows
how many cores the machine really gave the workers (other processes, the Ray driver and raylet
share the same cores). Ray timings exclude ``ray.init`` but include Ray Data's planning,
scheduling, Arrow/JSON transfer of records and the driver's writing. Results recorded in
``benchmarks/results/scaling.md``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from itertools import count
from pathlib import Path

import numpy as np
from PIL import Image

from giqa.models import CallableDetector, CallableLLM, CallableQualityFilter
from giqa.pipeline import DesConfig, DesPipeline, Pipeline, Record, Stage, run_local
from giqa.types import Sample

DESC = ("The dog on the left is blurry, while the red car is sharp and well exposed. The sky is "
        "overexposed and the trees are dark.")
TAGS = json.dumps({"tags": [
    {"name": "dog", "phrase": "the dog on the left", "quality": "blurry", "effect": "negative"},
    {"name": "car", "phrase": "red car", "quality": "sharp", "effect": "positive"},
    {"name": "sky", "phrase": "sky", "quality": "overexposed", "effect": "negative"},
    {"name": "trees", "phrase": "the trees", "quality": "dark", "effect": "negative"},
]})
BOXES = {
    "the dog on the left": [((0.05, 0.4, 0.35, 0.9), 0.8), ((0.1, 0.45, 0.3, 0.85), 0.6)],
    "red car": [((0.55, 0.5, 0.95, 0.9), 0.9), ((0.6, 0.55, 0.9, 0.85), 0.6), ((0.0, 0.0, 0.2, 0.2), 0.4)],
    "sky": [((0.0, 0.0, 1.0, 0.3), 0.7)],
    "the trees": [((0.1, 0.5, 0.3, 0.7), 0.6), ((0.3, 0.5, 0.5, 0.7), 0.5)],
}
N = int(os.environ.get("GIQA_BENCH_SCALING_RECORDS", "800"))
BLOCK = 50
SIZE = (1024, 768)  # KonIQ-10k's size
GROUP = f"Ray scaling: DES, {N} records ({SIZE[0]}x{SIZE[1]} JPEG decoded twice, 4 tags, 8 boxes, instant backends)"
BURN_N, BURN_MS = 200, 20.0
CALIBRATION = f"Ray calibration: {BURN_N} records x {BURN_MS:g} ms of CPU each (perfectly parallel)"


def tags_fn(messages):
    return TAGS


def detect_fn(image, phrase):
    return BOXES.get(phrase, [])


def filter_fn(crop, question):
    return float(np.asarray(crop, dtype=np.float32).mean() / 255.0)  # touches every crop pixel


def make_pipeline(root: Path) -> DesPipeline:
    return DesPipeline(
        llm=CallableLLM(tags_fn, model_id="instant-llm"),
        detector=CallableDetector(detect_fn, model_id="instant-detector"),
        quality_filter=CallableQualityFilter(filter_fn, model_id="instant-filter"),
        config=DesConfig(root=str(root), filter_threshold=0.3),
    )


def make_images(root: Path, n: int, size: tuple[int, int]) -> list[dict]:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    # a smooth photo-like gradient plus mild noise: JPEG-compressible like a photo, unlike pure noise
    base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (w + h))], axis=-1).astype(np.int16)
    base = np.clip(base + rng.integers(-12, 12, base.shape), 0, 255).astype(np.uint8)
    items = []
    for i in range(n):
        arr = base.copy()
        arr[i % h, :, :] = i % 251  # distinct bytes per image
        Image.fromarray(arr).save(root / f"{i}.jpg", quality=90)
        items.append({"image": f"{i}.jpg", "description": DESC, "id": f"s{i}"})
    return items


_WORKLOAD: dict = {}


def workload(tmp_path_factory):
    """``(pipeline, input records)`` on ``N`` JPEGs in a session temporary directory (made once)."""
    if not _WORKLOAD:
        root = tmp_path_factory.mktemp("scaling-images")
        pipe = make_pipeline(root)
        _WORKLOAD.update(pipe=pipe, inputs=pipe.make_inputs(make_images(root, N, SIZE)))
    return _WORKLOAD["pipe"], _WORKLOAD["inputs"]


def count_lines(out: Path) -> int:
    with open(out / "samples.jsonl", "rb") as f:
        return sum(1 for _ in f)


class BurnStage(Stage[Record]):
    """Calibration: a stage that burns ``ms`` of CPU time per record (perfectly parallel work)."""

    name = "burn"

    def __init__(self, ms: float, batch_size: int) -> None:
        super().__init__(batch_size=batch_size)
        self.ms = ms

    def process(self, records):
        for _ in records:
            t = time.process_time()
            while time.process_time() - t < self.ms / 1000.0:
                pass
        return list(records)


class BurnPipeline(Pipeline[Record, Sample]):
    task = "burn"
    record_type = Record

    def __init__(self, ms: float, batch_size: int) -> None:
        self.stages = [BurnStage(ms, batch_size)]

    def make_inputs(self, items, **_):
        return list(items)

    def outputs(self, r):
        return [Sample(id=r.id, image="x.png", task="des", question="q", answer="a", meta={"key": r.key})]


def _fresh(tmp_path: Path, prefix: str):
    numbers = count()
    return lambda: ((tmp_path / f"{prefix}{next(numbers)}",), {})


def _rate(measure, n: int) -> None:
    measure.info(records_per_s=round(n / measure.seconds), load_average=round(os.getloadavg()[0], 2))


def test_run_local(measure, tmp_path, tmp_path_factory):
    pipe, inputs = workload(tmp_path_factory)

    def run(out):
        run_local(pipe, inputs, out, batch_size=100, progress=False)
        assert count_lines(out) == len(inputs)

    measure(GROUP, run, setup=_fresh(tmp_path, "local"), rounds=2, warmup=0)
    _rate(measure, N)


def _ray(workers: int):
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # the workers import this module by name (its callables and stages travel by reference)
    path = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    return ray


def _run_ray(measure, tmp_path, tmp_path_factory, workers: int, options: dict) -> None:
    from giqa.pipeline.ray_runner import run_ray

    pipe, inputs = workload(tmp_path_factory)

    def run(out):
        run_ray(pipe, inputs, out, batch_size=BLOCK, progress=False, stage_options=options)
        assert count_lines(out) == len(inputs)

    ray = _ray(workers)
    try:
        measure(GROUP, run, setup=_fresh(tmp_path, "ray"), rounds=2, warmup=1)
    finally:
        ray.shutdown()
    _rate(measure, N)


def _tasks():
    return {name: {"actors": False, "batch_size": BLOCK} for name in ("input", "tags", "detect", "refine", "fuse")}


def test_run_ray_1_worker(measure, tmp_path, tmp_path_factory):
    _run_ray(measure, tmp_path, tmp_path_factory, 1, _tasks())


def test_run_ray_2_workers(measure, tmp_path, tmp_path_factory):
    _run_ray(measure, tmp_path, tmp_path_factory, 2, _tasks())


def test_run_ray_2_workers_actors_pixels_prepared(measure, tmp_path, tmp_path_factory):
    actors = {n: {"actors": True, "prepare": True} for n in ("detect", "refine")}
    _run_ray(measure, tmp_path, tmp_path_factory, 2, {**_tasks(), **actors})


def test_run_ray_2_workers_actors_decoding_themselves(measure, tmp_path, tmp_path_factory):
    actors = {n: {"actors": True, "prepare": False} for n in ("detect", "refine")}
    _run_ray(measure, tmp_path, tmp_path_factory, 2, {**_tasks(), **actors})


def _burn(measure, tmp_path, workers: int) -> None:
    from giqa.pipeline.ray_runner import run_ray

    burn = BurnPipeline(BURN_MS, batch_size=10)
    inputs = [Record(key=f"k{i}", id=f"b{i}") for i in range(BURN_N)]
    ray = _ray(workers)
    try:
        measure(CALIBRATION, lambda out: run_ray(burn, inputs, out, batch_size=20, progress=False),
                setup=_fresh(tmp_path, "burn"), rounds=2, warmup=1)
    finally:
        ray.shutdown()
    ideal = BURN_N * BURN_MS / 1000.0
    measure.info(ideal_seconds=round(ideal / workers, 2), cpu_share_obtained=f"{ideal / measure.seconds:.2f} cores")


def test_calibration_1_worker(measure, tmp_path):
    _burn(measure, tmp_path, 1)


def test_calibration_2_workers(measure, tmp_path):
    _burn(measure, tmp_path, 2)


if __name__ == "__main__":
    import pytest

    sys.exit(pytest.main([__file__, "-p", "no:cacheprovider", *sys.argv[1:]]))
