"""``train(config)``: supervised fine-tuning on transformers' ``Trainer``, kept thin.

What giqa adds to ``Trainer``: the data (:mod:`giqa.train.data`), the answer-only collator
(:mod:`giqa.train.collate`), a seeded task-mixing sampler, freezing of the vision tower / LoRA
on the language model, a JSONL log, the run config beside every checkpoint, the resume checks,
and a final directory that loads back as ``LlavaVLM(model_id=<dir>)``.

Layout of ``output_dir``::

    giqa_train_config.json   the run's TrainConfig (also copied into each checkpoint)
    train_log.jsonl          one JSON object per Trainer log event (step, loss, lr, ...)
    checkpoint-<step>/       model (or adapter), optimizer, scheduler, RNG, trainer state
    final/                   model + processor (LoRA merged), written via final.incomplete/
    adapter/                 the LoRA adapter alone (finetune="lora" only)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from giqa.errors import require
from giqa.train.config import CONFIG_FILE, RESUMABLE_CHANGES, TrainConfig, TrainConfigError

__all__ = ["LOG_FILE", "FINAL_DIR", "TrainResult", "train", "last_checkpoint", "read_log"]

LOG_FILE = "train_log.jsonl"
FINAL_DIR = "final"
ADAPTER_DIR = "adapter"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a run left behind. ``model_dir`` is ``None`` when the run stopped before its end;
    ``train_loss`` is the mean loss of the steps this call ran (``None`` if it ran none)."""

    output_dir: Path
    model_dir: Optional[Path]
    global_step: int
    max_steps: int
    train_loss: Optional[float]
    log_path: Path
    resumed_from: Optional[Path]

    @property
    def completed(self) -> bool:
        return self.model_dir is not None


