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

``--estimate`` prints the compute estimate for the full 80K pairs (see :func:`estimate`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
sys.path.insert(0, str(HERE))  # reuse demo.py's template QA writer


# -- compute estimate --------------------------------------------------------------------------
@dataclass(frozen=True)
class Assumptions:
    """Throughputs on one A100-80G (bf16), not measured here: typical published figures for
    HF transformers batched inference of 7-8B models and Grounding DINO base; vLLM decode for
    the ``openai`` backend. Token counts are those of giqa's prompts (instructions + example +
    description) and answers in the paper's figures. Change them and re-run ``--estimate``."""

    pairs: int = 80_000  # image-description pairs (53K Q-Pathway + 27K DQ-495K)
    des_samples: int = 66_689  # DES samples kept (Table 1): the VQA inputs
    tag_prompt_tokens: int = 650
    tag_output_tokens: int = 120
    llm_attempts: float = 1.15  # malformed JSON is retried (max_retries=2)
    vqa_prompts_per_sample: int = 2  # one Yes/No prompt and one What/Which/Why/How prompt
    vqa_prompt_tokens: int = 700
    vqa_output_tokens: int = 350
    llm_prefill_tok_s: float = 8_000.0  # Llama-3-8B prefill, transformers, batch 16
    llm_decode_tok_s: float = 480.0  # transformers, batch 16 x ~30 tok/s per sequence
    vllm_decode_tok_s: float = 2_500.0  # vLLM continuous batching (giqa's openai backend)
    detector_img_s: float = 8.0  # Grounding DINO base, 800 x 1333, all phrases of an image at once
    tags_per_pair: float = 3.0  # key objects kept after dropping no_impact
    multi_box_share: float = 0.35  # tags whose detection gives several boxes (IQA-Filter runs)
    boxes_per_multi: float = 2.5
    filter_tokens_per_crop: int = 616  # LLaVA-1.5: 576 image tokens + the question
    filter_prefill_tok_s: float = 10_000.0  # LLaVA-1.5-7B, one forward per crop, batch 32


def estimate(a: Assumptions = Assumptions()) -> list[tuple[str, str, float, float]]:
    """``(stage, arithmetic, GPU-hours with transformers, GPU-hours with vLLM for the LLM)``."""
    rows = []
    gen = a.pairs * a.llm_attempts
    pre, dec = gen * a.tag_prompt_tokens, gen * a.tag_output_tokens
    h_hf = (pre / a.llm_prefill_tok_s + dec / a.llm_decode_tok_s) / 3600
    h_vllm = (pre / a.llm_prefill_tok_s + dec / a.vllm_decode_tok_s) / 3600
    rows.append(("1 tags (Llama-3-8B)",
                 f"{a.pairs:,} x {a.llm_attempts} tries x ({a.tag_prompt_tokens} prefill @ {a.llm_prefill_tok_s:,.0f}/s"
                 f" + {a.tag_output_tokens} decode @ {a.llm_decode_tok_s:,.0f}/s)", h_hf, h_vllm))
    h = a.pairs / a.detector_img_s / 3600
    rows.append(("2 detection (Grounding DINO B)", f"{a.pairs:,} images / {a.detector_img_s} img/s", h, h))
    crops = a.pairs * a.tags_per_pair * a.multi_box_share * a.boxes_per_multi
    h = crops * a.filter_tokens_per_crop / a.filter_prefill_tok_s / 3600
    rows.append(("3 IQA-Filter (LLaVA-1.5-7B)",
                 f"{a.pairs:,} x {a.tags_per_pair} tags x {a.multi_box_share} multi-box x {a.boxes_per_multi} boxes"
                 f" = {crops:,.0f} crops x {a.filter_tokens_per_crop} tok @ {a.filter_prefill_tok_s:,.0f}/s", h, h))
    rows.append(("3 Box-Merge, 4 fusion (CPU)", "CPU only: minutes for 80K records (benchmarks/bench_pipeline.py)", 0.0, 0.0))
    gen = a.des_samples * a.vqa_prompts_per_sample * a.llm_attempts
    pre, dec = gen * a.vqa_prompt_tokens, gen * a.vqa_output_tokens
    h_hf = (pre / a.llm_prefill_tok_s + dec / a.llm_decode_tok_s) / 3600
    h_vllm = (pre / a.llm_prefill_tok_s + dec / a.vllm_decode_tok_s) / 3600
    rows.append(("VQA generation (Llama-3-8B)",
                 f"{a.des_samples:,} x {a.vqa_prompts_per_sample} prompts x {a.llm_attempts} tries x"
                 f" ({a.vqa_prompt_tokens} prefill + {a.vqa_output_tokens} decode)", h_hf, h_vllm))
    return rows


def estimate_markdown(a: Assumptions = Assumptions()) -> str:
    rows = estimate(a)
    lines = ["| stage | arithmetic | A100-hours (transformers) | A100-hours (vLLM for the LLM) |",
             "|---|---|---:|---:|"]
    lines += [f"| {s} | {arith} | {h1:.1f} | {h2:.1f} |" for s, arith, h1, h2 in rows]
    t1, t2 = sum(r[2] for r in rows), sum(r[3] for r in rows)
    lines.append(f"| **total** | | **{t1:.0f}** | **{t2:.0f}** |")
    lines.append(f"\nOn 8 GPUs with the Ray runner (one actor per stage and GPU): about "
                 f"{math.ceil(t1 / 8)} h (transformers) or {math.ceil(t2 / 8)} h (vLLM) wall time.")
    return "\n".join(lines) + "\n"


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
    ap.add_argument("--estimate", action="store_true", help="print the compute estimate for 80K pairs and exit")
    args = ap.parse_args(argv)
    if args.estimate:
        print(estimate_markdown())
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
          + "\n## Compute estimate for the full build (80K pairs)\n\n" + estimate_markdown())
    (final / "stats.md").write_text(md)
    print(md)
    banner(f"done in {report['seconds']} s: {final}/ (giqa160k_llava.json, giqa160k.parquet, hf/, stats.md, "
           "fig6_box_area.png)" + (" - RANDOM WEIGHTS, outputs are meaningless" if tiny else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
