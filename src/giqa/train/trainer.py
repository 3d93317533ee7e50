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

import contextlib
import inspect
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, cast

from giqa.data.io import INCOMPLETE, JsonlAppender, atomic_target, read_jsonl, write_jsonl_atomic
from giqa.errors import require
from giqa.train.config import CONFIG_FILE, RESUMABLE_CHANGES, TrainConfig, TrainConfigError

if TYPE_CHECKING:  # transformers is imported where it is used (the extra "train")
    from transformers import PreTrainedModel, Trainer, TrainerCallback

__all__ = ["LOG_FILE", "FINAL_DIR", "TrainResult", "train", "last_checkpoint", "read_log"]

LOG_FILE = "train_log.jsonl"
TRAINER_STATE = "trainer_state.json"
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
    """The complete ``checkpoint-<step>`` folder with the highest step in ``output_dir``, or ``None``.

    Transformers writes ``trainer_state.json`` last when it saves a checkpoint, so a folder
    without it was cut off mid-save (a crash, a killed job): it is skipped with a warning and
    the previous complete checkpoint is used.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = []
    for child in output_dir.iterdir():
        name = child.name
        if child.is_dir() and name.startswith("checkpoint-") and name[len("checkpoint-") :].isdigit():
            steps.append((int(name[len("checkpoint-") :]), child))
    for _, child in sorted(steps, reverse=True):
        if (child / TRAINER_STATE).is_file():
            return child
        log.warning("skipping %s: it has no %s (the run stopped while saving it)", child, TRAINER_STATE)
    return None


def read_log(output_dir: os.PathLike[str] | str) -> list[dict[str, Any]]:
    """The entries of ``train_log.jsonl`` (empty when absent; damaged lines, such as one cut off
    by a crash mid-write, skipped)."""
    return list(read_jsonl(Path(output_dir) / LOG_FILE))


def _absolute(cfg: TrainConfig) -> TrainConfig:
    data = tuple(s.model_copy(update={"path": s.path.resolve()}) for s in cfg.data)
    eval_data = tuple(s.model_copy(update={"path": s.path.resolve()}) for s in cfg.eval_data)
    return cfg.model_copy(
        update={
            "data": data,
            "eval_data": eval_data,
            "image_root": cfg.image_root.resolve(),
            "output_dir": cfg.output_dir.resolve(),
        }
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
    write_jsonl_atomic(path, [e for e in read_jsonl(path) if int(e.get("step", 0)) <= step])


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
        # LLaVA-1.5's LoRA recipe also trains the projector (at its own learning rate)
        modules_to_save=["multi_modal_projector"] if cfg.projector_learning_rate is not None else None,
    )
    try:
        model = peft.get_peft_model(model, lora)
    except ValueError as exc:
        raise TrainConfigError(f"LoRA found no target modules {cfg.lora.target_modules} in the language model: {exc}") from exc
    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def _make_callbacks(cfg: TrainConfig, log_path: Path) -> list[TrainerCallback]:
    require("transformers", "train")
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        """Appends each Trainer log event to ``train_log.jsonl`` (flushed per line)."""

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - Trainer's signature
            if not state.is_world_process_zero or not logs:
                return
            entry = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float, str))}}
            with JsonlAppender(log_path) as appender:
                appender.write(entry)
            if "loss" in logs:
                log.info("step %d/%d loss %.4f lr %.3g", state.global_step, state.max_steps, logs["loss"], logs.get("learning_rate", 0.0))

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.is_world_process_zero:
                cfg.save(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    return [JsonlLog()]


def _accepted(cls: Any) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters)


def _first(accepted: set[str], *names: str) -> str:
    """The first of ``names`` this transformers version accepts (keywords renamed between versions)."""
    for name in names:
        if name in accepted:
            return name
    raise TrainConfigError(f"this transformers version accepts none of {names} in TrainingArguments")  # pragma: no cover


def _training_arguments(cfg: TrainConfig, bf16: bool) -> Any:
    """``TrainingArguments`` for ``cfg``; keywords that changed between transformers versions are
    feature-detected. Gradient accumulation is set afterwards from the arguments' own world size."""
    transformers = require("transformers", "train")
    accepted = _accepted(transformers.TrainingArguments)
    kw: dict[str, Any] = dict(
        output_dir=str(cfg.output_dir),
        per_device_train_batch_size=cfg.per_device_batch_size,
        per_device_eval_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=1,
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        learning_rate=cfg.learning_rate,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        adam_epsilon=cfg.adam_epsilon,
        weight_decay=cfg.weight_decay,
        optim="adamw_torch",
        lr_scheduler_type=cfg.lr_scheduler,
        max_grad_norm=cfg.max_grad_norm,
        bf16=bf16,
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
        report_to=[cfg.report_to] if cfg.report_to != "none" else "none",
    )
    # transformers v5 dropped warmup_ratio: a float warmup_steps in [0, 1) is the ratio there
    kw[_first(accepted, "warmup_ratio", "warmup_steps")] = cfg.warmup_ratio
    # gradient_checkpointing became activation_checkpointing (v5.18+), the old name now an alias
    kw[_first(accepted, "activation_checkpointing", "gradient_checkpointing")] = cfg.gradient_checkpointing
    if cfg.eval_data:
        kw[_first(accepted, "eval_strategy", "evaluation_strategy")] = "steps"
        kw["eval_steps"] = cfg.eval_steps or cfg.save_steps
        kw["prediction_loss_only"] = True
    if not _cuda() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # several CPU processes (torchrun without GPUs): accelerate sets up gloo only when told "cpu"
        kw[_first(accepted, "use_cpu", "no_cuda")] = True
    optional = {"tf32": cfg.tf32, "deepspeed": cfg.deepspeed, "fsdp": cfg.fsdp, "fsdp_config": cfg.fsdp_config}
    kw.update({k: v for k, v in optional.items() if v is not None})
    args = transformers.TrainingArguments(**kw)
    # The Trainer's own world size (torchrun / accelerate / deepspeed launchers), known once the
    # arguments have set up the devices (reading ``device`` does; ``world_size`` alone may not).
    _ = getattr(args, "device", None)
    args.gradient_accumulation_steps = cfg.gradient_accumulation_steps(args.world_size)
    return args


