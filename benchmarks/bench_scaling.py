"""Ray runner scaling on a CPU-bound DES run: in-process vs Ray with 1 and 2 workers.

    .venv/bin/python benchmarks/bench_scaling.py [--n 800] [--block 50] [--size 1024 768] [--repeat 2]

The work is real CPU work per record: read and decode a 1024 x 768 JPEG (detect stage), decode
it again and crop it for the quality filter (refine stage), Box-Merge (Numba), fusion and
question draw (fuse stage), Sample validation (finalize), one JSON line written. The backends
are instant in-memory callables, so no model time hides the runner. All three contenders run
the same ``DesPipeline`` on the same input records (``make_inputs`` is done once, untimed):

- ``run_local``: the in-process runner (one core), the reference;
- ``run_ray, 1 worker``: ``ray.init(num_cpus=1)``, every stage as Ray tasks;
- ``run_ray, 2 workers``: ``ray.init(num_cpus=2)``, same.

A calibration run pushes records through a stage that burns 20 ms of CPU time each (perfectly
parallel work) with 1 and 2 workers: the CPU share it obtains shows how many cores the machine
really gave the workers (other processes, the Ray driver and raylet share the same cores).

The Ray timings exclude ``ray.init`` (a few seconds) but include Ray Data's planning, task
scheduling, Arrow/JSON transfer of records and the driver's writing. Each contender writes into
a fresh directory; the best of ``--repeat`` runs is reported. The machine has 2 cores shared
with other work, so the 2-worker figure also pays for the driver process on the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
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


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def count(out: Path) -> int:
    with open(out / "samples.jsonl", "rb") as f:
        return sum(1 for _ in f)


def bench_local(pipe, inputs, tmp: Path, repeat: int) -> float:
    best = float("inf")
    for r in range(repeat):
        out = tmp / f"local{r}"
        t = time.perf_counter()
        run_local(pipe, inputs, out, batch_size=100, progress=False)
        best = min(best, time.perf_counter() - t)
        assert count(out) == len(inputs)
    return best


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


def burn_inputs(n: int) -> list[Record]:
    return [Record(key=f"k{i}", id=f"b{i}") for i in range(n)]


def bench_ray(pipe, inputs, tmp: Path, repeat: int, workers: int, block: int, burn_n: int, burn_ms: float):
    import ray

    from giqa.pipeline.ray_runner import StageOptions, run_ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        tasks = {s.name: StageOptions(actors=False, batch_size=block) for s in pipe.stages}
        best = float("inf")
        for r in range(repeat):
            out = tmp / f"ray{workers}_{r}"
            t = time.perf_counter()
            run_ray(pipe, inputs, out, batch_size=block, progress=False, stage_options=tasks)
            best = min(best, time.perf_counter() - t)
            assert count(out) == len(inputs)
        burn = BurnPipeline(burn_ms, batch_size=10)
        best_burn = float("inf")
        for r in range(repeat):
            out = tmp / f"burn{workers}_{r}"
            t = time.perf_counter()
            run_ray(burn, burn_inputs(burn_n), out, batch_size=20, progress=False)
            best_burn = min(best_burn, time.perf_counter() - t)
    finally:
        ray.shutdown()
    return best, best_burn


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=800)
    ap.add_argument("--block", type=int, default=50, help="records per Ray block (default: 50)")
    ap.add_argument("--size", type=int, nargs=2, default=(1024, 768), metavar=("W", "H"),
                    help="image size (default: 1024 768, KonIQ-10k's size)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--burn-n", type=int, default=200, help="calibration records (default: 200)")
    ap.add_argument("--burn-ms", type=float, default=20.0, help="calibration CPU ms per record (default: 20)")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    load0 = _load()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "img").mkdir()
        items = make_images(tmp / "img", args.n, tuple(args.size))
        pipe = make_pipeline(tmp / "img")
        inputs = pipe.make_inputs(items)
        t_local = bench_local(pipe, inputs, tmp, args.repeat)
        t_r1, b1 = bench_ray(pipe, inputs, tmp, args.repeat, 1, args.block, args.burn_n, args.burn_ms)
        t_r2, b2 = bench_ray(pipe, inputs, tmp, args.repeat, 2, args.block, args.burn_n, args.burn_ms)
    n = args.n
    rows = [("run_local (in-process, 1 core)", t_local), ("run_ray, 1 worker", t_r1), ("run_ray, 2 workers", t_r2)]
    print(f"\nDES, {n} records ({args.size[0]}x{args.size[1]} JPEG decoded twice, 4 tags, 8 boxes, instant "
          f"backends), Ray blocks of {args.block}, best of {args.repeat}; {os.cpu_count()} CPU cores; "
          f"load average before: {load0}\n")
    print("| contender | seconds | records/s | vs run_local | vs 1 worker |")
    print("|---|---:|---:|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.2f} | {n / t:,.0f} | {t_local / t:.2f}x | {t_r1 / t:.2f}x |")
    print(f"\nScaling 1 -> 2 workers (DES): {t_r1 / t_r2:.2f}x (ideal 2.00x)")
    ideal = args.burn_n * args.burn_ms / 1000.0
    print(f"\nCalibration: {args.burn_n} records x {args.burn_ms:g} ms of CPU each ({ideal:.1f} CPU-s, perfectly "
          f"parallel) through run_ray\n")
    print("| workers | seconds | ideal seconds | CPU share obtained |")
    print("|---:|---:|---:|---:|")
    print(f"| 1 | {b1:.2f} | {ideal:.2f} | {ideal / b1:.2f} cores |")
    print(f"| 2 | {b2:.2f} | {ideal / 2:.2f} | {ideal / b2:.2f} cores |")
    print(f"\nScaling 1 -> 2 workers (calibration): {b1 / b2:.2f}x; load average after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
