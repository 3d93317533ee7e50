"""Grounding DINO detection: giqa's ``detect()`` against its peers, its time breakdown, and bf16 vs fp32.

Inputs: the sample photos in ``examples/sample`` (repeated to ``--images``) with their
hand-written tag phrases (4-6 per image); the issue's pessimistic load by default (thresholds
0, at most 3 boxes per phrase). Models: ``--config tiny`` (giqa's tiny test model: 20 queries),
``cpu`` (Grounding DINO-T: 900 queries, 6 + 6 layers, images at shortest edge 320) or
``paper`` (Grounding DINO base at 800 x 1333), random weights (benchmarks/paper_configs.py).

Sections (``--sections``, comma-separated):

- ``modes``: batched ``detect()`` against one image and one phrase per forward pass, and the
  peer: transformers' own recipe per (image, phrase) (``processor(images, text)`` ->
  ``model`` -> ``post_process_grounded_object_detection``).
- ``overhead``: ``detect()`` against **the model alone** on the same passes, preprocessed
  beforehand (the issue's target: within 10% at the same precision), and where ``detect()``'s
  time goes: inside the model's forward, in the image processor (in prefetch threads when
  ``prefetch > 0``, so off the critical path), and the rest (planning, stacking,
  post-processing, building detections).
- ``dtype``: weights in bfloat16, and float32 weights under bfloat16 autocast, against float32
  with the same weights: IoU of the boxes (every query's box, and each phrase's best box),
  NaN outputs, and the speed of each.
- ``instant``: ``detect()`` around an instant stand-in for the model (outputs of the real
  shapes, ``--queries`` 900 x 256 text positions, made at once): giqa's own time per image,
  free of the model's noise (not in the default sections).

Run (repository root): ``.venv/bin/python benchmarks/bench_detection.py [--config tiny]
[--sections modes,overhead,dtype] [--images 12] [--repeats 5] [--threads 1]``. Prints
Markdown tables: medians of ``--repeats`` runs after a warm-up, contenders interleaved.
Works against older giqa versions too (settings they lack are left out), for before/after.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample"


def sample_workload(n: int, root: Path = SAMPLE):
    """``(images, phrases, names)``: the sample photos repeated to ``n``, with their tag phrases."""
    from PIL import Image

    tags = {}
    for line in (root / "tags.jsonl").read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            tags[item["image"]] = [t["phrase"] for t in item["tags"]]
    names = sorted(tags)
    decoded = {name: Image.open(root / name).convert("RGB") for name in names}
    picked = [names[i % len(names)] for i in range(n)]
    return [decoded[p] for p in picked], [tags[p] for p in picked], picked


def make_detector(path, **settings):
    """A loaded GroundingDinoDetector; settings this giqa version lacks are dropped."""
    from giqa.models.grounding_dino import GroundingDinoDetector, GroundingDinoSettings

    known = GroundingDinoSettings.model_fields
    return GroundingDinoDetector(model_id=str(path), random_weights=True,
                                 **{k: v for k, v in settings.items() if k in known}).load()


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_all(fns: dict, repeats: int, device) -> dict:
    """Median wall time of each function, run round-robin after one warm-up each."""
    for fn in fns.values():
        fn()
    runs: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            runs[name].append(time.perf_counter() - t0)
    return {name: statistics.median(r) for name, r in runs.items()}


# -- the model alone on preprocessed passes --------------------------------------------------
def preprocessed_passes(det, images, phrases, batch_size):
    """The model inputs of ``detect()``'s passes, built beforehand (images grouped by shape)."""
    import torch

    ip, tok = det.processor.image_processor, det.processor.tokenizer
    by_shape: dict = collections.defaultdict(list)
    for i, im in enumerate(images):
        pixels = ip(images=[im], return_tensors="pt")["pixel_values"][0]
        by_shape[tuple(pixels.shape)].append((pixels, ". ".join(p.replace(".", " ").replace("?", " ") for p in phrases[i]) + "."))
    passes = []
    for group in by_shape.values():
        for k in range(0, len(group), batch_size):
            chunk = group[k:k + batch_size]
            text = tok([t for _, t in chunk], padding=True, return_tensors="pt", return_token_type_ids=True)
            pv = torch.stack([p for p, _ in chunk])
            inputs = {**text, "pixel_values": pv, "pixel_mask": torch.ones(pv.shape[0], *pv.shape[2:], dtype=torch.long)}
            inputs = {k: v.to(det.device) for k, v in inputs.items()}
            inputs["pixel_values"] = inputs["pixel_values"].to(det.dtype)
            passes.append(inputs)
    return passes