def _cuda() -> bool:
    return bool(require("torch", "train").cuda.is_available())


def _use_bf16(cfg: TrainConfig) -> bool:
    if cfg.precision == "fp32":
        return False
    if cfg.precision == "bf16":
        return True
    return _cuda() and bool(require("torch", "train").cuda.is_bf16_supported())


def _save_final(trainer: Any, processor: Any, cfg: TrainConfig) -> Path:
    """Write ``final/`` through ``final.incomplete/`` so a crash never leaves a half model.

    Called on every process: under DeepSpeed / FSDP the weights are gathered by
    ``trainer.save_model`` (all processes take part); every other write is the main process's.
    """
    final = cfg.output_dir / FINAL_DIR
    main = trainer.is_world_process_zero()
    # The main process stages final.incomplete/ (and renames it); the others only write into it.
    staging = atomic_target(final) if main else contextlib.nullcontext(final.with_name(FINAL_DIR + INCOMPLETE))
    with staging as tmp:
        trainer.accelerator.wait_for_everyone()
        _write_final(trainer, processor, cfg, tmp, main)
        trainer.accelerator.wait_for_everyone()  # every process has written before the rename
    trainer.accelerator.wait_for_everyone()  # and final/ exists for all of them afterwards
    return final


def _write_final(trainer: Any, processor: Any, cfg: TrainConfig, tmp: Path, main: bool) -> None:
    if cfg.deepspeed is not None or cfg.fsdp is not None:
        trainer.save_model(str(tmp))  # sharded weights: gathered by the Trainer (LoRA adapters stay unmerged)
    elif main:
        model = trainer.model
        if cfg.finetune == "lora":
            model.save_pretrained(cfg.output_dir / ADAPTER_DIR)
            if cfg.lora.merge:
                model = model.merge_and_unload()
        model.save_pretrained(tmp)
    if main:
        processor.save_pretrained(tmp)
        cfg.save(tmp)
        # A model fine-tuned from a tiny random-weight build keeps the marker: its outputs stay meaningless.
        marker = Path(cfg.model) / "giqa_tiny.json"
        if marker.is_file():
            shutil.copy2(marker, tmp / marker.name)


def _make_trainer_class(cfg: TrainConfig, sampler: Any) -> type[Trainer]:
    """``Trainer`` with giqa's sampler, the projector's own learning rate and the full-model resume."""
    require("transformers", "train")
    from transformers import Trainer

    class GiqaTrainer(Trainer):
        def _get_train_sampler(self, *args: Any, **kwargs: Any):  # noqa: ANN202 - Trainer's hook
            return sampler

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):  # noqa: ANN001
            if cfg.finetune == "full":
                return  # already loaded with from_pretrained (see train())
            super()._load_from_checkpoint(resume_from_checkpoint, model)

        def create_optimizer(self, *args: Any, **kwargs: Any):  # noqa: ANN202
            model = self.model
            if cfg.projector_learning_rate is None or self.optimizer is not None or model is None:
                return super().create_optimizer(*args, **kwargs)
            decay = set(self.get_decay_parameter_names(model))
            groups: dict[tuple[bool, bool], list[Any]] = {}
            for name, param in model.named_parameters():
                if param.requires_grad:
                    groups.setdefault(("multi_modal_projector" in name, name in decay), []).append(param)
            param_groups = [
                {
                    "params": params,
                    "lr": cfg.projector_learning_rate if projector else cfg.learning_rate,
                    "weight_decay": cfg.weight_decay if decays else 0.0,
                }
                for (projector, decays), params in sorted(groups.items())
            ]
            # Trainer passes its nn.Module (a PeftModel under LoRA) here too; the annotation is narrower.
            optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, cast("PreTrainedModel", model))
            self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
            return self.optimizer

    return GiqaTrainer


