"""Build GIQA-160K: sources -> DES -> VQA -> balanced dataset files (paper section 3.3).

Offline slice (the tiny synthetic files of ``examples/sources/``, random-weight models)::

    .venv/bin/python examples/build_giqa160k.py --out giqa160k_out --limit 4 --preset tiny-random

The real build (download Q-Instruct and DataDepictQA first, see docs/data.md; put the
Q-Instruct images under ``data/q-instruct/`` and DataDepictQA under ``data/DataDepictQA/``)::

    .venv/bin/python examples/build_giqa160k.py --out giqa160k --preset paper \\
        --qpathway data/q-instruct/cleaned_labels.json \\
        --dq495k data/DataDepictQA/KADIS700K/A_sd_detail/metas/train_A_sd_detail_20k.json \\
                 data/DataDepictQA/KADIS700K/A_md_detail/metas/train_A_md_detail_8k.json \\
        --root data --runner ray --address auto

Paper settings used: Llama-3-8B-Instruct for tags and QA, Grounding DINO (base) with the
description phrase T_r, Q-Instruct's role (LLaVA-1.5-7B Yes/No P(yes)) as IQA-Filter,
Box-Merge with T_a = 0.256 and T_o = 0.95, a 20 x 20 grid, a 15-question DES pool, then
VQA balanced to equal Yes and No and equal Yes/No and What/Which/Why/How (seeded).
Outputs in ``OUT/``: ``des/`` and ``vqa/`` run directories (resumable: re-run the same command
after an interruption), and ``giqa160k/`` with ``giqa160k_llava.json`` (LLaVA training format),
``giqa160k.parquet``, ``hf/`` (``datasets.load_from_disk``), ``stats.md`` / ``stats.json``
(Table 1) and ``fig6_box_area.png`` (Fig. 6).

With ``tiny-random`` the detector and the quality filter are the real backends with random
weights (meaningless boxes and scores); a random-weight LLM writes no valid JSON, so the tags
come from the hand-written ``examples/sources/tags.jsonl`` and the VQA pairs from the template
writer of ``examples/demo.py`` (``demo-template-qa`` in every sample's provenance).

``--estimate`` prints the expected GPU-hours of the full build (80K pairs) on 1 and 8 GPUs from
the paper-scale benchmark's recorded figures (``benchmarks/results/paper_scale.json``, written by
``benchmarks/bench_paper_scale.py --json``); without GPU figures there, from issue 13's measured
H200 table, labelled as such (see :func:`estimate_markdown`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
sys.path.insert(0, str(HERE))  # reuse demo.py's template QA writer


# -- compute estimate --------------------------------------------------------------------------
FIGURES = HERE.parent / "benchmarks" / "results" / "paper_scale.json"  # bench_paper_scale.py --json


@dataclass(frozen=True)
class Workload:
    """The work of GIQA-160K: 80K source pairs -> DES -> VQA (paper Table 1), and the LLM's
    answer lengths for giqa's prompts (tags: the JSON tag list; VQA: two JSON QA lists per DES
    sample). Token counts are estimates from the paper's figures, not measurements."""

    pairs: int = 80_000  # image-description pairs (53K Q-Pathway + 27K DQ-495K)
    des_samples: int = 66_689  # DES samples kept (Table 1): the VQA inputs
    llm_attempts: float = 1.15  # malformed JSON is retried (max_retries=2)
    tag_new_tokens: int = 120
    vqa_prompts_per_sample: int = 2  # one Yes/No prompt and one What/Which/Why/How prompt
    vqa_new_tokens: int = 350


@dataclass(frozen=True)
class Rates:
    """Throughput of one device: DES samples/s (``run_local``: detection, IQA-Filter on every
    phrase with up to 3 boxes, Box-Merge, fusion; tags given) and LLM new tokens/s
    (transformers ``generate``, batch 32); ``source`` says where they come from."""

    source: str
    des_samples_s: float
    llm_tokens_s: float
    gpu: bool
    detector_images_s: Optional[float] = None
    filter_crops_s: Optional[float] = None


# Issue 13's table: one H200, the paper's model sizes with random weights, before issue 13's work.
ISSUE_13 = Rates(source="issue 13's measured table (one H200, paper model sizes, measured before issue 13's "
                        "speed-ups)", des_samples_s=1.73, llm_tokens_s=365.0, gpu=True,
                 detector_images_s=8.8, filter_crops_s=35.0)