def run_model_alone(det, passes):
    """The detector's model on prepared passes, under the detector's autocast setting if any."""
    import contextlib

    import torch

    autocast = getattr(det.settings, "autocast", None)
    ctx = torch.autocast(det.device.type, dtype=getattr(torch, autocast)) if autocast else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        return [det.model(**inputs) for inputs in passes]


# The precisions compared: weights' dtype, and autocast where this giqa version has it.
PRECISIONS = {
    "float32": {"dtype": "float32"},
    "bfloat16": {"dtype": "bfloat16"},
    "bf16-autocast": {"dtype": "float32", "autocast": "bfloat16"},
}


# -- where detect()'s time goes -----------------------------------------------------------------
class PhaseClock:
    """Seconds spent inside wrapped callables, per name; ``name (other threads)`` off the main thread."""

    def __init__(self) -> None:
        self.seconds: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def wrap(self, obj, attr: str, name: str) -> None:
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                where = "" if threading.current_thread() is threading.main_thread() else " (other threads)"
                with self._lock:
                    self.seconds[name + where] += time.perf_counter() - t0

        setattr(obj, attr, timed)


def breakdown(det, images, phrases, repeats):
    """Median wall of ``detect()`` and per-phase seconds, found by wrapping the pieces it calls:
    the model's forward, the image processor, the tokenizer, and (where this giqa version has
    them) pixel stacking and post-processing."""
    import giqa.models.grounding_dino as gd

    clock = PhaseClock()
    clock.wrap(det.model, "forward", "model forward")
    # instance attributes: __call__ itself is looked up on the type, its callees on the instance
    clock.wrap(det.processor.image_processor, "preprocess", "image processor")
    tok = det.processor.tokenizer
    clock.wrap(tok, next(a for a in ("_encode_plus", "_call_one", "encode_plus") if hasattr(tok, a)), "tokenizer")
    for owner, attr, name in [(det, "_stack", "stacking pixels"), (gd, "select_detections", "post-processing"),
                              (det, "_boxes", "post-processing"), (det, "_collect", "building Detection objects")]:
        if hasattr(owner, attr):
            clock.wrap(owner, attr, name)
    det.detect(images, phrases)
    walls, phases = [], []
    for _ in range(repeats):
        clock.seconds.clear()
        sync(det.device)
        t0 = time.perf_counter()
        det.detect(images, phrases)
        sync(det.device)
        walls.append(time.perf_counter() - t0)
        phases.append(dict(clock.seconds))
    best = min(range(repeats), key=lambda r: abs(walls[r] - statistics.median(walls)))
    return walls[best], phases[best]


def print_breakdown(wall, phases, n, label) -> None:
    """The main thread's wall split into the wrapped phases and the rest; other threads' time apart."""
    main = {k: v for k, v in phases.items() if not k.endswith("(other threads)")}
    rest = wall - sum(main.values())
    print(f"\n#### Where the {wall * 1e3:.0f} ms of {label} go ({n} images)\n")
    print("| phase | ms | ms / image | share of wall |\n|---|---:|---:|---:|")
    rows = sorted(main.items(), key=lambda kv: -kv[1]) + [("rest: planning, prompts, Python around the calls", rest)]
    rows += [(f"{k}, overlapped (not in the wall)", v) for k, v in phases.items() if k.endswith("(other threads)")]
    for name, sec in rows:
        print(f"| {name} | {sec * 1e3:.1f} | {sec / n * 1e3:.2f} | {sec / wall * 100:.1f}% |")


