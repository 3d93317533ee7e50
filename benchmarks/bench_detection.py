"""Grounding DINO detection: giqa's ``detect()`` against its peers, its time breakdown, bf16 vs fp32 (pytest-benchmark).

Inputs: the sample photos in ``examples/sample`` (repeated to ``--detection-images``) with their
hand-written tag phrases (4-6 per image); the issue's pessimistic load (thresholds 0, at most 3
boxes per phrase). Models (``--detection-config``): ``tiny`` (giqa's tiny test model: 20
queries; the default), ``cpu`` (Grounding DINO-T: 900 queries, 6 + 6 layers, images at shortest
edge 320) or ``paper`` (Grounding DINO base at 800 x 1333), random weights
(benchmarks/paper_configs.py). Torch on 1 thread; a GPU when there is one.

Benchmark groups (select with ``-k``):

- ``modes``: batched ``detect()`` against one image and one phrase per forward pass, and the
  peer: transformers' own recipe per (image, phrase) (``processor(images, text)`` ->
  ``model`` -> ``post_process_grounded_object_detection``).
- ``overhead``: ``detect()`` (prefetch 0 and 2) against **the model alone** on the same passes,
  preprocessed beforehand (the issue's target: within 10% at the same precision); where
  ``detect()``'s time goes (model forward, image processor, in prefetch threads when
  ``prefetch > 0``, the rest) is in ``extra_info`` (ms per image).
- ``precision``: weights in bfloat16, and float32 weights under bfloat16 autocast, against
  float32 with the same weights: the model alone and ``detect()`` in each; ``extra_info`` has
  the IoU of the boxes against float32's (every query's box, and each phrase's best box) and
  the images with NaN outputs.
- ``instant``: ``detect()`` around an instant stand-in for the model (outputs of the real
  shapes, 900 queries x 256 text positions, made at once): giqa's own time per image.

Run (repository root)::

    .venv/bin/python -m pytest benchmarks/bench_detection.py                                 # tiny
    .venv/bin/python -m pytest benchmarks/bench_detection.py --detection-config cpu -k overhead \
        --detection-images 6 --bench-rounds 2

``benchmarks/bench_paper_scale.py`` imports this module's helpers (``sample_workload``,
``PhaseClock``, ``preprocessed_passes``, ``run_model_alone``, ``PRECISIONS``, ``dtype_drift``,
``drift_table``), so it imports nothing from pytest at module level. Results recorded in
``benchmarks/results/detection.md``.
"""

from __future__ import annotations

import collections
import json
import os
import statistics
import sys
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


def breakdown_info(wall, phases, n) -> dict:
    """The main thread's wall split into the wrapped phases and the rest, in ms per image (share
    of the wall); other threads' time apart (overlapped: not in the wall)."""
    main = {k: v for k, v in phases.items() if not k.endswith("(other threads)")}
    rows = {**main, "rest (planning, prompts, Python around the calls)": wall - sum(main.values())}
    rows.update({f"{k}, overlapped": v for k, v in phases.items() if k.endswith("(other threads)")})
    return {f"{name} ms/image": f"{sec / n * 1e3:.2f} ({sec / wall:.0%})" for name, sec in rows.items()}


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


# -- the benchmarks ------------------------------------------------------------------------------
_WORK: dict = {}


def workload(request, tmp_path_factory) -> dict:
    """The images, phrases, model directory and detector settings of ``--detection-config``
    (made once per session; torch on 1 thread)."""
    config = request.config.getoption("--detection-config")
    if _WORK.get("config") != config:
        import torch
        import transformers

        import paper_configs as pc

        torch.set_num_threads(1)  # stable on a shared machine
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        n = request.config.getoption("--detection-images") or {"tiny": 24, "cpu": 6, "paper": 48}[config]
        images, phrases, _ = sample_workload(n)
        path = pc.build_grounding_dino(tmp_path_factory.mktemp("gd") / "gd", config,
                                       bert_vocab=pc.bert_vocab_file(None))
        det_args = dict(box_threshold=0.0, text_threshold=0.0, max_detections=3, device="auto",
                        batch_size=4 if config == "cpu" else 8)
        _WORK.clear()
        _WORK.update(config=config, images=images, phrases=phrases, path=path, det_args=det_args,
                     pairs=sum(map(len, phrases)), random_init=pc.random_init)
    return _WORK