def rates_from_benchmark(path: Path = FIGURES) -> Optional[Rates]:
    """The rates in a ``bench_paper_scale.py --json`` file (None if it is missing or lacks the
    DES or LLM row): the DES ``run_local`` row, the LLM row, and for the record the float32
    ``detect()`` and the filter rows. GPU figures when the run was ``--scale paper``."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    env, rows = data.get("env", {}), data.get("rows", [])

    def rate(section: str, unit: str, what: str = "") -> Optional[float]:
        found = [r["rate"] for r in rows if r.get("section") == section and r.get("unit") == unit
                 and str(r.get("what", "")).startswith(what)]
        return float(found[0]) if found else None

    des, llm = rate("des", "samples/s", "run_local"), rate("llm", "new tokens/s")
    if des is None or llm is None:
        return None
    gpu = env.get("scale") == "paper"
    where = (f"{env.get('device', '?')}, torch {env.get('torch', '?')}, transformers {env.get('transformers', '?')}"
             + ("" if gpu else f", {env.get('cpus', '?')} CPUs, torch threads {env.get('torch_threads', '?')}"))
    scale = "paper model sizes" if gpu else "REDUCED models (--scale cpu): CPU-hours of a CPU run, NOT GPU-hours"
    return Rates(source=f"{path.name} ({where}; {scale})", des_samples_s=des, llm_tokens_s=llm, gpu=gpu,
                 detector_images_s=rate("detector", "images/s", "giqa detect(), float32"),
                 filter_crops_s=rate("filter", "crops/s"))


def estimate(rates: Rates, w: Workload = Workload()) -> list[tuple[str, str, float]]:
    """``(step, arithmetic, device-hours)`` of the build on one device at ``rates``."""
    tag_tokens = w.pairs * w.llm_attempts * w.tag_new_tokens
    vqa_tokens = w.des_samples * w.vqa_prompts_per_sample * w.llm_attempts * w.vqa_new_tokens
    return [
        ("tags (LLM)", f"{w.pairs:,} pairs x {w.llm_attempts} tries x {w.tag_new_tokens} new tokens "
                       f"@ {rates.llm_tokens_s:,.1f} tokens/s", tag_tokens / rates.llm_tokens_s / 3600),
        ("DES: detection, IQA-Filter, Box-Merge, fusion", f"{w.pairs:,} samples @ {rates.des_samples_s:,.2f} samples/s",
         w.pairs / rates.des_samples_s / 3600),
        ("VQA generation (LLM)", f"{w.des_samples:,} DES samples x {w.vqa_prompts_per_sample} prompts x "
                                 f"{w.llm_attempts} tries x {w.vqa_new_tokens} new tokens @ {rates.llm_tokens_s:,.1f} tokens/s",
         vqa_tokens / rates.llm_tokens_s / 3600),
    ]


def estimate_markdown(figures: Path = FIGURES, w: Workload = Workload()) -> str:
    """The estimate from the benchmark's recorded figures when they are GPU figures; else from
    issue 13's measured table, followed by the recorded CPU figures' (each labelled)."""
    measured = rates_from_benchmark(figures)
    shown = figures.relative_to(HERE.parent) if figures.is_relative_to(HERE.parent) else figures
    sources = [measured] if measured is not None and measured.gpu else [ISSUE_13] + ([measured] if measured else [])
    parts = []
    if measured is None:
        parts.append(f"No benchmark figures with a DES and an LLM row at {shown} (`benchmarks/bench_paper_scale.py --json`).\n")
    elif not measured.gpu:
        parts.append(f"{shown} holds CPU figures only (no GPU run recorded): the GPU estimate below is "
                     "from issue 13's measured table; the CPU figures' follow, for the arithmetic only.\n")
    for rates in sources:
        unit = "GPU-hours" if rates.gpu else "CPU-hours (reduced models)"
        rows = estimate(rates, w)
        total = sum(h for _, _, h in rows)
        lines = [f"### From {rates.source}", "", f"| step | arithmetic | {unit}, 1 device |", "|---|---|---:|"]
        lines += [f"| {step} | {arith} | {h:,.1f} |" for step, arith, h in rows]
        lines.append(f"| **total** | | **{total:,.1f}** |")
        dev = "GPU" if rates.gpu else "device"
        lines += ["", f"Wall time: **{total:,.1f} h on 1 {dev}, {total / 8:,.1f} h on 8 {dev}s** (the Ray runner: "
                      "one GPU per actor, pools sized to the GPUs; ideal 8x)."]
        extra = [f"{name} {v:,.2f} {u}" for name, v, u in (("detect() float32", rates.detector_images_s, "images/s"),
                                                            ("IQA-Filter", rates.filter_crops_s, "crops/s")) if v]
        if extra:
            lines.append(f"Stage figures of the same source: {', '.join(extra)}.")
        parts.append("\n".join(lines) + "\n")
    parts.append("DES at the benchmark's pessimistic load (the filter on every phrase, up to 3 boxes each); "
                 "LLM rows at in-process transformers `generate` (batch 32). With the LLM on an OpenAI-"
                 "compatible server (vLLM; `--llm-base-url`) the LLM rows shrink by the server's rate over this "
                 "one (not measured here). Token counts: `Workload` in this script.\n")
    return "\n".join(parts)


# -- the build ---------------------------------------------------------------------------------
def banner(msg: str) -> None:
    line = "=" * 78
    print(f"\n{line}\n{msg}\n{line}", file=sys.stderr, flush=True)


def read_sources(args: argparse.Namespace) -> list[dict]:
    from giqa.data import DQ495KReader, QPathwayReader

    qp = [Path(p) for p in args.qpathway] if args.qpathway else [SOURCES / "q-instruct" / "cleaned_labels.json"]
    dq = [Path(p) for p in args.dq495k] if args.dq495k else sorted(SOURCES.glob("DataDepictQA/KADIS700K/*/metas/*.json"))
    per_source = math.ceil(args.limit / 2) if args.limit else None
    common = dict(strict=not args.lenient, limit=per_source)
    readers = [QPathwayReader(qp, image_prefix="q-instruct", **common),
               DQ495KReader(dq, image_prefix="DataDepictQA", **common)]
    items = [it for r in readers for it in r]
    if args.limit:
        items = items[: args.limit]
    for r in readers:
        print(f"{r.name}: {r.stats.records} records, {r.stats.items} descriptions, {r.stats.skipped} skipped, "
              f"{r.stats.errors} malformed; by source {r.stats.by_source}", file=sys.stderr)
    return items


def run(pipeline, inputs, out_dir: Path, args: argparse.Namespace):
    if args.runner == "ray":
        from giqa.pipeline.ray_runner import run_ray

        return run_ray(pipeline, inputs, out_dir, address=args.address, batch_size=args.batch_size)
    from giqa.pipeline import run_local

    return run_local(pipeline, inputs, out_dir, batch_size=args.batch_size)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="giqa160k_out")
    ap.add_argument("--preset", default="paper", choices=("paper", "small", "tiny-random"))
    ap.add_argument("--qpathway", nargs="*", help="Q-Instruct cleaned_labels.json (default: the example file)")
    ap.add_argument("--dq495k", nargs="*", help="DataDepictQA metas files (default: the example files)")
    ap.add_argument("--root", default=str(SOURCES), help="holds q-instruct/ and DataDepictQA/ (default: examples/sources)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many description pairs (a slice)")
    ap.add_argument("--lenient", action="store_true", help="skip malformed source records instead of stopping")
    ap.add_argument("--runner", choices=("local", "ray"), default="local")
    ap.add_argument("--address", default=None, help="Ray cluster address (with --runner ray)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fig6-raw", action="store_true",
                    help="also run DES without refinement (no IQA-Filter, no Box-Merge) for Fig. 6's Raw series")
    ap.add_argument("--estimate", action="store_true",
                    help="print the expected GPU-hours of the full build (80K pairs) on 1 and 8 GPUs and exit")
    ap.add_argument("--figures", type=Path, default=FIGURES,
                    help="bench_paper_scale.py --json output the estimate reads (default: benchmarks/results/paper_scale.json)")
    args = ap.parse_args(argv)
    if args.estimate:
        print(estimate_markdown(args.figures))
        return 0

    from giqa.data import box_area_histogram, dataset_stats, export_samples
    from giqa.models import CallableLLM
    from giqa.pipeline import DesConfig, DesPipeline, VqaConfig, VqaPipeline, balance_vqa
    from giqa.pipeline.balance import vqa_counts
    from giqa.pipeline.ray_runner import read_run_samples
    from giqa.types import Sample

    out = Path(args.out)
    t0 = time.perf_counter()
    tiny = args.preset == "tiny-random"
    banner(f"GIQA-160K build: preset {args.preset.upper()}, runner {args.runner}"
           + ("\nRANDOM WEIGHTS: boxes and filter scores are MEANINGLESS; tags and QA are hand-written/templated."
              if tiny else ""))
    items = read_sources(args)

    des_cfg = DesConfig(root=args.root, seed=args.seed)  # T_a 0.256, T_o 0.95, 20 x 20 grid
    vqa_cfg = VqaConfig(seed=args.seed)
    if tiny:
        from demo import template_qa

        from giqa.models.presets import default_cache_dir, load_preset
        from giqa.pipeline import BackendSpec

        tags = {t["image"]: t["tags"] for t in map(json.loads, (SOURCES / "tags.jsonl").read_text().splitlines())}
        missing = [it["image"] for it in items if it["image"] not in tags]
        if missing:
            print(f"warning: no hand-written tags for {len(missing)} item(s); the random LLM will fail on them",
                  file=sys.stderr)
        for it in items:
            if it["image"] in tags:
                it["tags"] = tags[it["image"]]
        load_preset("tiny-random").close()  # builds the tiny models into the cache (once), loads nothing
        # Backends as specs: each process (or Ray worker) builds its own. Random detector logits
        # barely pass the usual 0.35 threshold: keep the 3 best boxes instead.
        detector = BackendSpec(kind="detector", name="grounding-dino", settings={
            "model_id": str(default_cache_dir() / "tiny-random-v1" / "grounding_dino"),
            "box_threshold": 0.0, "text_threshold": 0.0, "max_detections": 3})
        des = DesPipeline(llm=BackendSpec.from_preset("tiny-random", "llm"), detector=detector,
                          quality_filter=BackendSpec.from_preset("tiny-random", "quality_filter"),
                          config=des_cfg, preset="tiny-random")
        vqa = VqaPipeline(llm=CallableLLM(template_qa, model_id="demo-template-qa"), config=vqa_cfg,
                          preset="tiny-random")
    else:
        des = DesPipeline.from_preset(args.preset, config=des_cfg)
        vqa = VqaPipeline.from_preset(args.preset, config=vqa_cfg)

    banner(f"DES on {len(items)} description pairs -> {out / 'des'}")
    des_summary = run(des, des.make_inputs(items), out / "des", args)
    des_samples = [Sample.model_validate(s) for s in read_run_samples(out / "des")]
    banner(f"VQA on {len(des_samples)} DES samples -> {out / 'vqa'}")
    vqa_summary = run(vqa, vqa.make_inputs(des_samples), out / "vqa", args)
    vqa_all = [Sample.model_validate(s) for s in read_run_samples(out / "vqa")]
    balanced = balance_vqa(vqa_all, seed=args.seed)
    dataset = des_samples + balanced

    final = out / "giqa160k"
    final.mkdir(parents=True, exist_ok=True)
    export_samples(dataset, final / "giqa160k_llava.json", to="llava", overwrite=True)
    export_samples(dataset, final / "giqa160k.parquet", to="parquet", overwrite=True)
    export_samples(dataset, final / "hf", to="hf", overwrite=True)
    stats = dataset_stats(dataset, name="GIQA-160K (this build)")
    series = {"GIQA-DES (Ref)": des_samples}
    if args.fig6_raw:
        # Raw boxes: the detector's boxes as they come (T_a = 0 and T_o = 1.0 never merge)
        raw_cfg = des_cfg.model_copy(update={"area_thr": 0.0, "cover_thr": 1.0})
        raw = DesPipeline(llm=des.stage("tags").llm, detector=des.stage("detect").detector, quality_filter=None,
                          config=raw_cfg, preset=des.preset)
        banner(f"DES without refinement (Fig. 6 Raw) -> {out / 'des_raw'}")
        run(raw, raw.make_inputs(items), out / "des_raw", args)
        series = {"GIQA-DES (Raw)": [Sample.model_validate(s) for s in read_run_samples(out / "des_raw")], **series}
    box_area_histogram(series, final / "fig6_box_area.png")
    report = {
        "preset": args.preset,
        "random_weights": stats.random_weights > 0,
        "inputs": len(items),
        "des": des_summary.as_dict(),
        "vqa": vqa_summary.as_dict(),
        "vqa_counts_all": vqa_counts(vqa_all),
        "vqa_counts_balanced": vqa_counts(balanced),
        "stats": stats.to_dict(),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (final / "stats.json").write_text(json.dumps(report, indent=2) + "\n")
    md = (f"# GIQA-160K build ({args.preset}{', RANDOM WEIGHTS' if report['random_weights'] else ''})\n\n"
          + stats.to_markdown()
          + "\nPaper (Table 1): | GIQA-160K | 42,960 | 167,657 | 66,689 | 50,484 | 50,484 |\n"
          + "\n## Compute estimate for the full build (80K pairs)\n\n" + estimate_markdown(args.figures))
    (final / "stats.md").write_text(md)
    print(md)
    banner(f"done in {report['seconds']} s: {final}/ (giqa160k_llava.json, giqa160k.parquet, hf/, stats.md, "
           "fig6_box_area.png)" + (" - RANDOM WEIGHTS, outputs are meaningless" if tiny else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
