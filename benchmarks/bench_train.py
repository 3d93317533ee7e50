"""Training throughput of giqa.train against a plain PyTorch loop (tiny random-weight LLaVA, CPU; pytest-benchmark).

Run: ``.venv/bin/python -m pytest benchmarks/bench_train.py`` (``GIQA_BENCH_TRAIN_STEPS``
optimiser steps, default 20, batch 8, 3 rounds each, torch on 1 thread).

Same tiny LLaVA (giqa.models.tiny), same 32 samples (64 x 64 images, mixed DES/VQA), same
collator, batch, optimiser (AdamW, fp32) and step count, same process. Contenders, each timed
from the model directory on disk to the trained model saved:

- ``giqa.train``: ``train(TrainConfig(...))``: transformers ``Trainer`` with giqa's dataset,
  sampler, collator, JSONL log, one checkpoint at the last step and the final model;
- ``plain loop`` (the peer): load the processor and model, ``DataLoader(dataset,
  collate_fn=SftCollator)`` -> forward with labels -> backward -> ``AdamW.step()``, then
  ``save_pretrained``; nothing else: the floor any wrapper adds to;
- ``collator only``: the data path alone (image decode + chat template + processor + labels)
  for as many batches (processor loaded untimed).

``extra_info`` has each one's samples/s over its training steps alone (``giqa.train``: from
``on_train_begin`` to ``on_train_end``, what Trainer's ``train_runtime`` covers; the loop: its
steps), the figure ``benchmarks/results/train.md`` records.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from itertools import count
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

STEPS = int(os.environ.get("GIQA_BENCH_TRAIN_STEPS", "20"))
BATCH = 8
GROUP = f"training, tiny LLaVA (CLIP 32 px / patch 8 + Llama 2 x 32), {STEPS} steps x batch {BATCH}, fp32, 1 thread"


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


_SETUP: dict = {}


def setup_models(tmp_path_factory) -> tuple[Path, Path, Path]:
    """``(model_dir, data file, image root)``: the tiny LLaVA and 32 samples, made once."""
    if not _SETUP:
        import torch
        import transformers

        from giqa.models.tiny import build_tiny_llava

        torch.set_num_threads(1)  # 1 thread is fastest for a model this small on a shared machine
        transformers.logging.set_verbosity_error()
        tmp = tmp_path_factory.mktemp("train")
        _SETUP.update(model=build_tiny_llava(tmp / "llava"), data=_make_data(tmp / "data", 32), root=tmp / "data")
    return _SETUP["model"], _SETUP["data"], _SETUP["root"]


def _steps_clock():
    """A TrainerCallback recording the seconds from the first step's start to the last's end."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.t0)

    return Clock()


def test_giqa_train(measure, tmp_path, tmp_path_factory):
    from giqa.train import TrainConfig, train

    model_dir, data, root = setup_models(tmp_path_factory)
    clock = _steps_clock()
    runs = count()

    def run():
        out = tmp_path / f"run{next(runs)}"
        cfg = TrainConfig(
            model=str(model_dir), data=[str(data)], image_root=root, output_dir=out, learning_rate=1e-3,
            global_batch_size=BATCH, per_device_batch_size=BATCH, max_steps=STEPS, save_steps=STEPS,
            logging_steps=1, precision="fp32",
        )
        train(cfg, callbacks=[clock])
        shutil.rmtree(out, ignore_errors=True)

    measure(GROUP, run, rounds=3, warmup=0)
    measure.info(steps_samples_per_s=round(STEPS * BATCH / min(clock.seconds), 1))


def test_plain_loop(measure, tmp_path, tmp_path_factory):
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from giqa.train.collate import SftCollator
    from giqa.train.data import SftDataset, TaskMixSampler, read_conversations

    model_dir, data, root = setup_models(tmp_path_factory)
    steps_seconds: list[float] = []
    runs = count()

    def run():
        ds = SftDataset(read_conversations(data), root)
        processor = AutoProcessor.from_pretrained(model_dir)
        model = AutoModelForImageTextToText.from_pretrained(model_dir)
        for name, p in model.named_parameters():
            if "vision_tower" in name:
                p.requires_grad_(False)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        loader = DataLoader(ds, batch_size=BATCH, sampler=TaskMixSampler(ds.tasks, seed=0),
                            collate_fn=SftCollator(processor))
        model.train()
        t0, done = time.perf_counter(), 0
        while done < STEPS:
            for b in loader:
                model(**b).loss.backward()
                opt.step()
                opt.zero_grad()
                done += 1
                if done == STEPS:
                    break
        steps_seconds.append(time.perf_counter() - t0)
        out = tmp_path / f"plain{next(runs)}"
        model.save_pretrained(out)
        processor.save_pretrained(out)
        shutil.rmtree(out, ignore_errors=True)

    measure(GROUP, run, rounds=3, warmup=0)
    measure.info(steps_samples_per_s=round(STEPS * BATCH / min(steps_seconds), 1))


def test_collator_only(measure, tmp_path_factory):
    from transformers import AutoProcessor

    from giqa.train.collate import SftCollator
    from giqa.train.data import SftDataset, read_conversations

    model_dir, data, root = setup_models(tmp_path_factory)
    ds = SftDataset(read_conversations(data), root)
    collate = SftCollator(AutoProcessor.from_pretrained(model_dir))

    def run():
        for s in range(STEPS):
            collate([ds[(s * BATCH + i) % len(ds)] for i in range(BATCH)])

    measure(GROUP, run, rounds=3)
    measure.info(steps_samples_per_s=round(STEPS * BATCH / measure.seconds, 1))


if __name__ == "__main__":
    import pytest

    sys.exit(pytest.main([__file__, "-p", "no:cacheprovider", *sys.argv[1:]]))
