"""Training configuration: one Pydantic model, defaults from the paper (Sec. 4.1).

Paper: AdamW (beta1 0.9, beta2 0.999), learning rate 2e-5, cosine decay, warmup ratio 0.03,
batch size 64, 2 epochs, full fine-tuning, cross-entropy on the answer tokens. Where the paper
says "other hyper-parameters follow the default settings of each model", the defaults are
LLaVA-1.5's own fine-tuning recipe (weight decay 0, max grad norm 1.0, max length 2048, vision
tower frozen, LoRA r 128 / alpha 256 / dropout 0.05).

Importing this module is light (Pydantic only): no torch, no transformers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from giqa.data.io import write_text_atomic
from giqa.errors import GiqaError
from giqa.types import Task

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_MODEL",
    "DataSource",
    "LoraSettings",
    "RECIPES",
    "TrainConfig",
    "TrainConfigError",
    "load_config",
]

DEFAULT_MODEL = "llava-hf/llava-1.5-7b-hf"
CONFIG_FILE = "giqa_train_config.json"

# Settings that may change between a run and its resumption without changing what is learned.
RESUMABLE_CHANGES = frozenset(
    {"logging_steps", "save_steps", "save_total_limit", "dataloader_num_workers", "report_to", "eval_steps"}
)

# LLaVA-1.5's LoRA fine-tuning recipe (its scripts/v1_5/finetune_lora.sh): LoRA r 128 / alpha 256
# on the language model at lr 2e-4, the projector trained at 2e-5, the vision tower frozen.
RECIPES: dict[str, dict[str, Any]] = {
    "llava-1.5-lora": {
        "finetune": "lora",
        "learning_rate": 2e-4,
        "projector_learning_rate": 2e-5,
        "lora": {"r": 128, "alpha": 256, "dropout": 0.05},
        "weight_decay": 0.0,
        "warmup_ratio": 0.03,
        "lr_scheduler": "cosine",
    },
}


class TrainConfigError(GiqaError, ValueError):
    """A training configuration is missing, malformed, inconsistent or does not match a run."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(_Strict):
    """One training file or folder, in any format ``giqa build export`` writes.

    ``path``: a ``.jsonl`` file (one record a line), a ``.json`` file (a list of records), a
    ``.parquet`` file or a Hugging Face ``datasets`` folder (``save_to_disk``).
    Each record is a giqa :class:`~giqa.types.Sample` or a LLaVA conversation record
    (``{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}...]}``), told apart
    by the ``conversations`` key. ``task`` is the task of LLaVA records that carry no ``task``
    field (Samples always carry their own); default DES.
    """

    path: Path
    task: Optional[Task] = None

    @model_validator(mode="before")
    @classmethod
    def _from_str(cls, data: Any) -> Any:
        if isinstance(data, (str, os.PathLike)):
            return {"path": data}
        return data