def section_overhead(det_args, images, phrases, args, models_dir):
    import torch

    from giqa.models.grounding_dino import GroundingDinoSettings

    n = len(images)
    if "prefetch" in GroundingDinoSettings.model_fields:
        dets = {f"giqa detect(), prefetch {k}": make_detector(models_dir, **{**det_args, "prefetch": k}) for k in (0, 2)}
    else:  # a giqa version before prefetching
        dets = {"giqa detect()": make_detector(models_dir, **det_args)}
    first = next(iter(dets.values()))
    passes = preprocessed_passes(first, images, phrases, first.settings.batch_size)
    contenders = {"model alone on preprocessed passes (peer)": lambda: run_model_alone(first, passes)}
    contenders.update({label: (lambda d=d: d.detect(images, phrases)) for label, d in dets.items()})
    times = time_all(contenders, args.repeats, first.device)
    peer = times["model alone on preprocessed passes (peer)"]
    print(f"\n#### detect() against the model alone ({len(passes)} passes, batch {first.settings.batch_size}, "
          f"{first.dtype}, {first.device})\n")
    print("| contender | seconds | images / s | time / model alone |\n|---|---:|---:|---:|")
    for label, t in times.items():
        print(f"| {label} | {t:.3f} | {n / t:.2f} | {t / peer:.3f} |")
    for label, d in dets.items():
        print_breakdown(*breakdown(d, images, phrases, args.repeats), n, label)
    del dets, first, passes
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class InstantModel:
    """Stands in for ``model.forward``: outputs of the real shapes at once, so that only giqa's own
    work is timed. Logits ``(B, queries, max_text_len)`` are random where the prompt has tokens and
    ``-inf`` past it (as the model masks them); boxes are random cxcywh."""

    def __init__(self, queries: int, max_text_len: int) -> None:
        self.queries, self.max_text_len, self._cache = queries, max_text_len, {}

    def __call__(self, input_ids=None, pixel_values=None, **kwargs):
        import types

        import torch

        b, t = input_ids.shape
        if (b, t) not in self._cache:
            gen = torch.Generator().manual_seed(b * 1000 + t)
            logits = torch.randn(b, self.queries, self.max_text_len, generator=gen) * 2
            logits[..., t:] = float("-inf")
            boxes = torch.rand(b, self.queries, 4, generator=gen) * 0.5 + 0.25
            self._cache[(b, t)] = (logits.to(pixel_values.device, pixel_values.dtype),
                                   boxes.to(pixel_values.device, pixel_values.dtype))
        logits, boxes = self._cache[(b, t)]
        return types.SimpleNamespace(logits=logits, pred_boxes=boxes, input_ids=input_ids)


def section_instant(det_args, images, phrases, args, models_dir):
    """detect() around an instant model: giqa's own time per image (preprocessing and the rest)."""
    from giqa.models.grounding_dino import GroundingDinoSettings

    det = make_detector(models_dir, **{**det_args, **({"prefetch": 0} if "prefetch" in GroundingDinoSettings.model_fields else {})})
    det.model.forward = InstantModel(args.queries, int(getattr(det.model.config, "max_text_len", 256)))
    print(f"\n#### giqa's own time: detect() around an instant model ({args.queries} queries x "
          f"{det.max_text_len} text positions, batch {det.settings.batch_size}, no prefetch threads)")
    print_breakdown(*breakdown(det, images, phrases, args.repeats), len(images), "detect() with an instant model")


# -- bf16 against fp32 -----------------------------------------------------------------------------
def box_ious(a, b):
    """Pairwise IoU ``(N, M)`` of two xyxy arrays; two equal zero-area boxes count as 1."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 1, 4), np.asarray(b, dtype=np.float64).reshape(1, -1, 4)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    same = np.all(a == b, axis=-1)
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), same.astype(np.float64))


def _xyxy(cxcywh):
    """Per image, the unclipped xyxy of the model's boxes ``(Q, 4)`` (the raw regression)."""
    import torch

    cx, cy, w, h = cxcywh.float().unbind(-1)
    return list(torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).cpu().numpy())


