"""Training throughput of giqa.train against a plain PyTorch loop (tiny random-weight LLaVA, CPU).

Same tiny LLaVA (giqa.models.tiny), same 32 samples (64 x 64 images, mixed DES/VQA), same
collator, batch, optimiser (AdamW) and step count, same process. Modes:

- ``giqa.train`` : ``train(TrainConfig(...))``: transformers ``Trainer`` with giqa's dataset,
  sampler, collator, JSONL log and checkpoint (one checkpoint at the end); samples/s from
  Trainer's own ``train_runtime`` (model loading and final save excluded).
- ``plain loop`` (the peer): ``DataLoader(dataset, collate_fn=SftCollator)`` -> forward with
  labels -> backward -> ``AdamW.step()``, nothing else: the floor any wrapper adds to.
- ``collator only``: the data path alone (image decode + chat template + processor + labels).

Run: ``.venv/bin/python benchmarks/bench_train.py [--steps 20] [--batch 8] [--repeats 3] [--threads 1]``
Prints a Markdown table (best of ``--repeats`` runs after one warm-up step each).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _make_data(root: Path, n: int) -> Path:
    from PIL import Image

    from giqa import Sample, Task, VqaKind

    (root / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        Image.new("RGB", (64, 64), (7 * i % 256, 255 - 5 * i % 256, 90)).save(root / "img" / f"{i}.png")
        vqa = i % 2 == 1
        lines.append(
            Sample(
                id=f"s{i}",
                image=f"img/{i}.png",
                task=Task.vqa if vqa else Task.des,
                vqa_kind=VqaKind.yes_no if vqa else None,
                question="Is the [dog](<142, 309>) clear?" if vqa else "Describe the quality of the image.",
                answer="No." if vqa else "The [sky](<0, 199>) is overexposed and the [dog](<142, 309>) is blurry.",
            ).model_dump_json()
        )
    path = root / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _giqa(model_dir: Path, data: Path, root: Path, out: Path, steps: int, batch: int) -> float:
    from giqa.train import TrainConfig, read_log, train

    shutil.rmtree(out, ignore_errors=True)
    cfg = TrainConfig(
        model=str(model_dir), data=[str(data)], image_root=root, output_dir=out, learning_rate=1e-3,
        global_batch_size=batch, per_device_batch_size=batch, max_steps=steps, save_steps=steps,
        logging_steps=1, precision="fp32",
    )
    train(cfg)
    summary = next(e for e in read_log(out) if "train_runtime" in e)
    return steps * batch / summary["train_runtime"]


def _plain(model_dir: Path, data: Path, root: Path, steps: int, batch: int) -> float:
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from giqa.train.collate import SftCollator
    from giqa.train.data import SftDataset, TaskMixSampler, read_conversations

    ds = SftDataset(read_conversations(data), root)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    for n, p in model.named_parameters():
        if "vision_tower" in n:
            p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loader = DataLoader(ds, batch_size=batch, sampler=TaskMixSampler(ds.tasks, seed=0), collate_fn=SftCollator(processor))
    model.train()

    def step(b):
        loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    it = iter(loader)
    step(next(it))  # warm-up
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        for b in loader:
            step(b)
            done += 1
            if done == steps:
                break
    return steps * batch / (time.perf_counter() - t0)


def _collate_only(model_dir: Path, data: Path, root: Path, steps: int, batch: int) -> float:
    from transformers import AutoProcessor

    from giqa.train.collate import SftCollator
    from giqa.train.data import SftDataset, read_conversations

    ds = SftDataset(read_conversations(data), root)
    collate = SftCollator(AutoProcessor.from_pretrained(model_dir))
    items = [ds[i % len(ds)] for i in range(batch)]
    collate(items)
    t0 = time.perf_counter()
    for s in range(steps):
        collate([ds[(s * batch + i) % len(ds)] for i in range(batch)])
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for a model this small)")
    args = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(args.threads)

    transformers.logging.set_verbosity_error()
    from giqa.models.tiny import build_tiny_llava

    with tempfile.TemporaryDirectory(prefix="giqa-bench-train-") as tmp:
        tmp = Path(tmp)
        model_dir = build_tiny_llava(tmp / "llava")
        data = _make_data(tmp / "data", 32)
        rows = {"giqa.train": [], "plain loop": [], "collator only": []}
        for _ in range(args.repeats):
            rows["giqa.train"].append(_giqa(model_dir, data, tmp / "data", tmp / "run", args.steps, args.batch))
            rows["plain loop"].append(_plain(model_dir, data, tmp / "data", args.steps, args.batch))
            rows["collator only"].append(_collate_only(model_dir, data, tmp / "data", args.steps, args.batch))

    best = {k: max(v) for k, v in rows.items()}
    print(f"tiny LLaVA (CLIP 32px/patch 8 + Llama 2x32), {args.steps} steps x batch {args.batch}, "
          f"best of {args.repeats}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads {torch.get_num_threads()}\n")
    print("| mode | samples/s | vs plain loop |")
    print("|---|---:|---:|")
    for k, v in best.items():
        print(f"| {k} | {v:,.1f} | {v / best['plain loop']:.2f}x |")


if __name__ == "__main__":
    main()
