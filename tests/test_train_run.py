"""giqa.train end to end on a tiny random-weight LLaVA: overfitting, resume, LoRA, load-back, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from giqa import Sample, Task  # noqa: E402
from giqa.train import TrainConfig, TrainConfigError, last_checkpoint, read_log, train  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """A model this small trains many times faster on one thread (and keeps the shared CPUs free)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

ANSWERS = [
    "The image quality is good.",
    "No.",
    "The sky is overexposed.",
    "Yes.",
    "The dog is blurry and the grass is dark.",
    "Blurry.",
    "The car has motion blur.",
    "Clear.",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """8 samples (4 DES as giqa Samples, 4 VQA as LLaVA records) with 24 x 24 images."""
    root = tmp_path_factory.mktemp("train-data")
    (root / "img").mkdir()
    samples, records = [], []
    for i, answer in enumerate(ANSWERS):
        Image.new("RGB", (24, 24), (30 * i, 255 - 30 * i, 60)).save(root / "img" / f"{i}.png")
        question = f"Question {i}: what is the quality?"
        if i % 2 == 0:
            samples.append(Sample(id=f"s{i}", image=f"img/{i}.png", task=Task.des, question=question, answer=answer))
        else:
            records.append(
                {
                    "id": f"l{i}",
                    "image": f"img/{i}.png",
                    "conversations": [{"from": "human", "value": "<image>\n" + question}, {"from": "gpt", "value": answer}],
                }
            )
    (root / "des.jsonl").write_text("".join(s.model_dump_json() + "\n" for s in samples))
    (root / "vqa.json").write_text(json.dumps(records))
    return root


def _cfg(model_dir, data_dir, out, **kw) -> TrainConfig:
    base = dict(
        model=str(model_dir),
        data=[str(data_dir / "des.jsonl"), {"path": str(data_dir / "vqa.json"), "task": "vqa"}],
        image_root=data_dir,
        output_dir=out,
        learning_rate=1e-2,  # far above the paper's 2e-5: a few dozen steps must overfit
        lr_scheduler="constant",
        warmup_ratio=0.0,
        global_batch_size=8,
        per_device_batch_size=8,
        max_steps=60,
        save_steps=100,
        logging_steps=1,
        seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def _losses(out) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_log(out) if "loss" in e}


@pytest.fixture(scope="module")
def trained(tiny_llava_dir, data_dir, tmp_path_factory):
    """One full fine-tuning run: overfits the 8 samples."""
    out = tmp_path_factory.mktemp("run") / "full"
    cfg = _cfg(tiny_llava_dir, data_dir, out, max_steps=100)
    return cfg, train(cfg)


def test_tiny_llava_overfits_eight_samples(trained):
    cfg, result = trained
    losses = _losses(cfg.output_dir)
    assert sorted(losses) == list(range(1, 101))
    first, last = losses[1], losses[100]
    assert math.isfinite(first) and first > 3.0  # random init: near log(vocab size)
    assert last < 0.5 * first, (first, last)
    assert result.completed and result.global_step == 100 == result.max_steps


def test_run_directory_layout(trained):
    cfg, result = trained
    out = cfg.output_dir
    saved = TrainConfig.model_validate_json((out / "giqa_train_config.json").read_text())
    assert saved.learning_rate == cfg.learning_rate and saved.output_dir == out.resolve()
    assert (result.model_dir / "giqa_train_config.json").is_file()
    assert result.model_dir == out / "final" and not (out / "final.incomplete").exists()
    entries = read_log(out)
    assert all({"step", "loss", "learning_rate", "grad_norm"} <= set(e) for e in entries if "loss" in e)
    assert any("train_samples_per_second" in e for e in entries)


def test_vision_tower_stays_frozen_in_full_finetuning(trained, tiny_llava_dir):
    import torch
    from transformers import AutoModelForImageTextToText

    _, result = trained
    before = AutoModelForImageTextToText.from_pretrained(tiny_llava_dir).state_dict()
    after = AutoModelForImageTextToText.from_pretrained(result.model_dir).state_dict()
    vision = [k for k in before if "vision_tower" in k]
    language = [k for k in before if "language_model" in k and k.endswith("q_proj.weight")]
    assert vision and language
    assert all(torch.equal(before[k], after[k]) for k in vision)
    assert all(not torch.equal(before[k], after[k]) for k in language)
    projector = [k for k in before if "multi_modal_projector" in k]
    assert any(not torch.equal(before[k], after[k]) for k in projector)


def test_trained_directory_answers_through_llava_vlm(trained, data_dir):
    from giqa.models.llava_vlm import LlavaVLM

    _, result = trained
    vlm = LlavaVLM(model_id=str(result.model_dir))
    try:
        images = [Image.open(data_dir / "img" / f"{i}.png").convert("RGB") for i in range(len(ANSWERS))]
        prompts = [f"Question {i}: what is the quality?" for i in range(len(ANSWERS))]
        texts = vlm.answer(images, prompts, max_new_tokens=16)
        assert texts == ANSWERS  # the overfitted model recites each training answer and stops
        assert vlm.random_weights  # fine-tuned from a random-weight build: still flagged
    finally:
        vlm.close()


def _stop_at(step: int):
    """A TrainerCallback that stops training after ``step`` (a simulated crash after a checkpoint)."""
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= step:
                control.should_training_stop = True

    return StopAt()


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


@pytest.mark.xfail(
    condition=_transformers_major() < 5, strict=True,
    reason="transformers 4.56 (the declared floor) resumes mid-epoch with a different batch at the first resumed "
    "step (weights, optimizer and scheduler are restored; the data position is not identical); known gap, see "
    "docs/train.md",
)
def test_resume_continues_at_the_right_step(tiny_llava_dir, data_dir, tmp_path):
    # batch 4 from 2 x 2 accumulation, 8 samples: 2 steps an epoch, so step 3 is mid-epoch
    kw = dict(
        max_steps=6,
        save_steps=3,
        global_batch_size=4,
        per_device_batch_size=2,
        task_weights={"des": 1, "vqa": 1},
        lr_scheduler="cosine",
        warmup_ratio=0.2,  # the scheduler state must be restored too
    )
    whole = train(_cfg(tiny_llava_dir, data_dir, tmp_path / "whole", **kw))
    ref = _losses(tmp_path / "whole")

    cfg = _cfg(tiny_llava_dir, data_dir, tmp_path / "split", **kw)
    first = train(cfg, callbacks=[_stop_at(3)])
    assert not first.completed and first.global_step == 3 and first.model_dir is None
    assert last_checkpoint(cfg.output_dir).name == "checkpoint-3"
    assert (cfg.output_dir / "checkpoint-3" / "giqa_train_config.json").is_file()
    with pytest.raises(TrainConfigError, match="already holds checkpoints"):
        train(cfg)
    with pytest.raises(TrainConfigError, match="learning_rate"):
        train(cfg.model_copy(update={"learning_rate": 1e-3}), resume=True)

    with (cfg.output_dir / "train_log.jsonl").open("a") as fh:
        fh.write('{"step": 4, "loss": 1.2')  # a line cut off by the crash
    cut = cfg.output_dir / "checkpoint-5"  # killed while saving: weights, no trainer_state.json
    cut.mkdir()
    (cut / "model.safetensors").write_bytes(b"partial")
    second = train(cfg.model_copy(update={"save_steps": 2}), resume=True)  # saving settings may change
    assert second.resumed_from.name == "checkpoint-3"  # the cut-off checkpoint-5 is skipped
    assert second.completed and second.global_step == 6 == whole.global_step
    got = _losses(cfg.output_dir)
    assert sorted(got) == list(range(1, 7))  # each step logged once: the log continues, no repeats
    for step in range(1, 7):
        assert got[step] == pytest.approx(ref[step], rel=1e-4, abs=1e-5), step
    lrs = {e["step"]: e["learning_rate"] for e in read_log(cfg.output_dir) if "loss" in e}
    ref_lrs = {e["step"]: e["learning_rate"] for e in read_log(tmp_path / "whole") if "loss" in e}
    assert lrs == pytest.approx(ref_lrs)


def test_lora_freezes_everything_but_the_adapters(tiny_llava_dir, data_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    from giqa.train.trainer import _prepare_model

    cfg = _cfg(
        tiny_llava_dir, data_dir, tmp_path / "lora", finetune="lora", lora={"r": 4, "alpha": 8}, max_steps=3
    )
    model = _prepare_model(AutoModelForImageTextToText.from_pretrained(tiny_llava_dir), cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all("language_model" in n for n in trainable)
    assert not any("vision_tower" in n for n, _ in model.named_modules() if "lora_" in n)
    targeted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert targeted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

    result = train(cfg)
    assert result.completed
    assert (cfg.output_dir / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForImageTextToText.from_pretrained(result.model_dir)  # a plain, merged checkpoint
    assert not any("lora_" in k for k in merged.state_dict())

    # resuming a LoRA run restores the adapter (through PEFT) and continues the same loss curve
    split = cfg.model_copy(update={"output_dir": tmp_path / "lora-split", "save_steps": 2})
    assert not train(split, callbacks=[_stop_at(2)]).completed
    assert train(split, resume=True).global_step == 3
    got, ref = _losses(split.output_dir), _losses(cfg.output_dir)
    assert sorted(got) == [1, 2, 3]
    assert [got[k] for k in (1, 2, 3)] == pytest.approx([ref[k] for k in (1, 2, 3)], rel=1e-4, abs=1e-5)


def test_task_weights_shape_the_epoch(tiny_llava_dir, data_dir, tmp_path):
    # 8 samples, 4 of them DES; weight 0 drops VQA, so one epoch of batch 4 is 1 step (not 2)
    cfg = _cfg(
        tiny_llava_dir, data_dir, tmp_path / "des-only", max_steps=None, num_epochs=1,
        global_batch_size=4, per_device_batch_size=4, task_weights={"des": 1, "vqa": 0},
    )
    result = train(cfg)
    assert result.completed and result.max_steps == 1 == result.global_step


def test_precision_auto_is_fp32_without_cuda(tmp_path):
    import torch

    from giqa.train.trainer import _use_bf16

    cfg = _cfg(tmp_path, tmp_path, tmp_path / "o")
    expected = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert _use_bf16(cfg) == expected
    assert _use_bf16(cfg.model_copy(update={"precision": "fp32"})) is False
    assert _use_bf16(cfg.model_copy(update={"precision": "bf16"})) is True


def test_cli_train(tiny_llava_dir, data_dir, tmp_path, capsys):
    from giqa.cli import main

    body = _cfg(tiny_llava_dir, data_dir, tmp_path / "cli", max_steps=2).model_dump(mode="json")
    (tmp_path / "cfg.json").write_text(json.dumps(body))
    assert main(["train", "--config", str(tmp_path / "cfg.json"), "--quiet"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert (tmp_path / "cli" / "final" / "config.json").is_file()
    # a second plain run refuses to overwrite the checkpoints; --resume is accepted
    assert main(["train", "--config", str(tmp_path / "cfg.json"), "--quiet"]) == 1
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "cfg.json"), "--resume", "--quiet", "--max-steps", "3"]) == 1
    assert "max_steps" in capsys.readouterr().err


def test_llava15_lora_recipe_trains_the_projector_at_its_own_rate(tiny_llava_dir, data_dir, tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText, TrainerCallback

    seen = {}

    class Groups(TrainerCallback):
        def on_step_end(self, args, state, control, optimizer=None, **kwargs):
            seen["lrs"] = sorted({g["lr"] for g in optimizer.param_groups})

    cfg = _cfg(tiny_llava_dir, data_dir, tmp_path / "recipe", recipe="llava-1.5-lora", lora={"r": 4, "alpha": 8},
               max_steps=2, learning_rate=2e-4, lr_scheduler="constant", eval_data=[str(data_dir / "des.jsonl")],
               eval_steps=1)
    assert cfg.projector_learning_rate == 2e-5
    result = train(cfg, callbacks=[Groups()])
    assert seen["lrs"] == [2e-5, 2e-4]
    before = AutoModelForImageTextToText.from_pretrained(tiny_llava_dir).state_dict()
    after = AutoModelForImageTextToText.from_pretrained(result.model_dir).state_dict()
    projector = [k for k in before if "multi_modal_projector" in k]
    assert projector and any(not torch.equal(before[k], after[k]) for k in projector)
    assert all(torch.equal(before[k], after[k]) for k in before if "vision_tower" in k)
    evals = [e for e in read_log(cfg.output_dir) if "eval_loss" in e]
    assert [e["step"] for e in evals] == [1, 2] and all(math.isfinite(e["eval_loss"]) for e in evals)


def test_training_arguments_use_the_keywords_the_installed_version_knows(tmp_path, monkeypatch):
    """Older transformers (4.x, 5.17) call it gradient_checkpointing / warmup_ratio /
    evaluation_strategy; giqa must not pass the newer names there."""
    import transformers

    from giqa.train import trainer as T

    captured = {}

    class OldArgs:
        def __init__(self, output_dir, per_device_train_batch_size=8, gradient_accumulation_steps=1, warmup_ratio=0.0,
                     gradient_checkpointing=False, evaluation_strategy="no", eval_steps=None, **kwargs):
            captured.update(kwargs, gradient_checkpointing=gradient_checkpointing, warmup_ratio=warmup_ratio,
                            evaluation_strategy=evaluation_strategy, eval_steps=eval_steps)
            self.world_size = 2
            self.device = "cpu"
            self.gradient_accumulation_steps = gradient_accumulation_steps

    monkeypatch.setattr(transformers, "TrainingArguments", OldArgs)
    cfg = _cfg(tmp_path, tmp_path, tmp_path / "o", gradient_checkpointing=True, warmup_ratio=0.1,
               global_batch_size=16, per_device_batch_size=4, eval_data=[str(tmp_path / "e.jsonl")], eval_steps=3)
    args = T._training_arguments(cfg, bf16=False)
    assert captured["gradient_checkpointing"] is True and "activation_checkpointing" not in captured
    assert captured["warmup_ratio"] == 0.1 and "warmup_steps" not in captured
    assert captured["evaluation_strategy"] == "steps" and captured["eval_steps"] == 3
    assert args.gradient_accumulation_steps == 2  # 16 / (4 per device x the arguments' world size 2)


_DDP_SCRIPT = r"""
import json, os, sys
import torch
torch.set_num_threads(1)
from transformers import TrainerCallback
from giqa.train import TrainConfig, train

rows = []

class CountRows(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        model.register_forward_pre_hook(lambda m, a, kw: rows.append(int(kw["input_ids"].shape[0])), with_kwargs=True)

cfg = TrainConfig.model_validate_json(open(sys.argv[1]).read())
result = train(cfg, callbacks=[CountRows()])
rank = int(os.environ["RANK"])
with open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w") as fh:
    json.dump({"rows": sum(rows), "steps": result.global_step, "model_dir": str(result.model_dir)}, fh)
"""


def test_torchrun_two_cpu_processes(tiny_llava_dir, data_dir, tmp_path):
    """torchrun --nproc_per_node 2 (gloo): one log line per step, the global batch from both processes."""
    import os
    import subprocess
    import sys

    cfg = _cfg(tiny_llava_dir, data_dir, tmp_path / "ddp", max_steps=3, global_batch_size=8, per_device_batch_size=2,
               save_steps=2, logging_steps=1)
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    (tmp_path / "run.py").write_text(_DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(tmp_path / "run.py"), str(tmp_path / "cfg.json"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["steps"] for r in ranks] == [3, 3]
    assert sum(r["rows"] for r in ranks) == 3 * 8, ranks  # 2 per device x 2 processes x accumulation 2, per step
    losses = [e["step"] for e in read_log(cfg.output_dir) if "loss" in e]
    assert losses == [1, 2, 3]  # one line per step: only the main process writes the log
    assert (cfg.output_dir / "final" / "config.json").is_file()
    assert ranks[0]["model_dir"] == ranks[1]["model_dir"] == str(cfg.output_dir / "final")
