"""Train -> bench: fine-tune a LLaVA model on GIQA samples, then answer and score GIQA-Bench.

    python examples/train_llava.py --out train_demo            # tiny random-weight LLaVA, CPU, seconds
    python examples/train_llava.py --out run --model llava-hf/llava-1.5-7b-hf \\
        --train data/giqa160k.jsonl --images data/images      # the real thing (GPU, paper defaults)

The two steps are one line each (``train`` then ``run_bench``); the same from the shell:

    giqa train --config train_demo/train.json
    giqa bench run --bench examples/bench/bench.jsonl --images examples/bench \\
        --model-id train_demo/run/final --out train_demo/predictions.jsonl
    giqa bench score train_demo/predictions.jsonl --gt examples/bench/bench.jsonl

Without ``--train`` this demo trains on ``examples/bench/bench.jsonl`` itself, which only shows the
plumbing: never train on the bench you report. With the tiny model (the default when no
``--model`` is given) the weights start random, so the scores are meaningless and flagged so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from giqa.bench.runner import run_bench
from giqa.bench.scoring import score
from giqa.models.llava_vlm import LlavaVLM
from giqa.train import TrainConfig, train

BENCH = Path(__file__).resolve().parent / "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (config, run, predictions)")
    ap.add_argument("--model", default=None, help="hub id or local dir (default: a tiny random-weight LLaVA)")
    ap.add_argument("--train", default=str(BENCH / "bench.jsonl"), help="training JSONL/JSON (Samples or LLaVA)")
    ap.add_argument("--images", default=str(BENCH), help="image root of the training data")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after N optimiser steps")
    args = ap.parse_args()

    out = Path(args.out).resolve()
    tiny = args.model is None
    if tiny:
        from giqa.models.tiny import build_tiny_llava

        import torch

        torch.set_num_threads(1)  # a model this small trains fastest on one CPU thread
        model = str(build_tiny_llava(out / "tiny-llava"))
        # tiny model on CPU: a higher learning rate and small batches so a few steps visibly learn
        settings = dict(learning_rate=1e-2, lr_scheduler="constant", warmup_ratio=0.0,
                        global_batch_size=8, per_device_batch_size=4, max_steps=args.max_steps or 40,
                        save_steps=20, logging_steps=5)
    else:
        model, settings = args.model, ({"max_steps": args.max_steps} if args.max_steps else {})

    config = TrainConfig(model=model, data=[args.train], image_root=args.images, output_dir=out / "run", **settings)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(config.model_dump_json(indent=2))  # for `giqa train --config`

    result = train(config, resume=True)                                              # giqa train --config ...
    run_bench(LlavaVLM(model_id=str(result.model_dir)), BENCH / "bench.jsonl", BENCH,
              out / "predictions.jsonl", max_new_tokens=64, resume=False)          # giqa bench run ...

    report = score(out / "predictions.jsonl", BENCH / "bench.jsonl", n_boot=0, name="fine-tuned")
    print(f"trained {result.global_step} steps, mean loss {result.train_loss:.3f}; model in {result.model_dir}")
    print(json.dumps({k: v for k, v in report.metrics.items() if v is not None}, indent=2))
    for note in report.notes:
        print("note:", note)


if __name__ == "__main__":
    main()