def dtype_drift(ref_outs, outs, ref_found, found):
    """IoU figures of a precision against float32: ``({label: array}, |score diff|, images with NaN)``.

    - every float32 query's box against the nearest box of the other run on the same image
      (the other precision may pick other encoder proposals, so query ``q`` need not be the
      same proposal in both);
    - the same query index in both (proposal selection and regression together);
    - each phrase's best box: float32's against the other's best, and against the nearest of
      the other's top 3 (``found`` None: ``detect()`` failed, no phrase figures).
    Images whose outputs hold NaN are left out and counted.
    """
    import numpy as np

    nearest, same, bad = [], [], 0
    for a, b in zip(ref_outs, outs):
        for qa, qb in zip(_xyxy(a.pred_boxes), _xyxy(b.pred_boxes)):
            if not (np.isfinite(qa).all() and np.isfinite(qb).all()):
                bad += 1
                continue
            m = box_ious(qa, qb)
            nearest.append(m.max(axis=1))
            same.append(np.diag(m))
    drift = {"every query's box, nearest box": np.concatenate(nearest) if nearest else np.zeros(0),
             "every query's box, same query index": np.concatenate(same) if same else np.zeros(0)}
    pairs = [(a, b) for pa, pb in zip(ref_found, found or []) for a, b in zip(pa, pb) if a and b]
    if pairs:
        drift["each phrase's best box, the other's best"] = np.asarray(
            [box_ious(a[0].box.as_tuple(), b[0].box.as_tuple())[0, 0] for a, b in pairs])
        drift["each phrase's best box, nearest of the other's top 3"] = np.asarray(
            [box_ious(a[0].box.as_tuple(), [d.box.as_tuple() for d in b]).max() for a, b in pairs])
    return drift, np.abs([a[0].score - b[0].score for a, b in pairs]), bad


