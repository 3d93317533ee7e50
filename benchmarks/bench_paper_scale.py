"""Paper-scale throughput of giqa's real backends and the DES pipeline, random weights, no download.

Builds the paper's architectures from their configs (benchmarks/paper_configs.py: Grounding DINO
base, LLaVA-1.5-7B as the IQA-Filter, Llama-3-8B) with random weights directly on the device
(``from_config`` under ``torch.device("cuda")``), loads them through giqa's own backends
(``giqa.models.create``), and runs them on the sample images (examples/sample, repeated to
``--images``, 4-6 tagged phrases each) under the issue's pessimistic load: detector thresholds
0 and at most 3 boxes per phrase, so the filter runs on every phrase. Sections:

- ``detector``: ``detect()`` against the model alone on the same passes, preprocessed
  beforehand (images/s; the target: within 10%), in float32, float32 weights under bfloat16
  autocast, and weights cast to bfloat16, all with the same weights; then how far each moves
  the boxes from float32 (IoU; NaN outputs counted);
- ``filter``: ``p_yes`` on the detector's crops (crops/s) against plain passes of the same
  crops in their given order through the processor (the filter before issue 13's planning:
  no sorting, no distinct-crop or shared-prefix reuse, preprocessing inline), with the largest
  difference in P(Yes) between the two; the same crops each made distinct (the random-weight
  detector's boxes repeat across phrases, a trained one's mostly do not); then three questions
  per crop (the case the shared prefix is for); "LM positions" counts the positions the
  language model ran;
- ``vlm``: ``LlavaVLM.answer`` on distinct crops with prompts of three lengths (answers/s)
  against plain batches in the given order through the processor, and whether the greedy
  answers are identical;
- ``llm``: ``generate`` on 32 tag-extraction conversations (new tokens/s);
- ``des``: ``DesPipeline`` through ``run_local`` (samples/s) with per-stage seconds measured
  from outside (the backends' calls are timed by thin wrappers).

For each it prints seconds, the throughput, the **model share** (time inside the models'
``forward``, from CUDA events on a GPU, so the GPU's busy share; wall-clock on a CPU), the GPU
utilisation sampled with ``torch.cuda.utilization`` where NVML is present, and peak memory.
Weights are random: the figures measure speed, not quality.

Scales: ``--scale paper`` (the default with CUDA) or ``--scale cpu`` (the default without):
the same code on Grounding DINO-T at shortest edge 320, a small LLaVA and a 4-layer Llama
(see paper_configs.py), so a 2-core CPU finishes in minutes. On a CPU the detector's
preprocessing runs in prefetch threads beside the model: the detect stage's wall then stays
close to its model time.

Run (repository root)::

    .venv/bin/python benchmarks/bench_paper_scale.py [--scale cpu|paper] [--images 48]
        [--sections detector,filter,vlm,llm,des] [--json out.json]

On a GPU machine without giqa's dependencies, see benchmarks/RESULTS.md ("Paper-scale
throughput") for the one command to run, with the wheels to carry.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_detection import (  # noqa: E402
    PRECISIONS,
    PhaseClock,
    drift_table,
    dtype_drift,
    preprocessed_passes,
    run_model_alone,
    sample_workload,
)

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample"


# -- measuring from outside ------------------------------------------------------------------------
class ForwardMeter:
    """Time inside ``model.forward`` (CUDA events on a GPU: device time; else wall) and tokens seen."""

    def __init__(self, model) -> None:
        import torch

        self.cuda = next(model.parameters()).device.type == "cuda"
        self._spans: list = []
        self._tokens: list = []
        self._positions = 0
        self.calls = 0
        forward = model.forward

        def timed(*args, **kwargs):
            mask = kwargs.get("attention_mask")
            if mask is not None:
                self._tokens.append(mask.sum())  # a tensor: no sync here
            ids = kwargs.get("input_ids")
            if ids is not None:
                self._positions += ids.numel()
            self.calls += 1
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = forward(*args, **kwargs)
                end.record()
                self._spans.append((start, end))
                return out
            t0 = time.perf_counter()
            out = forward(*args, **kwargs)
            self._spans.append(time.perf_counter() - t0)
            return out

        model.forward = functools.wraps(forward)(timed)  # generate() reads forward's signature

    def reset(self) -> None:
        self._spans, self._tokens, self._positions, self.calls = [], [], 0, 0

    def positions(self) -> int:
        """Input positions the model ran (padding included; a shared prefix counted once per pass)."""
        return self._positions

    def seconds(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            return sum(s.elapsed_time(e) for s, e in self._spans) / 1e3
        return sum(self._spans)

    def tokens(self) -> int:
        return int(sum(int(t) for t in self._tokens))


class CallMeter:
    """A backend whose one method (``detect``, ``p_yes``, ``generate``) is timed; all else passes through."""

    def __init__(self, backend, method: str) -> None:
        self._backend, self._method, self.seconds, self.calls, self.items = backend, method, 0.0, 0, 0

    def reset(self) -> None:
        self.seconds, self.calls, self.items = 0.0, 0, 0

    def __getattr__(self, name):
        attr = getattr(self._backend, name)
        if name != self._method:
            return attr

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1
                self.items += len(args[0]) if args else 0

        return timed


class UtilSampler:
    """Mean GPU utilisation (NVML, via ``torch.cuda.utilization``) while the block runs; None without NVML."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        import torch

        try:
            if torch.cuda.is_available():
                torch.cuda.utilization()
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()
        except Exception:  # noqa: BLE001 - no NVML (pynvml/nvidia-ml-py): no samples
            self._thread = None
        return self

    def _run(self) -> None:
        import torch

        while not self._stop.wait(self.interval):
            self.samples.append(torch.cuda.utilization())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def mean(self):
        return statistics.mean(self.samples) / 100 if self.samples else None


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    """Peak GPU memory allocated since :func:`reset_peak` (GiB), or the process's peak RSS on CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measured(fn, meters=(), repeats: int = 1):
    """``(result, wall seconds, model seconds, GPU utilisation)`` of the median of ``repeats`` calls."""
    runs = []
    for _ in range(repeats):
        for m in meters:
            m.reset()
        sync()
        with UtilSampler() as util:
            t0 = time.perf_counter()
            result = fn()
            sync()
            wall = time.perf_counter() - t0
        runs.append((result, wall, sum(m.seconds() for m in meters), util.mean()))
    return sorted(runs, key=lambda r: r[1])[len(runs) // 2]


# -- sections -------------------------------------------------------------------------------------
class Report:
    """Throughput rows (printed as JSON lines as they come, and as a Markdown table at the end) and notes."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.notes: list[str] = []

    def add(self, section: str, what: str, wall: float, amount: float, unit: str, model_s=None, util=None,
            extra: str = "") -> None:
        row = dict(section=section, what=what, seconds=round(wall, 3), rate=round(amount / wall, 2), unit=unit,
                   model_share=None if model_s is None else round(model_s / wall, 3),
                   gpu_util=None if util is None else round(util, 3), peak_gib=round(peak_gib(), 2), note=extra)
        self.rows.append(row)
        print(json.dumps(row), flush=True)

    def table(self) -> str:
        lines = ["| section | what | seconds | rate | model busy share | GPU util (NVML) | peak memory GiB | note |",
                 "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in self.rows:
            share = "" if r["model_share"] is None else f"{r['model_share']:.0%}"
            util = "" if r["gpu_util"] is None else f"{r['gpu_util']:.0%}"
            lines.append(f"| {r['section']} | {r['what']} | {r['seconds']:.2f} | {r['rate']:.2f} {r['unit']} | "
                         f"{share} | {util} | {r['peak_gib']:.1f} | {r['note']} |")
        return "\n".join(lines)


def detector_settings(args, precision: str) -> dict:
    """The pessimistic load's detector settings in ``precision`` (a key of bench_detection.PRECISIONS)."""
    return dict(box_threshold=0.0, text_threshold=0.0, max_detections=3, batch_size=args.det_batch,
                random_weights=True, prefetch=args.prefetch, **PRECISIONS[precision])


def section_detector(args, dirs, work, report) -> None:
    """Each precision with float32's weights (rounded): speed against the model alone, then box drift."""
    import types

    from giqa.models import create

    images, phrases = work["images"], work["phrases"]
    n = len(images)
    weights, boxes, found = None, {}, {}
    for name in args.det_precisions.split(","):
        reset_peak()
        det = create("detector", "grounding-dino", model_id=str(dirs["gd"]), **detector_settings(args, name)).load()
        if weights is None:
            weights = det.model.state_dict()  # kept alive after close(): every precision runs the same weights
        else:
            det.model.load_state_dict(weights)
        meter = ForwardMeter(det.model)
        passes = preprocessed_passes(det, images, phrases, args.det_batch)
        outs, wall_m, model_m, util_m = measured(lambda: run_model_alone(det, passes), [meter], args.repeats)
        report.add("detector", f"model alone, {name}, preprocessed passes of {args.det_batch}", wall_m, n,
                   "images/s", model_m, util_m)
        boxes[name] = [types.SimpleNamespace(pred_boxes=o.pred_boxes.float().cpu()) for o in outs]
        clock = PhaseClock()
        clock.wrap(det.processor.image_processor, "preprocess", "image processor")
        try:
            det.detect(images[:2], phrases[:2])  # warm-up
            clock.seconds.clear()
            out, wall, model_s, util = measured(lambda: det.detect(images, phrases), [meter], args.repeats)
        except Exception as exc:  # noqa: BLE001 - the finding is the failure (NaN in half precision)
            report.notes.append(f"giqa detect(), {name}: {type(exc).__name__}: {str(exc)[:200]}")
            det.close()
            continue
        report.add("detector", f"giqa detect(), {name}, batch {args.det_batch}", wall, n, "images/s", model_s, util,
                   f"{wall / wall_m:.3f}x the model alone; {preprocessing(clock, args.repeats)}")
        found[name] = out
        if name == args.des_precision:
            work["detections"] = out
        det.close()
    for name in boxes:
        if name != "float32" and "float32" in boxes:
            drift, score_diff, bad = dtype_drift(boxes["float32"], boxes[name], found.get("float32", []), found.get(name))
            report.notes.extend(drift_table(name, drift, score_diff, bad, n))


def preprocessing(clock, repeats: int = 1) -> str:
    """Where the detector's image processor ran (per run): the caller's thread or prefetch threads."""
    main = clock.seconds["image processor"] / repeats
    bg = clock.seconds["image processor (other threads)"] / repeats
    return f"image processor {main:.2f} s in the caller's thread, {bg:.2f} s in prefetch threads"


def crops_of(work):
    """The pessimistic filter load: every detected box of every phrase, cropped, with its question."""
    crops, questions = [], []
    for im, per_image, names in zip(work["images"], work["detections"], work["tags"]):
        for dets, tag in zip(per_image, names):
            for d in dets:
                x1, y1, x2, y2 = d.box.as_tuple()
                box = (int(x1 * im.width), int(y1 * im.height), max(int(x1 * im.width) + 1, int(x2 * im.width)),
                       max(int(y1 * im.height) + 1, int(y2 * im.height)))
                crops.append(im.crop(box))
                questions.append(f"Is the image quality {tag['quality']}?")
    return crops, questions


def section_filter(args, dirs, work, report) -> None:
    from giqa.models import create
    from giqa.models._llava_batches import crop_keys

    if "detections" not in work:
        det = create("detector", "grounding-dino", model_id=str(dirs["gd"]), **detector_settings(args, args.des_precision))
        work["detections"] = det.detect(work["images"], work["phrases"])
        det.close()
    crops, questions = crops_of(work)
    reset_peak()
    qf = create("filter", "llava", model_id=str(dirs["llava"]), random_weights=True,
                batch_size=args.filter_batch, prefetch=args.filter_prefetch).load()
    meter = ForwardMeter(qf.model)
    qf.p_yes(crops[:2], questions[:2])
    b, n = args.filter_batch, len(crops)
    plain, wall0, model0, util0 = measured(lambda: plain_p_yes(qf, crops, questions, b), [meter], args.repeats)
    report.add("filter", f"plain passes (before), {qf.dtype}, batch {b}", wall0, n, "crops/s", model0, util0,
               f"{meter.positions() / n:.0f} LM positions per crop")
    got, wall, model_s, util = measured(lambda: qf.p_yes(crops, questions), [meter], args.repeats)
    diff = max(abs(x - y) for x, y in zip(got, plain))
    report.add("filter", f"giqa p_yes, {qf.dtype}, batch {b}, prefetch {qf.prefetch_depth()}", wall, n, "crops/s",
               model_s, util, f"{wall0 / wall:.2f}x plain; {len(set(crop_keys(crops)))} distinct crops of {n}; "
               f"{meter.positions() / n:.0f} LM positions per crop; max abs P(Yes) difference {diff:.1e}")
    unique = all_distinct(crops)
    _, wallu, modelu, _ = measured(lambda: qf.p_yes(unique, questions), [meter], args.repeats)
    report.add("filter", f"giqa p_yes, every crop made distinct (one pixel each), batch {b}", wallu, n, "crops/s",
               modelu, None, f"{wall0 / wallu:.2f}x plain; {meter.positions() / n:.0f} LM positions per crop")
    qualities = ("blurry", "overexposed", "noisy")
    distinct = [crops[k] for k in sorted(set(crop_keys(crops)))][: max(1, n // 3)]
    crops3 = [c for c in distinct for _ in qualities]
    questions3 = [f"Is the image quality {q}?" for _ in distinct for q in qualities]
    _, wall3p, model3p, _ = measured(lambda: plain_p_yes(qf, crops3, questions3, b), [meter], args.repeats)
    report.add("filter", f"plain passes, 3 questions per crop, batch {b}", wall3p, len(crops3), "pairs/s", model3p)
    _, wall3, model3, _ = measured(lambda: qf.p_yes(crops3, questions3), [meter], args.repeats)
    report.add("filter", f"giqa p_yes, 3 questions per crop, batch {b}", wall3, len(crops3), "pairs/s", model3, None,
               f"{wall3p / wall3:.2f}x plain; {meter.positions() / len(crops3):.0f} LM positions per pair")
    qf.close()


def all_distinct(crops) -> list:
    """Copies of ``crops`` whose first pixel differs from crop to crop (so none is reused), as a
    trained detector's boxes would be: the load's random-weight boxes repeat across phrases."""
    out = []
    for k, crop in enumerate(crops):
        crop = crop.copy()
        crop.putpixel((0, 0), (k % 256, (k // 256) % 256, 7))
        out.append(crop)
    return out


def plain_p_yes(qf, crops, questions, batch_size: int) -> list:
    """P(Yes) the way the filter ran before planning: passes of ``batch_size`` in the given order."""
    out: list = []
    for start in range(0, len(crops), batch_size):
        pair = qf.yes_no_logits(crops[start:start + batch_size], questions[start:start + batch_size])
        out.extend(pair.softmax(dim=-1)[:, 0].tolist())
    return out


def section_vlm(args, dirs, work, report) -> None:
    """``LlavaVLM.answer`` (length-sorted, prefetched batches) against plain batches in order."""
    from giqa.models import create
    from giqa.models._llava_batches import crop_keys

    crops, _ = crops_of(work) if "detections" in work else (work["images"], None)
    images = [crops[k] for k in sorted(set(crop_keys(crops)))][: args.vlm_answers]
    asks = ("Describe the image quality.", "Is the image sharp? Answer in one sentence about the main object.",
            "What spoils the quality of this image, if anything: noise, blur, exposure or compression?")
    prompts = [asks[k % len(asks)] for k in range(len(images))]
    reset_peak()
    vlm = create("vlm", "llava", model_id=str(dirs["llava"]), random_weights=True, batch_size=args.vlm_batch,
                 prefetch=args.filter_prefetch).load()
    meter = ForwardMeter(vlm.model)
    vlm.answer(images[:2], prompts[:2], max_new_tokens=2)
    b, n, new = args.vlm_batch, len(images), args.vlm_new_tokens

    def plain():
        return [t for k in range(0, n, b) for t in vlm._generate(vlm.encode(images[k:k + b], prompts[k:k + b]), new)]

    expected, wall0, model0, util0 = measured(plain, [meter], args.repeats)
    report.add("vlm", f"plain batches in order (before), batch {b}, {new} new tokens", wall0, n, "answers/s",
               model0, util0)
    got, wall, model_s, util = measured(lambda: vlm.answer(images, prompts, max_new_tokens=new), [meter], args.repeats)
    report.add("vlm", f"giqa answer(), batch {b}, prefetch {vlm.prefetch_depth()}", wall, n, "answers/s", model_s,
               util, f"{wall0 / wall:.2f}x plain; greedy answers identical: {got == expected}")
    vlm.close()


def section_llm(args, dirs, work, report) -> None:
    from giqa.models import create

    descriptions = [json.loads(line)["description"] for line in (SAMPLE / "descriptions.jsonl").read_text().splitlines()
                    if line.strip()]
    convs = [[{"role": "user", "content": "Extract the quality tags as JSON from: " + descriptions[i % len(descriptions)]}]
             for i in range(args.llm_conversations)]
    reset_peak()
    llm = create("llm", "transformers", model_id=str(dirs["llama"]), random_weights=True,
                 batch_size=args.llm_conversations).load()
    tokenizer = getattr(llm, "tokenizer", None)
    new_tokens = count_new_tokens(llm.model, getattr(tokenizer, "pad_token_id", None))
    meter = ForwardMeter(llm.model)
    llm.generate(convs[:2], max_new_tokens=4)
    new_tokens.clear()
    _, wall, model_s, util = measured(lambda: llm.generate(convs, max_new_tokens=args.new_tokens), [meter])
    n_new = sum(new_tokens) or len(convs) * args.new_tokens
    report.add("llm", f"generate, {llm.dtype}, batch {len(convs)}, <= {args.new_tokens} new tokens", wall, n_new,
               "new tokens/s", model_s, util, "HF generate, greedy")
    llm.close()


def count_new_tokens(model, pad_id):
    """Wrap ``model.generate`` to count the new tokens it returns (non-pad); returns the tally list."""
    tally: list[int] = []
    generate = model.generate
    pad = pad_id if pad_id is not None else getattr(model.generation_config, "pad_token_id", None)

    def counted(*args, **kwargs):
        out = generate(*args, **kwargs)
        seqs = getattr(out, "sequences", out)
        new = seqs[:, kwargs["input_ids"].shape[1]:] if "input_ids" in kwargs else seqs
        tally.append(int((new != pad).sum()) if pad is not None else new.numel())
        return out

    model.generate = counted
    return tally


def section_des(args, dirs, work, report) -> None:
    from giqa.models import CallableLLM, create
    from giqa.pipeline import DesConfig, DesPipeline, run_local

    reset_peak()
    det = create("detector", "grounding-dino", model_id=str(dirs["gd"]), **detector_settings(args, args.des_precision)).load()
    qf = create("filter", "llava", model_id=str(dirs["llava"]), random_weights=True,
                batch_size=args.filter_batch, prefetch=args.filter_prefetch).load()
    det_meter, qf_meter = ForwardMeter(det.model), ForwardMeter(qf.model)
    clock = PhaseClock()
    clock.wrap(det.processor.image_processor, "preprocess", "image processor")
    timed_det, timed_qf = CallMeter(det, "detect"), CallMeter(qf, "p_yes")
    tags_given = CallableLLM(lambda messages: '{"tags": []}', model_id="unused: the items carry their tags")
    known = DesConfig.model_fields
    batch = {k: v for k, v in dict(detect_batch_size=args.des_batch, refine_batch_size=args.des_batch).items()
             if k in known}
    pipe = DesPipeline(llm=tags_given, detector=timed_det, quality_filter=timed_qf,
                       config=DesConfig(root=str(SAMPLE), **batch))
    items = [{"id": f"img{i:04d}", "image": name, "description": f"{work['descriptions'][name]} (copy {i})",
              "tags": tags} for i, (name, tags) in enumerate(zip(work["names"], work["tags"]))]
    inputs = pipe.make_inputs(items)
    warm = pipe.make_inputs([{**item, "id": f"warm-{item['id']}", "description": item["description"] + " (warm-up)"}
                             for item in items[:2]])
    with tempfile.TemporaryDirectory() as out:
        run_local(pipe, warm, Path(out) / "warm-up", batch_size=args.des_batch, progress=False)  # JIT, caches
        timed_det.reset()
        timed_qf.reset()
        clock.seconds.clear()
        summary, wall, model_s, util = measured(
            lambda: run_local(pipe, inputs, Path(out) / "run", batch_size=args.des_batch, progress=False),
            [det_meter, qf_meter])
    d = summary.as_dict()
    n = d.get("processed", len(items))
    det_model, qf_model = det_meter.seconds(), qf_meter.seconds()
    report.add("des", f"run_local, batch {args.des_batch}, detector {args.des_precision}", wall, n, "samples/s",
               model_s, util, f"succeeded {d.get('succeeded')}, failed {d.get('failed')}")
    report.add("des", "  detect stage (detect() calls)", timed_det.seconds, n, "images/s", det_model, None,
               f"{timed_det.calls} calls; {preprocessing(clock)}")
    report.add("des", "  refine stage (p_yes calls)", timed_qf.seconds, max(timed_qf.items, 1), "crops/s",
               qf_model, None, f"{timed_qf.calls} calls; {qf_meter.positions() / max(timed_qf.items, 1):.0f} LM "
                               f"positions per crop")
    rest = wall - timed_det.seconds - timed_qf.seconds
    report.add("des", "  rest (tags, merge, fuse, finalize, writing)", max(rest, 1e-9), n, "samples/s")
    det.close()
    qf.close()


# -- main ------------------------------------------------------------------------------------------
def parse_args():
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=("cpu", "paper"), default="paper" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=None, help="sample images, repeated (default: 48 paper, 6 cpu)")
    ap.add_argument("--sections", default="detector,filter,vlm,llm,des")
    ap.add_argument("--det-batch", type=int, default=None, help="detector images per pass (8 paper, 4 cpu)")
    ap.add_argument("--det-precisions", default="float32,bf16-autocast,bfloat16",
                    help="detector precisions: float32, bfloat16 (weights cast), bf16-autocast")
    ap.add_argument("--des-precision", default="float32", help="the detector's precision in the DES run")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per contender, median (1 paper, 3 cpu)")
    ap.add_argument("--prefetch", type=int, default=2, help="detector passes prepared ahead in threads")
    ap.add_argument("--filter-batch", type=int, default=None, help="crops per filter pass (16 paper, 8 cpu)")
    ap.add_argument("--filter-prefetch", type=int, default=None,
                    help="filter batches preprocessed ahead in threads (default: the filter's, 2 on CUDA, 0 on CPU)")
    ap.add_argument("--vlm-batch", type=int, default=4, help="VLM pairs per generate")
    ap.add_argument("--vlm-answers", type=int, default=None, help="VLM answers (32 paper, 12 cpu)")
    ap.add_argument("--vlm-new-tokens", type=int, default=None, help="VLM new tokens (64 paper, 16 cpu)")
    ap.add_argument("--des-batch", type=int, default=16)
    ap.add_argument("--llm-conversations", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=None, help="LLM new tokens (128 paper, 16 cpu)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads on CPU (default 1)")
    ap.add_argument("--bert-vocab", default=None, help="bert-base-uncased vocab.txt for Grounding DINO's tokenizer")
    ap.add_argument("--models-dir", default=None, help="where the config-only model directories go (default: temp)")
    ap.add_argument("--json", default=None, help="also write the rows and environment here")
    args = ap.parse_args()
    paper = args.scale == "paper"
    args.images = args.images or (48 if paper else 6)
    args.det_batch = args.det_batch or (8 if paper else 4)
    args.filter_batch = args.filter_batch or (16 if paper else 8)
    args.new_tokens = args.new_tokens or (128 if paper else 16)
    args.vlm_answers = args.vlm_answers or (32 if paper else 12)
    args.vlm_new_tokens = args.vlm_new_tokens or (64 if paper else 16)
    args.repeats = args.repeats or (1 if paper else 3)
    return args


def environment(args) -> dict:
    import torch
    import transformers

    try:
        import torchvision  # noqa: F401 - transformers' torch-backed image processors need it

        tv = torchvision.__version__
    except ImportError:
        tv = None
    return {"scale": args.scale, "images": args.images, "torch": torch.__version__,
            "transformers": transformers.__version__, "torchvision": tv, "python": platform.python_version(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": round(os.getloadavg()[0], 2)}


def main() -> None:
    args = parse_args()
    import torch
    import transformers

    import paper_configs as pc

    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads or 1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    env = environment(args)
    print(json.dumps(env), flush=True)
    images, phrases, names = sample_workload(args.images)
    tags = {json.loads(x)["image"]: json.loads(x)["tags"] for x in (SAMPLE / "tags.jsonl").read_text().splitlines() if x.strip()}
    descriptions = {json.loads(x)["image"]: json.loads(x)["description"]
                    for x in (SAMPLE / "descriptions.jsonl").read_text().splitlines() if x.strip()}
    work = {"images": images, "phrases": phrases, "names": names, "tags": [tags[n] for n in names],
            "descriptions": descriptions}
    report = Report()
    sections = {"detector": section_detector, "filter": section_filter, "vlm": section_vlm, "llm": section_llm,
                "des": section_des}
    with tempfile.TemporaryDirectory() as tmp, pc.random_init():
        root = Path(args.models_dir or tmp)
        dirs = {"gd": pc.build_grounding_dino(root / f"gd_{args.scale}", args.scale,
                                              bert_vocab=pc.bert_vocab_file(args.bert_vocab)),
                "llava": pc.build_llava(root / f"llava_{args.scale}", args.scale),
                "llama": pc.build_llama(root / f"llama_{args.scale}", args.scale)}
        for name in args.sections.split(","):
            sections[name.strip()](args, dirs, work, report)
    env["load_average_end"] = round(os.getloadavg()[0], 2)
    print(f"\nPaper-scale throughput, {args.scale} scale, {args.images} images, "
          f"{sum(map(len, phrases))} phrases (thresholds 0, <= 3 boxes per phrase)\n{json.dumps(env)}\n")
    print(report.table())
    print("\n" + "\n".join(report.notes))
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": report.rows, "notes": report.notes}, indent=2))


if __name__ == "__main__":
    main()