def detector(work, **settings):
    """A loaded detector of the workload's model (random weights) with ``settings`` over its defaults."""
    with work["random_init"]():
        return make_detector(work["path"], **{**work["det_args"], **settings})


def _timed(measure, group: str, fn, device, rounds: int) -> None:
    def run():
        fn()
        sync(device)

    measure(group, run, rounds=rounds)


def _modes_group(work) -> str:
    n = len(work["images"])
    return (f"detection modes ({work['config']}): {n} images x {work['pairs'] / n:.1f} phrases "
            f"({work['pairs']} pairs), one process")


def _pairs_per_s(measure, work) -> None:
    measure.info(pairs_per_s=round(work["pairs"] / measure.seconds, 1))


def test_modes_transformers_one_by_one(measure, request, tmp_path_factory):
    """The peer: transformers' own recipe per (image, phrase)."""
    import torch

    work = workload(request, tmp_path_factory)
    det = detector(work)
    proc, model = det.processor, det.model

    def one_by_one():
        for im, ps in zip(work["images"], work["phrases"]):
            for p in ps:
                inputs = proc(images=im, text=p + ".", return_tensors="pt").to(det.device)
                with torch.inference_mode():
                    outputs = model(**inputs)
                proc.post_process_grounded_object_detection(outputs, inputs["input_ids"], threshold=0.0,
                                                            text_threshold=0.0, target_sizes=[im.size[::-1]])

    _timed(measure, _modes_group(work), one_by_one, det.device, rounds=3)
    _pairs_per_s(measure, work)


def test_modes_giqa_one_by_one(measure, request, tmp_path_factory):
    work = workload(request, tmp_path_factory)
    det = detector(work)
    _timed(measure, _modes_group(work),
           lambda: [det.detect([im], [[p]]) for im, ps in zip(work["images"], work["phrases"]) for p in ps],
           det.device, rounds=3)
    _pairs_per_s(measure, work)


def test_modes_giqa_phrases_batched_1_image_per_pass(measure, request, tmp_path_factory):
    work = workload(request, tmp_path_factory)
    det = detector(work, batch_size=1)
    _timed(measure, _modes_group(work), lambda: det.detect(work["images"], work["phrases"]), det.device, rounds=5)
    _pairs_per_s(measure, work)


def test_modes_giqa_batched_grouped_by_size(measure, request, tmp_path_factory):
    work = workload(request, tmp_path_factory)
    det = detector(work)
    _timed(measure, _modes_group(work), lambda: det.detect(work["images"], work["phrases"]), det.device, rounds=5)
    _pairs_per_s(measure, work)


def test_modes_giqa_batched_padded(measure, request, tmp_path_factory):
    work = workload(request, tmp_path_factory)
    det = detector(work, pad_batches=True)
    _timed(measure, _modes_group(work), lambda: det.detect(work["images"], work["phrases"]), det.device, rounds=5)
    _pairs_per_s(measure, work)


def _overhead_group(work) -> str:
    return (f"detect() vs the model alone ({work['config']}, {len(work['images'])} images, batch "
            f"{work['det_args']['batch_size']}, float32; target: within 10%)")


def test_overhead_model_alone_on_preprocessed_passes(measure, request, tmp_path_factory):
    work = workload(request, tmp_path_factory)
    det = detector(work)
    passes = preprocessed_passes(det, work["images"], work["phrases"], det.settings.batch_size)
    _timed(measure, _overhead_group(work), lambda: run_model_alone(det, passes), det.device, rounds=5)
    measure.info(passes=len(passes), images_per_s=round(len(work["images"]) / measure.seconds, 2))