def drift_table(name, drift, score_diff, bad, n_images) -> list[str]:
    import numpy as np

    lines = [f"\n{name} against float32, same weights{f': NaN outputs on {bad} of {n_images} images' if bad else ''}"]
    if any(len(v) for v in drift.values()):
        lines += ["", "| boxes compared | n | mean IoU | median | 5th percentile | share IoU >= 0.9 | share IoU >= 0.5 |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
    for label, v in drift.items():
        if len(v):
            lines.append(f"| {label} | {len(v)} | {v.mean():.4f} | {np.median(v):.4f} | {np.percentile(v, 5):.4f} | "
                         f"{(v >= 0.9).mean():.3f} | {(v >= 0.5).mean():.3f} |")
    if len(score_diff):
        lines.append(f"\nbest box's score: mean |difference| = {score_diff.mean():.4f}, max {score_diff.max():.4f}")
    return lines


def precision_runs(make, images, phrases, batch_size, variants):
    """Per precision: ``(detector, passes, model outputs, detections or the error)``, float32's weights for all."""
    runs, weights = {}, None
    for name in variants:
        det = make(PRECISIONS[name])
        if weights is None:
            weights = det.model.state_dict()
        else:
            det.model.load_state_dict(weights)  # the same weights (rounded for bfloat16)
        passes = preprocessed_passes(det, images, phrases, batch_size)
        try:
            found = det.detect(images, phrases)
        except Exception as exc:  # noqa: BLE001 - the finding is the failure (NaN in half precision)
            found = f"{type(exc).__name__}: {str(exc)[:120]}"
        runs[name] = (det, passes, run_model_alone(det, passes), found)
    return runs


def section_dtype(det_args, images, phrases, args, models_dir):
    from giqa.models.grounding_dino import GroundingDinoSettings

    variants = [v for v in PRECISIONS if "autocast" not in PRECISIONS[v] or "autocast" in GroundingDinoSettings.model_fields]
    runs = precision_runs(lambda opts: make_detector(models_dir, **{**det_args, **opts}), images, phrases,
                          det_args["batch_size"], variants)
    n = len(images)
    ref = runs["float32"]
    print(f"\n#### Precision against float32 ({n} images, {sum(map(len, phrases))} phrases, {ref[0].device})")
    for name, (det, passes, outs, found) in runs.items():
        if name != "float32":
            ok = found if isinstance(found, list) else None
            print("\n".join(drift_table(name, *dtype_drift(ref[2], outs, ref[3], ok), n)))
            if ok is None:
                print(f"\ndetect() failed: {found}")
    fns = {}
    for name, (det, passes, _, found) in runs.items():
        fns[f"model alone, {name}"] = lambda d=det, p=passes: run_model_alone(d, p)
        if isinstance(found, list):
            fns[f"giqa detect(), {name}"] = lambda d=det: d.detect(images, phrases)
    times = time_all(fns, args.repeats, ref[0].device)
    print("\n| contender | seconds | images / s | speed-up vs float32 |\n|---|---:|---:|---:|")
    for label, t in times.items():
        base = times[label.rsplit(", ", 1)[0] + ", float32"]
        print(f"| {label} | {t:.3f} | {n / t:.2f} | {base / t:.2f}x |")


# -- batching modes against the transformers recipe ---------------------------------------------
def section_modes(det_args, images, phrases, args, models_dir):
    import torch

    n_pairs = sum(len(p) for p in phrases)
    batched = make_detector(models_dir, **det_args)
    padded = make_detector(models_dir, **{**det_args, "pad_batches": True})
    per_image = make_detector(models_dir, **{**det_args, "batch_size": 1})
    proc, model = batched.processor, batched.model

    def transformers_one_by_one():
        for im, ps in zip(images, phrases):
            for p in ps:
                inputs = proc(images=im, text=p + ".", return_tensors="pt").to(batched.device)
                with torch.inference_mode():
                    outputs = model(**inputs)
                proc.post_process_grounded_object_detection(outputs, inputs["input_ids"], threshold=0.0,
                                                            text_threshold=0.0, target_sizes=[im.size[::-1]])

    modes = {
        "transformers one-by-one (peer)": transformers_one_by_one,
        "giqa one-by-one": lambda: [batched.detect([im], [[p]]) for im, ps in zip(images, phrases) for p in ps],
        "giqa phrases batched, 1 image / pass": lambda: per_image.detect(images, phrases),
        "giqa batched (grouped by size)": lambda: batched.detect(images, phrases),
        "giqa batched, padded": lambda: padded.detect(images, phrases),
    }
    times = time_all(modes, args.repeats, batched.device)
    peer = times["transformers one-by-one (peer)"]
    print(f"\n#### Batching: {len(images)} images x {n_pairs / len(images):.1f} phrases ({n_pairs} pairs)\n")
    print("| mode | time (ms) | pairs / s | speed-up vs peer |\n|---|---:|---:|---:|")
    for name in modes:
        print(f"| {name} | {times[name] * 1e3:.1f} | {n_pairs / times[name]:.1f} | {peer / times[name]:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=("tiny", "cpu", "paper"), default="tiny")
    ap.add_argument("--sections", default="modes,overhead,dtype")
    ap.add_argument("--images", type=int, default=None, help="images (default: 24 tiny, 6 cpu, 48 paper)")
    ap.add_argument("--batch-size", type=int, default=None, help="images per pass (default 8; 4 on cpu)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared machine)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--bert-vocab", default=None, help="bert-base-uncased vocab.txt (cpu/paper configs)")
    ap.add_argument("--queries", type=int, default=900, help="queries of the instant model (section instant)")
    args = ap.parse_args()

    import torch
    import transformers

    import paper_configs as pc

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    n = args.images or {"tiny": 24, "cpu": 6, "paper": 48}[args.config]
    images, phrases, _ = sample_workload(n)
    det_args = dict(box_threshold=0.0, text_threshold=0.0, max_detections=3, device=args.device,
                    batch_size=args.batch_size or (4 if args.config == "cpu" else 8))
    print(f"Grounding DINO ({args.config} config, random weights), {n} sample images, "
          f"{sum(map(len, phrases))} phrases, thresholds 0, <= 3 boxes per phrase; median of {args.repeats}; "
          f"torch threads {args.threads}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    sections = {"modes": section_modes, "overhead": section_overhead, "dtype": section_dtype,
                "instant": section_instant}
    with tempfile.TemporaryDirectory() as tmp, pc.random_init():
        path = pc.build_grounding_dino(Path(tmp) / "gd", args.config, bert_vocab=pc.bert_vocab_file(args.bert_vocab))
        for name in args.sections.split(","):
            sections[name.strip()](det_args, images, phrases, args, path)
    print(f"\n(load average at the end: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