class LoraSettings(_Strict):
    """LoRA through PEFT, on the language model's projections only (never the vision tower).

    ``target_modules`` are module *names* (the last part of the dotted path) matched only
    inside the language model; ``merge`` merges the adapters into the weights for the final
    model so that it loads as a plain checkpoint (the adapter is saved beside it as well).
    """

    r: int = Field(128, gt=0)
    alpha: int = Field(256, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    merge: bool = True

    @field_validator("target_modules")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("lora.target_modules must name at least one module")
        for name in v:
            if not name.isidentifier():
                raise ValueError(f"lora.target_modules holds {name!r}: give module names such as 'q_proj'")
        return v


class TrainConfig(_Strict):
    """Everything one supervised fine-tuning run needs; saved as ``giqa_train_config.json``.

    Batch: ``global_batch_size`` samples per optimiser step, reached from
    ``per_device_batch_size`` x number of processes x gradient accumulation steps (which must
    divide exactly). ``num_epochs`` passes over the data unless ``max_steps`` (optimiser steps)
    is set. ``task_weights`` (e.g. ``{"des": 1, "vqa": 1}``) mixes tasks by the share of samples
    each contributes to an epoch; ``None`` keeps the data's own proportions (the paper's
    GIQA-160K multi-task training concatenates DES and VQA); weight 0 leaves a task out.
    ``precision="auto"`` is bf16 mixed precision on CUDA devices that support it, else fp32.
    ``recipe="llava-1.5-lora"`` fills LLaVA-1.5's LoRA settings (:data:`RECIPES`) for every
    field the config leaves unset. The other options are described in ``docs/train.md``.
    """

    model: str = DEFAULT_MODEL
    data: tuple[DataSource, ...] = Field(min_length=1)
    image_root: Path
    output_dir: Path

    task_weights: Optional[dict[Task, float]] = None

    learning_rate: float = Field(2e-5, gt=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)

    global_batch_size: int = Field(64, gt=0)
    per_device_batch_size: int = Field(16, gt=0)
    num_epochs: float = Field(2.0, gt=0)
    max_steps: Optional[int] = Field(None, gt=0)
    max_length: Optional[int] = Field(2048, gt=0)

    finetune: Literal["full", "lora"] = "full"
    train_vision_tower: bool = False
    lora: LoraSettings = LoraSettings()

    precision: Literal["auto", "bf16", "fp32"] = "auto"
    gradient_checkpointing: bool = False
    seed: int = 42

    recipe: Optional[Literal["llava-1.5-lora"]] = None
    projector_learning_rate: Optional[float] = Field(None, gt=0)
    image_aspect: Literal["pad", "crop", "native"] = "pad"
    group_by_length: bool = False
    attn_implementation: Optional[Literal["eager", "sdpa", "flash_attention_2"]] = None
    tf32: Optional[bool] = None
    report_to: Literal["none", "tensorboard", "wandb"] = "none"
    eval_data: tuple[DataSource, ...] = ()
    eval_steps: Optional[int] = Field(None, gt=0)
    deepspeed: Optional[Union[str, dict[str, Any]]] = None
    fsdp: Optional[str] = None
    fsdp_config: Optional[dict[str, Any]] = None

    save_steps: int = Field(500, gt=0)
    save_total_limit: Optional[int] = Field(None, gt=0)
    logging_steps: int = Field(10, gt=0)
    dataloader_num_workers: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _apply_recipe(cls, data: Any) -> Any:
        """A named recipe fills the settings the config does not give itself."""
        if isinstance(data, dict) and data.get("recipe") is not None:
            recipe = RECIPES.get(data["recipe"])
            if recipe is None:
                raise ValueError(f"unknown recipe {data['recipe']!r}; recipes: {', '.join(RECIPES)}")
            data = {**recipe, **data}
        return data

    @field_validator("data", "eval_data", mode="before")
    @classmethod
    def _one_source(cls, v: Any) -> Any:
        return [v] if isinstance(v, (str, os.PathLike, dict)) else v

    @field_validator("task_weights")
    @classmethod
    def _weights(cls, v: Optional[dict[Task, float]]) -> Optional[dict[Task, float]]:
        if v is None:
            return v
        for task, w in v.items():
            if not (w >= 0 and w != float("inf")):
                raise ValueError(f"task_weights[{task.value}] = {w}: weights must be finite and >= 0")
        if not any(w > 0 for w in v.values()):
            raise ValueError("task_weights: at least one task needs a weight > 0")
        return v

    @model_validator(mode="after")
    def _lora_only_options(self) -> "TrainConfig":
        if self.finetune == "lora" and self.train_vision_tower:
            raise ValueError("finetune='lora' keeps the vision tower frozen; unset train_vision_tower")
        return self

    @model_validator(mode="after")
    def _eval_needs_data(self) -> "TrainConfig":
        if self.eval_steps is not None and not self.eval_data:
            raise ValueError("eval_steps is set but eval_data is empty")
        return self

    # -- derived -------------------------------------------------------------------------
    def gradient_accumulation_steps(self, world_size: int = 1) -> int:
        """``global_batch_size / (per_device_batch_size * world_size)``; must be a whole number."""
        per_step = self.per_device_batch_size * world_size
        if self.global_batch_size % per_step:
            raise TrainConfigError(
                f"global_batch_size {self.global_batch_size} is not a multiple of per_device_batch_size "
                f"{self.per_device_batch_size} x {world_size} process(es) = {per_step}"
            )
        return self.global_batch_size // per_step

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def save(self, directory: Union[str, Path]) -> Path:
        """Write ``giqa_train_config.json`` into ``directory`` (atomically) and return its path."""
        return write_text_atomic(Path(directory) / CONFIG_FILE, self.to_json() + "\n")

    def changes_from(self, other: "TrainConfig") -> list[str]:
        """Names of the top-level fields whose values differ from ``other``'s."""
        mine, theirs = self.model_dump(mode="json"), other.model_dump(mode="json")
        return sorted(k for k in mine if mine[k] != theirs.get(k))


def load_config(path: Union[str, Path], **overrides: Any) -> TrainConfig:
    """Read a :class:`TrainConfig` from a ``.json``, ``.yaml`` or ``.yml`` file.

    Relative ``data`` paths, ``image_root`` and ``output_dir`` are resolved against the
    config file's folder. ``overrides`` replace top-level keys before validation. Raises
    :class:`TrainConfigError` naming the file and the offending fields.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrainConfigError(f"cannot read training config {path}: {exc}") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            raw = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            from giqa.errors import require

            raw = require("yaml", "train").safe_load(text)
        else:
            raise TrainConfigError(f"training config {path} must end in .json, .yaml or .yml")
    except TrainConfigError:
        raise
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise TrainConfigError(f"training config {path} is not valid {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(raw, dict):
        raise TrainConfigError(f"training config {path} must hold a mapping of settings, got {type(raw).__name__}")
    raw = {**raw, **overrides}
    base = path.resolve().parent
    for key in ("image_root", "output_dir"):
        if isinstance(raw.get(key), str):
            raw[key] = str(base / raw[key])
    for key in ("data", "eval_data"):
        if isinstance(raw.get(key), (list, tuple)):
            raw[key] = [_resolve_source(item, base) for item in raw[key]]
        elif isinstance(raw.get(key), str):
            raw[key] = [_resolve_source(raw[key], base)]
    if isinstance(raw.get("deepspeed"), str) and raw["deepspeed"].endswith(".json"):
        raw["deepspeed"] = str(base / raw["deepspeed"])
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise TrainConfigError(f"training config {path} is invalid:\n{exc}") from exc


def _resolve_source(item: Any, base: Path) -> Any:
    if isinstance(item, str):
        return {"path": str(base / item)}
    if isinstance(item, dict) and isinstance(item.get("path"), str):
        return {**item, "path": str(base / item["path"])}
    return item