def test_overhead_giqa_detect(measure, request, tmp_path_factory, prefetch):
    work = workload(request, tmp_path_factory)
    det = detector(work, prefetch=prefetch)
    images, phrases = work["images"], work["phrases"]
    _timed(measure, _overhead_group(work), lambda: det.detect(images, phrases), det.device, rounds=5)
    measure.info(images_per_s=round(len(images) / measure.seconds, 2),
                 **breakdown_info(*breakdown(det, images, phrases, 3), len(images)))


_PRECISION_RUNS: dict = {}


def precision(work, name: str):
    """``(detector, passes, model outputs, detections or the error)`` of precision ``name``
    with float32's weights (rounded), made once per session for every precision."""
    from giqa.models.grounding_dino import GroundingDinoSettings

    if _PRECISION_RUNS.get("config") != work["config"]:
        variants = [v for v in PRECISIONS
                    if "autocast" not in PRECISIONS[v] or "autocast" in GroundingDinoSettings.model_fields]
        with work["random_init"]():
            runs = precision_runs(lambda opts: make_detector(work["path"], **{**work["det_args"], **opts}),
                                  work["images"], work["phrases"], work["det_args"]["batch_size"], variants)
        _PRECISION_RUNS.clear()
        _PRECISION_RUNS.update(config=work["config"], runs=runs)
    return _PRECISION_RUNS["runs"][name]


def _drift_info(work, name: str) -> dict:
    """IoU of ``name``'s boxes against float32's: mean and share >= 0.9 per comparison."""
    if name == "float32":
        return {}
    ref, (_, _, outs, found) = precision(work, "float32"), precision(work, name)
    drift, score_diff, bad = dtype_drift(ref[2], outs, ref[3], found if isinstance(found, list) else None)
    info = {f"{label}: mean IoU, share >= 0.9": f"{v.mean():.4f}, {(v >= 0.9).mean():.3f}"
            for label, v in drift.items() if len(v)}
    if bad:
        info["images with NaN outputs"] = f"{bad} of {len(work['images'])}"
    if len(score_diff):
        info["best box's score, mean |difference|"] = f"{score_diff.mean():.4f}"
    return info


def test_precision_model_alone(measure, request, tmp_path_factory, precision_name):
    work = workload(request, tmp_path_factory)
    det, passes, _, _ = precision(work, precision_name)
    _timed(measure, f"precision ({work['config']}): the model alone, same weights", lambda: run_model_alone(det, passes),
           det.device, rounds=5)
    measure.info(**_drift_info(work, precision_name))


def test_precision_giqa_detect(measure, request, tmp_path_factory, precision_name):
    work = workload(request, tmp_path_factory)
    det, _, _, found = precision(work, precision_name)
    if not isinstance(found, list):
        import pytest

        pytest.skip(f"detect() failed in {precision_name}: {found}")
    _timed(measure, f"precision ({work['config']}): giqa detect(), same weights",
           lambda: det.detect(work["images"], work["phrases"]), det.device, rounds=5)


def test_instant_giqa_detect(measure, request, tmp_path_factory):
    """detect() around an instant model: giqa's own time per image (no prefetch threads)."""
    work = workload(request, tmp_path_factory)
    det = detector(work, prefetch=0)
    det.model.forward = InstantModel(900, int(getattr(det.model.config, "max_text_len", 256)))
    images, phrases = work["images"], work["phrases"]
    _timed(measure, f"giqa's own time: detect() around an instant model ({work['config']}, 900 queries x "
                    f"{det.max_text_len} text positions)", lambda: det.detect(images, phrases), det.device, rounds=7)
    measure.info(ms_per_image=f"{measure.seconds / len(images) * 1e3:.2f}",
                 **breakdown_info(*breakdown(det, images, phrases, 3), len(images)))


def pytest_generate_tests(metafunc):
    if "prefetch" in metafunc.fixturenames:
        metafunc.parametrize("prefetch", [0, 2], ids=["prefetch0", "prefetch2"])
    if "precision_name" in metafunc.fixturenames:
        metafunc.parametrize("precision_name", list(PRECISIONS))


if __name__ == "__main__":
    import pytest

    sys.exit(pytest.main([__file__, "-p", "no:cacheprovider", *sys.argv[1:]]))
