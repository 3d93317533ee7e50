"""Batched Grounding DINO detection against one image and one phrase per forward pass.

Same tiny random-weight Grounding DINO (giqa.models.tiny), same inputs (scikit-image photos,
several describing phrases per image), same process. Modes:

- ``giqa batched``: ``GroundingDinoDetector.detect(images, phrases)``: all phrases of an image
  in one pass, up to ``batch_size`` images per pass (images grouped by preprocessed size, so
  results equal one-image passes).
- ``giqa batched, padded``: same with ``pad_batches=True`` (mixed sizes in one pass).
- ``giqa one-by-one``: the same detector called once per (image, phrase).
- ``giqa phrases batched, 1 image / pass``: ``batch_size=1``: all phrases of an image in one
  pass, one image per pass (separates the two kinds of batching).
- ``transformers one-by-one`` (the peer): the plain transformers recipe per (image, phrase):
  ``processor(images=image, text=phrase)`` -> ``model(**inputs)`` ->
  ``post_process_grounded_object_detection``.

Run: ``.venv/bin/python benchmarks/bench_detection.py [--images 8] [--phrases 4] [--repeats 5]``
Prints a Markdown table (median wall time of ``--repeats`` runs after one warm-up, modes interleaved).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PHRASES = [
    "the astronaut wearing a white suit",
    "the blurry background",
    "a cup of coffee on a saucer",
    "the overexposed window",
    "a cat lying on a blanket",
    "the dark shadows",
    "the rocket on the launch pad",
    "the clear blue sky",
]


def _images(n: int):
    import skimage.data as data
    from PIL import Image, ImageOps

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    out = []
    for i in range(n):
        im = Image.fromarray(photos[i % len(photos)])
        out.append(ImageOps.mirror(im) if (i // len(photos)) % 2 else im)
    return out


def _time_all(fns: dict, repeats: int) -> dict:
    """Median wall time of each function; runs interleaved round-robin so that load from other
    processes hits every mode alike."""
    for fn in fns.values():
        fn()  # warm-up
    runs: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - t0)
    return {name: statistics.median(r) for name, r in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--phrases", type=int, default=4, help="phrases per image")
    ap.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable timings on a shared machine)")
    args = ap.parse_args()

    import torch
    import transformers

    from giqa.models.grounding_dino import GroundingDinoDetector
    from giqa.models.tiny import build_tiny_grounding_dino

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    images = _images(args.images)
    phrases = [[PHRASES[(i + k) % len(PHRASES)] for k in range(args.phrases)] for i in range(args.images)]
    n_pairs = args.images * args.phrases

    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_grounding_dino(Path(tmp) / "gdino")
        det = GroundingDinoDetector(model_id=str(path), batch_size=args.batch_size).load()
        padded = GroundingDinoDetector(model_id=str(path), batch_size=args.batch_size, pad_batches=True).load()
        proc = transformers.AutoProcessor.from_pretrained(path)
        model = transformers.GroundingDinoForObjectDetection.from_pretrained(path).eval()

        def giqa_batched():
            return det.detect(images, phrases)

        def giqa_padded():
            return padded.detect(images, phrases)

        def giqa_one_by_one():
            return [[det.detect([im], [[p]])[0][0] for p in ps] for im, ps in zip(images, phrases)]

        def transformers_one_by_one():
            out = []
            for im, ps in zip(images, phrases):
                for p in ps:
                    inputs = proc(images=im, text=p + ".", return_tensors="pt")
                    with torch.inference_mode():
                        outputs = model(**inputs)
                    out.append(
                        proc.post_process_grounded_object_detection(
                            outputs, inputs["input_ids"], threshold=0.35, text_threshold=0.25,
                            target_sizes=[im.size[::-1]],
                        )
                    )
            return out

        per_image = GroundingDinoDetector(model_id=str(path), batch_size=1).load()

        def giqa_phrases_batched():
            return per_image.detect(images, phrases)

        res = giqa_batched()
        if [len(r) for r in res] != [len(p) for p in phrases]:
            raise SystemExit("batched detection returned the wrong structure")

        modes = [
            ("transformers one-by-one (peer)", transformers_one_by_one, n_pairs),
            ("giqa one-by-one", giqa_one_by_one, n_pairs),
            ("giqa phrases batched, 1 image / pass", giqa_phrases_batched, None),
            ("giqa batched (grouped by size)", giqa_batched, None),
            ("giqa batched, padded", giqa_padded, None),
        ]
        times = _time_all({name: fn for name, fn, _ in modes}, args.repeats)
        passes = {
            "transformers one-by-one (peer)": n_pairs,
            "giqa one-by-one": n_pairs,
            "giqa phrases batched, 1 image / pass": _passes(per_image, images, phrases),
            "giqa batched (grouped by size)": _passes(det, images, phrases),
            "giqa batched, padded": _passes(padded, images, phrases),
        }

    peer = times["transformers one-by-one (peer)"]
    print(f"Grounding DINO detection, tiny random-weight model, {args.images} images x {args.phrases} phrases "
          f"({n_pairs} image-phrase pairs), batch size {args.batch_size}, median of {args.repeats}, "
          f"torch threads {args.threads}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}\n")
    print("| mode | forward passes | time (ms) | pairs / s | speed-up vs peer |")
    print("|---|---:|---:|---:|---:|")
    for name, _, _ in modes:
        t = times[name]
        print(f"| {name} | {passes[name]} | {t * 1e3:.1f} | {n_pairs / t:.1f} | {peer / t:.2f}x |")


def _passes(det, images, phrases) -> int:
    jobs = det._jobs(phrases)
    pixels = det._pixels(images, sorted({i for i, _, _ in jobs}))
    groups = det._groups(jobs, pixels)
    size = det.settings.batch_size
    return sum((len(g) + size - 1) // size for g in groups)


if __name__ == "__main__":
    main()
