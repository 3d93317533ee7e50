"""giqa.train on CUDA with a LLaVA-1.5-7B-sized model (random weights, bf16, LoRA, gradient checkpointing).

    python benchmarks/bench_train_gpu.py --out /tmp/gpu_train --steps 20      # on a CUDA machine (>= 40 GB)
    python benchmarks/bench_train_gpu.py --out /tmp/gpu_train --tiny          # CPU smoke test of the same path

The model is built from llava-hf/llava-1.5-7b-hf's own ``config.json`` (vendored in
``src/giqa/models/reference/llava-1.5-7b-hf``) with random weights and saved once in bf16
(about 14 GB on disk); the processor carries that checkpoint's chat template, special tokens
and 336 px CLIP settings (a small in-code vocabulary: token ids stay below the model's 32064).
Training: ``recipe="llava-1.5-lora"`` (LoRA r 128 on the language model, projector at 2e-5),
bf16, gradient checkpointing, per-device batch 4, 48 synthetic 480 x 360 samples. Prints one
Markdown row: samples/s (Trainer's ``train_samples_per_second``), peak CUDA memory, versions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def build_model_dir(out: Path, tiny: bool) -> Path:
    import torch
    import transformers

    from giqa.models import reference, tiny as tiny_models

    if tiny:
        return tiny_models.build_tiny_llava(out / "tiny-llava")
    target = out / "llava-1.5-7b-random"
    if (target / "config.json").is_file():
        return target
    with tempfile.TemporaryDirectory() as scratch:  # the processor of the tiny build, at the real 336 px
        processor = transformers.AutoProcessor.from_pretrained(tiny_models.build_tiny_llava(Path(scratch) / "p"))
    real = reference.load(reference.LLAVA_15, "preprocessor_config.json")
    processor.image_processor.size = real["size"]
    processor.image_processor.crop_size = real["crop_size"]
    processor.patch_size = 14
    config = transformers.LlavaConfig.from_dict(reference.load(reference.LLAVA_15, "config.json"))
    config.image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.LlavaForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(target)
    processor.save_pretrained(target)
    del model
    torch.cuda.empty_cache()
    return target


def write_data(out: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    from giqa import Sample, Task

    (out / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)).save(out / "img" / f"{i}.jpg")
        answer = "The [sky](<0, 399>) is overexposed and the trees are dark. " * (1 + i % 4)
        lines.append(Sample(id=f"s{i}", image=f"img/{i}.jpg", task=Task.des,
                            question="Describe the quality of this image.", answer=answer.strip()).model_dump_json())
    (out / "data.jsonl").write_text("\n".join(lines) + "\n")
    return out / "data.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--tiny", action="store_true", help="tiny model on CPU: checks the script, measures nothing")
    args = ap.parse_args()
    import peft
    import torch
    import transformers

    from giqa.train import TrainConfig, read_log, train

    out = Path(args.out).resolve()
    data = write_data(out / "data", 48)
    model_dir = build_model_dir(out, args.tiny)
    cfg = TrainConfig(
        model=str(model_dir), data=[str(data)], image_root=out / "data", output_dir=out / "run",
        recipe="llava-1.5-lora", max_steps=args.steps, global_batch_size=4 if args.tiny else 16,
        per_device_batch_size=4, precision="fp32" if args.tiny else "bf16", gradient_checkpointing=True,
        save_steps=10_000, logging_steps=1, lora={"r": 8 if args.tiny else 128, "alpha": 16 if args.tiny else 256, "merge": False},
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train(cfg)
    last = [e for e in read_log(cfg.output_dir) if "train_samples_per_second" in e][-1]
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print("| model | device | steps | samples/s | peak CUDA GiB | transformers | peft | torch |")
    print("|---|---|---:|---:|---:|---|---|---|")
    name = "tiny LLaVA (smoke test)" if args.tiny else "LLaVA-1.5-7B config, random, bf16, LoRA r128, grad ckpt"
    print(f"| {name} | {device} | {args.steps} | {last['train_samples_per_second']:.2f} | {peak:.1f} | "
          f"{transformers.__version__} | {peft.__version__} | {torch.__version__} |")
    (out / "result.json").write_text(json.dumps({"samples_per_s": last["train_samples_per_second"], "peak_gib": peak, "device": device}))


if __name__ == "__main__":
    main()
