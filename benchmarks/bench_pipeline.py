"""Library overhead of the DES pipeline with instant in-memory backends (pytest-benchmark).

Run: ``.venv/bin/python -m pytest benchmarks/bench_pipeline.py`` (``GIQA_BENCH_RECORDS``
records, default 4,000; 3 rounds each).

Both contenders do the same work per record on the same tiny PNGs (16 x 12 px, distinct bytes):
read + hash the image bytes, decode it, get tags from the LLM callable, detections from the
detector callable (two phrases, one with two boxes), P(yes) from the filter callable on crops,
Box-Merge, fusion with ``giqa.text.fuse``, a question draw, one JSON line per sample written
and flushed. Each round writes into a fresh directory (made untimed).

- ``giqa run_local``: ``DesPipeline`` through the in-process runner (validation with pydantic,
  Sample objects, provenance, resume bookkeeping, error isolation, progress off).
- ``bare loop``: the same calls in a plain loop with ``json.dumps`` of a dict (no validation,
  no resume, no error handling): the floor the library's bookkeeping is measured against.

``extra_info``: samples/s by wall and by CPU time of the fastest round (the machine is shared:
CPU time is the steadier figure). Results recorded in ``benchmarks/results/pipeline.md``.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from giqa.models import CallableDetector, CallableLLM, CallableQualityFilter
from giqa.pipeline import DesConfig, DesPipeline, run_local

DESC = "The dog on the left is blurry, while the red car is sharp and well exposed."
TAGS = json.dumps({"tags": [
    {"name": "dog", "phrase": "the dog on the left", "quality": "blurry", "effect": "negative"},
    {"name": "car", "phrase": "red car", "quality": "sharp", "effect": "positive"},
    {"name": "image", "phrase": "image", "quality": "fine", "effect": "no_impact"},
]})
BOXES = {"the dog on the left": [((0.05, 0.4, 0.35, 0.9), 0.8)],
         "red car": [((0.55, 0.5, 0.95, 0.9), 0.9), ((0.6, 0.55, 0.9, 0.85), 0.6)]}
N = int(os.environ.get("GIQA_BENCH_RECORDS", "4000"))
GROUP = f"DES pipeline, {N:,} records, instant backends (target >= 2,000 samples/s, one process)"


def backends():
    return dict(
        llm=CallableLLM(lambda m: TAGS, model_id="instant-llm"),
        detector=CallableDetector(lambda im, p: BOXES.get(p, []), model_id="instant-detector"),
        quality_filter=CallableQualityFilter(lambda c, q: 0.9, model_id="instant-filter"),
    )


_WORKLOAD: dict = {}


def workload(tmp_path_factory) -> tuple[Path, list[dict]]:
    """``N`` distinct 16 x 12 PNGs in a session temporary directory, and their items (made once)."""
    if _WORKLOAD:
        return _WORKLOAD["root"], _WORKLOAD["items"]
    root = tmp_path_factory.mktemp("pipeline-images")
    rng = np.random.default_rng(0)
    items = []
    for i in range(N):
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(root / f"{i}.png")
        items.append({"image": f"{i}.png", "description": DESC, "id": f"s{i}"})
    _WORKLOAD.update(root=root, items=items)
    return root, items


def run_giqa(root: Path, items: list[dict], out: Path) -> float:
    from giqa.pipeline.des import clear_image_cache

    clear_image_cache()  # every run decodes its images again, as the bare loop does
    c0 = time.process_time()
    pipe = DesPipeline(**backends(), config=DesConfig(root=str(root)))
    summary = run_local(pipe, pipe.make_inputs(items), out, batch_size=256, progress=False)
    if summary.succeeded != len(items):
        raise RuntimeError(f"giqa run failed: {summary}")
    return time.process_time() - c0


def run_bare(root: Path, items: list[dict], out: Path) -> float:
    import hashlib

    from giqa import prompts
    from giqa.geometry import box_merge
    from giqa.text import fuse
    from giqa.types import GroundedPhrase

    c0 = time.process_time()
    b = backends()
    pool = prompts.question_pool()
    with open(out, "w") as f:
        for it in items:
            data = (root / it["image"]).read_bytes()
            key = hashlib.sha256(data + it["description"].encode()).hexdigest()
            im = Image.open(root / it["image"]).convert("RGB")
            tags = [t for t in json.loads(b["llm"].generate([[{"role": "user", "content": it["description"]}]])[0])["tags"]
                    if t["effect"] != "no_impact"]
            dets = b["detector"].detect([im], [[t["phrase"] for t in tags]])[0]
            phrases = []
            for t, ds in zip(tags, dets):
                boxes = [d.box.as_tuple() for d in ds]
                if len(boxes) > 1:
                    w, h = im.size
                    crops = [im.crop((int(x1 * w), int(y1 * h), int(x2 * w) + 1, int(y2 * h) + 1)) for x1, y1, x2, y2 in boxes]
                    p = b["quality_filter"].p_yes(crops, [f"Is the image quality {t['quality']}?"] * len(crops))
                    boxes = [bx for bx, pp in zip(boxes, p) if pp >= 0.5]
                merged, _ = box_merge(np.asarray(boxes, dtype=np.float64))
                phrases.append(GroundedPhrase(phrase=t["phrase"], boxes=tuple(map(tuple, merged.tolist()))))
            answer = fuse(it["description"], phrases)
            q = pool[random.Random(key).randrange(len(pool))]
            f.write(json.dumps({"id": it["id"], "image": it["image"], "question": q, "answer": answer, "key": key}) + "\n")
            f.flush()
    return time.process_time() - c0


def _measure(measure, run, fresh, tmp_path_factory) -> None:
    root, items = workload(tmp_path_factory)
    run(root, items[:50], fresh())  # warm-up on a few records (Numba kernels, imports)
    cpu: list[float] = []
    measure(GROUP, lambda out: cpu.append(run(root, items, out)), setup=lambda: ((fresh(),), {}), rounds=3, warmup=0)
    measure.info(samples_per_s_wall=round(N / measure.seconds), samples_per_cpu_s=round(N / min(cpu)),
                 cores=len(os.sched_getaffinity(0)), load_average=round(os.getloadavg()[0], 1))


def test_giqa_run_local(measure, tmp_path, tmp_path_factory):
    outs = iter(range(10_000))
    _measure(measure, run_giqa, lambda: tmp_path / f"out{next(outs)}", tmp_path_factory)


def test_bare_loop(measure, tmp_path, tmp_path_factory):
    outs = iter(range(10_000))
    _measure(measure, run_bare, lambda: tmp_path / f"bare{next(outs)}.jsonl", tmp_path_factory)


if __name__ == "__main__":
    import pytest

    sys.exit(pytest.main([__file__, "-p", "no:cacheprovider", *sys.argv[1:]]))
