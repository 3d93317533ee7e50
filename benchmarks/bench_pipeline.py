"""Library overhead of the DES pipeline with instant in-memory backends.

    .venv/bin/python benchmarks/bench_pipeline.py [--n 4000] [--repeat 3]

Both contenders do the same work per record on the same tiny PNGs (16 x 12 px, distinct bytes):
read + hash the image bytes, decode it, get tags from the LLM callable, detections from the
detector callable (two phrases, one with two boxes), P(yes) from the filter callable on crops,
Box-Merge, fusion with ``giqa.text.fuse``, a question draw, one JSON line per sample written
and flushed.

- ``giqa run_local``: ``DesPipeline`` through the in-process runner (validation with pydantic,
  Sample objects, provenance, resume bookkeeping, error isolation, progress off).
- ``bare loop``: the same calls in a plain loop with ``json.dumps`` of a dict (no validation,
  no resume, no error handling): the floor the library's bookkeeping is measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
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


def backends():
    return dict(
        llm=CallableLLM(lambda m: TAGS, model_id="instant-llm"),
        detector=CallableDetector(lambda im, p: BOXES.get(p, []), model_id="instant-detector"),
        quality_filter=CallableQualityFilter(lambda c, q: 0.9, model_id="instant-filter"),
    )


def make_images(root: Path, n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        arr = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"{i}.png")
        items.append({"image": f"{i}.png", "description": DESC, "id": f"s{i}"})
    return items


def run_giqa(root: Path, items: list[dict], out: Path) -> float:
    from giqa.pipeline.des import clear_image_cache

    clear_image_cache()  # every run decodes its images again, as the bare loop does
    pipe = DesPipeline(**backends(), config=DesConfig(root=str(root)))
    t0, c0 = time.perf_counter(), time.process_time()
    inputs = pipe.make_inputs(items)
    summary = run_local(pipe, inputs, out, batch_size=256, progress=False)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    if summary.succeeded != len(items):
        raise SystemExit(f"giqa run failed: {summary}")
    return dt, dc


def run_bare(root: Path, items: list[dict], out: Path) -> float:
    import hashlib

    from giqa import prompts
    from giqa.geometry import box_merge
    from giqa.text import fuse
    from giqa.types import GroundedPhrase

    b = backends()
    pool = prompts.question_pool()
    t0, c0 = time.perf_counter(), time.process_time()
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
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "img"
        root.mkdir()
        items = make_images(root, args.n)
        # warm-up (Numba kernels, imports) on a few records
        run_giqa(root, items[:50], Path(tmp) / "warm")
        run_bare(root, items[:50], Path(tmp) / "warm.jsonl")
        g, bare = [], []
        for r in range(args.repeat):
            g.append(run_giqa(root, items, Path(tmp) / f"out{r}"))
            bare.append(run_bare(root, items, Path(tmp) / f"bare{r}.jsonl"))
    (g_wall, g_cpu), (b_wall, b_cpu) = min(g), min(bare)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    n = args.n
    print(f"DES pipeline overhead, instant backends, {n} records, best of {args.repeat}, {cores} cores "
          f"(1-min load average at the end: {load:.1f}), Python {sys.version.split()[0]}\n")
    print("| contender | wall s | samples / s (wall) | CPU s | samples / CPU-s | time ratio vs bare loop |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| giqa `run_local(DesPipeline)` | {g_wall:.3f} | {n / g_wall:,.0f} | {g_cpu:.3f} | {n / g_cpu:,.0f} "
          f"| {g_cpu / b_cpu:.2f}x (CPU) |")
    print(f"| bare loop (same calls, no bookkeeping) | {b_wall:.3f} | {n / b_wall:,.0f} | {b_cpu:.3f} | {n / b_cpu:,.0f} "
          "| 1.00x |")
    print(f"\ntarget >= 2,000 samples/s (one process): wall {n / g_wall:,.0f}/s, per CPU-second {n / g_cpu:,.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