def _datasets(cfg: TrainConfig, group: int) -> tuple[Any, Any, Any]:
    """``(train dataset, sampler, eval dataset or None)``; ``group`` = samples per global micro-batch."""
    from giqa.train.data import SftDataset, TaskMixSampler

    dataset = SftDataset.from_sources(((s.path, s.task) for s in cfg.data), cfg.image_root)
    lengths = dataset.lengths() if cfg.group_by_length else None
    sampler = TaskMixSampler(dataset.tasks, cfg.task_weights, seed=cfg.seed, lengths=lengths, group_size=group)
    eval_set = None
    if cfg.eval_data:
        eval_set = SftDataset.from_sources(((s.path, s.task) for s in cfg.eval_data), cfg.image_root)
    return dataset, sampler, eval_set


def _load_model(cfg: TrainConfig, ckpt: Optional[Path]) -> Any:
    """The model, loaded after ``TrainingArguments`` so DeepSpeed ZeRO-3 can shard it while loading."""
    transformers = require("transformers", "train")
    from giqa.models._hf import dtype_kwarg

    # Full fine-tuning resumes with the checkpoint's weights read by from_pretrained, which maps the
    # saved key names (transformers v5 writes LLaVA checkpoints under their legacy names, and
    # Trainer's own raw load_state_dict(strict=False) would silently match none of them).
    weights = str(ckpt) if ckpt is not None and cfg.finetune == "full" else cfg.model
    kwargs: dict[str, Any] = {"trust_remote_code": False, dtype_kwarg(): "float32"}
    if cfg.attn_implementation is not None:
        kwargs["attn_implementation"] = cfg.attn_implementation
    model = transformers.AutoModelForImageTextToText.from_pretrained(weights, **kwargs)
    return _prepare_model(model, cfg)


def _start_log(cfg: TrainConfig, ckpt: Optional[Path], main: bool) -> tuple[Path, int]:
    """Save the run config and set up ``train_log.jsonl`` (main process); the step resumed from."""
    log_path = cfg.output_dir / LOG_FILE
    start_step = 0
    if ckpt is not None:
        start_step = int(json.loads((ckpt / TRAINER_STATE).read_text(encoding="utf-8"))["global_step"])
        log.info("resuming from %s (step %d)", ckpt, start_step)
    if main:
        cfg.output_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(cfg.output_dir)
        if ckpt is not None:
            _truncate_log(log_path, start_step)
        elif log_path.exists():
            log_path.unlink()
    return log_path, start_step


def train(config: TrainConfig, *, resume: bool = False, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data``; return where the results are.

    ``resume=True`` continues from the last complete ``checkpoint-<step>`` in
    ``config.output_dir`` (model, optimizer, scheduler, RNG state and data position), after
    checking that the saved run config matches (only logging/saving settings may change); with no
    checkpoint it starts a new run. ``resume=False`` refuses an ``output_dir`` that already holds
    checkpoints. ``callbacks`` are extra ``transformers.TrainerCallback`` objects.

    Under ``torchrun`` / ``accelerate launch`` every process calls this; gradient accumulation
    comes from the Trainer's world size, and only the main process writes the config, the log
    and ``final/``. The final model (LoRA merged unless ``lora.merge`` is false) and processor
    are written to ``output_dir/final`` once the last step is done; ``TrainResult.model_dir``
    points there.
    """
    transformers = require("transformers", "train")
    require("torch", "train")
    from giqa.train.collate import SftCollator

    cfg = _absolute(config)
    ckpt = _check_resume(cfg, resume)
    args = _training_arguments(cfg, _use_bf16(cfg))  # before the model: ZeRO-3 loads it sharded
    dataset, sampler, eval_set = _datasets(cfg, cfg.per_device_batch_size * args.world_size)
    log_path, start_step = _start_log(cfg, ckpt, args.process_index == 0)
    transformers.set_seed(cfg.seed)
    processor = transformers.AutoProcessor.from_pretrained(cfg.model, trust_remote_code=False)
    model = _load_model(cfg, ckpt)
    trainer = _make_trainer_class(cfg, sampler)(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_set,
        data_collator=SftCollator(processor, max_length=cfg.max_length, image_aspect=cfg.image_aspect),
        callbacks=[*_make_callbacks(cfg, log_path), *callbacks],
        **_processing_kwarg(transformers, processor),
    )
    output = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
    state = trainer.state
    done = state.global_step >= state.max_steps
    model_dir = _save_final(trainer, processor, cfg) if done else None
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


def _processing_kwarg(transformers: Any, processor: Any) -> dict[str, Any]:
    """``processing_class=`` (transformers >= 4.46) or ``tokenizer=`` (before)."""
    accepted = _accepted(transformers.Trainer)
    return {"processing_class" if "processing_class" in accepted else "tokenizer": processor}