def last_checkpoint(output_dir: os.PathLike[str] | str) -> Optional[Path]:
    """The ``checkpoint-<step>`` folder with the highest step in ``output_dir``, or ``None``."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = []
    for child in output_dir.iterdir():
        name = child.name
        if child.is_dir() and name.startswith("checkpoint-") and name[len("checkpoint-") :].isdigit():
            steps.append((int(name[len("checkpoint-") :]), child))
    return max(steps)[1] if steps else None


def _entries(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # blank, or a line cut off by a crash mid-write
        if isinstance(entry, dict):
            out.append(entry)
    return out


def read_log(output_dir: os.PathLike[str] | str) -> list[dict[str, Any]]:
    """The entries of ``train_log.jsonl`` (empty when absent; damaged lines skipped)."""
    path = Path(output_dir) / LOG_FILE
    return _entries(path) if path.is_file() else []


def _absolute(cfg: TrainConfig) -> TrainConfig:
    data = tuple(s.model_copy(update={"path": s.path.resolve()}) for s in cfg.data)
    return cfg.model_copy(
        update={"data": data, "image_root": cfg.image_root.resolve(), "output_dir": cfg.output_dir.resolve()}
    )


def _check_resume(cfg: TrainConfig, resume: bool) -> Optional[Path]:
    ckpt = last_checkpoint(cfg.output_dir)
    if ckpt is None:
        if resume:
            log.info("no checkpoint in %s: starting a new run", cfg.output_dir)
        return None
    if not resume:
        raise TrainConfigError(
            f"{cfg.output_dir} already holds checkpoints (latest {ckpt.name}); resume (--resume) or choose another output_dir"
        )
    saved_path = cfg.output_dir / CONFIG_FILE
    try:
        saved = TrainConfig.model_validate_json(saved_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainConfigError(f"cannot read the run config {saved_path} to resume: {exc}") from exc
    changed = [k for k in cfg.changes_from(saved) if k not in RESUMABLE_CHANGES]
    if changed:
        raise TrainConfigError(
            f"cannot resume {cfg.output_dir}: these settings differ from the saved run: {', '.join(changed)} "
            f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change)"
        )
    return ckpt


def _truncate_log(path: Path, step: int) -> None:
    """Drop entries logged after ``step`` (the steps a resumed run will redo) and damaged lines."""
    if not path.is_file():
        return
    keep = [e for e in _entries(path) if int(e.get("step", 0)) <= step]
    tmp = path.with_name(path.name + ".incomplete")
    tmp.write_text("".join(json.dumps(e) + "\n" for e in keep), encoding="utf-8")
    os.replace(tmp, path)


def _vision_params(model: Any) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if "vision_tower" in n.split(".")]


def _prepare_model(model: Any, cfg: TrainConfig) -> Any:
    """Freeze the vision tower (unless trained) or wrap the model with LoRA adapters."""
    vision = _vision_params(model)
    if not vision:
        raise TrainConfigError(f"cannot find a vision tower in {type(model).__name__}; giqa.train handles LLaVA-style models")
    if cfg.finetune == "full":
        if not cfg.train_vision_tower:
            for _, p in vision:
                p.requires_grad_(False)
        return model
    peft = require("peft", "train")
    names = "|".join(cfg.lora.target_modules)
    lora = peft.LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=rf".*\blanguage_model\..*\.(?:{names})",
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        model = peft.get_peft_model(model, lora)
    except ValueError as exc:
        raise TrainConfigError(f"LoRA found no target modules {cfg.lora.target_modules} in the language model: {exc}") from exc
    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def _make_callbacks(cfg: TrainConfig, log_path: Path) -> list[Any]:
    transformers = require("transformers", "train")

    class JsonlLog(transformers.TrainerCallback):
        """Appends each Trainer log event to ``train_log.jsonl`` (flushed per line)."""

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - Trainer's signature
            if not state.is_world_process_zero or not logs:
                return
            entry = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float, str))}}
            with log_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
            if "loss" in logs:
                log.info("step %d/%d loss %.4f lr %.3g", state.global_step, state.max_steps, logs["loss"], logs.get("learning_rate", 0.0))

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.is_world_process_zero:
                cfg.save(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    return [JsonlLog()]


def _training_arguments(cfg: TrainConfig, bf16: bool) -> Any:
    transformers = require("transformers", "train")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return transformers.TrainingArguments(
        output_dir=str(cfg.output_dir),
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps(world_size),
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        learning_rate=cfg.learning_rate,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        adam_epsilon=cfg.adam_epsilon,
        weight_decay=cfg.weight_decay,
        optim="adamw_torch",
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers v5: a float in [0, 1) is a ratio of the total steps
        max_grad_norm=cfg.max_grad_norm,
        bf16=bf16,
        activation_checkpointing=cfg.gradient_checkpointing,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=cfg.dataloader_num_workers,
        dataloader_pin_memory=_cuda(),
        remove_unused_columns=False,  # the collator needs the raw conversation and image
        report_to="none",
    )


def _cuda() -> bool:
    return bool(require("torch", "train").cuda.is_available())


def _use_bf16(cfg: TrainConfig) -> bool:
    if cfg.precision == "fp32":
        return False
    if cfg.precision == "bf16":
        return True
    return _cuda() and bool(require("torch", "train").cuda.is_bf16_supported())


def _save_final(trainer: Any, processor: Any, cfg: TrainConfig) -> Path:
    """Write ``final/`` through ``final.incomplete/`` so a crash never leaves a half model."""
    out = cfg.output_dir
    final, tmp = out / FINAL_DIR, out / (FINAL_DIR + ".incomplete")
    if tmp.exists():
        shutil.rmtree(tmp)
    model = trainer.model
    if cfg.finetune == "lora":
        model.save_pretrained(out / ADAPTER_DIR)
        if cfg.lora.merge:
            model = model.merge_and_unload()
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    cfg.save(tmp)
    # A model fine-tuned from a tiny random-weight build keeps the marker: its outputs stay meaningless.
    marker = Path(cfg.model) / "giqa_tiny.json"
    if marker.is_file():
        shutil.copy2(marker, tmp / marker.name)
    if final.exists():
        old = out / (FINAL_DIR + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    return final


def train(config: TrainConfig, *, resume: bool = False, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data``; return where the results are.

    ``resume=True`` continues from the last ``checkpoint-<step>`` in ``config.output_dir``
    (model, optimizer, scheduler, RNG state and data position), after checking that the saved
    run config matches (only logging/saving settings may change); with no checkpoint it starts
    a new run. ``resume=False`` refuses an ``output_dir`` that already holds checkpoints.
    ``callbacks`` are extra ``transformers.TrainerCallback`` objects.

    The final model (LoRA merged unless ``lora.merge`` is false) and processor are written to
    ``output_dir/final`` once the last step is done; ``TrainResult.model_dir`` points there.
    """
    transformers = require("transformers", "train")
    require("torch", "train")
    from giqa.train.collate import SftCollator
    from giqa.train.data import SftDataset, TaskMixSampler

    cfg = _absolute(config)
    ckpt = _check_resume(cfg, resume)
    dataset = SftDataset.from_sources(((s.path, s.task) for s in cfg.data), cfg.image_root)
    sampler = TaskMixSampler(dataset.tasks, cfg.task_weights, seed=cfg.seed)

    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(cfg.output_dir)
    log_path = cfg.output_dir / LOG_FILE
    start_step = 0
    if ckpt is not None:
        start_step = int(json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
        _truncate_log(log_path, start_step)
        log.info("resuming from %s (step %d)", ckpt, start_step)
    elif log_path.exists():
        log_path.unlink()

    transformers.set_seed(cfg.seed)
    processor = transformers.AutoProcessor.from_pretrained(cfg.model, trust_remote_code=False)
    # Full fine-tuning resumes with the checkpoint's weights read by from_pretrained, which maps the
    # saved key names (transformers v5 writes LLaVA checkpoints under their legacy names, and
    # Trainer's own raw load_state_dict(strict=False) would silently match none of them).
    weights = str(ckpt) if ckpt is not None and cfg.finetune == "full" else cfg.model
    model = transformers.AutoModelForImageTextToText.from_pretrained(weights, trust_remote_code=False, dtype="float32")
    model = _prepare_model(model, cfg)
    collator = SftCollator(processor, max_length=cfg.max_length)

    class _Trainer(transformers.Trainer):
        def _get_train_sampler(self, train_dataset=None):  # noqa: ANN001 - Trainer's signature
            return sampler

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):  # noqa: ANN001
            if cfg.finetune == "full":
                return  # already loaded above
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    trainer = _Trainer(
        model=model,
        args=_training_arguments(cfg, _use_bf16(cfg)),
        train_dataset=dataset,
        data_collator=collator,
        processing_class=processor,
        callbacks=[*_make_callbacks(cfg, log_path), *callbacks],
    )
    output = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
    state = trainer.state
    done = state.global_step >= state.max_steps
    model_dir = _save_final(trainer, processor, cfg) if done and trainer.is_world_process_zero() else None
    if done:
        log.info("finished %d steps; final model in %s", state.global_step, model_dir)
    return TrainResult(
        output_dir=cfg.output_dir,
        model_dir=model_dir,
        global_step=state.global_step,
        max_steps=state.max_steps,
        train_loss=getattr(output, "training_loss", None) if state.global_step > start_step else None,
        log_path=log_path,
        resumed_from=ckpt,
    )
