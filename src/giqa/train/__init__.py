"""Thin supervised fine-tuning of LLaVA-style models on GIQA data (paper Sec. 4.1).

>>> from giqa.train import load_config, train          # doctest: +SKIP
>>> result = train(load_config("train.json"))           # doctest: +SKIP
>>> result.model_dir                                    # loads as LlavaVLM(model_id=...)  # doctest: +SKIP

Importing ``giqa.train`` is light (config and data readers); torch and transformers are
imported when :func:`train` or the collator runs.
"""

from __future__ import annotations

from giqa._lazy import lazy_exports
from giqa.train.config import CONFIG_FILE, DataSource, LoraSettings, TrainConfig, TrainConfigError, load_config

__all__ = [
    "CONFIG_FILE",
    "Conversation",
    "DataSource",
    "LoraSettings",
    "SftCollator",
    "SftDataset",
    "TaskMixSampler",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "last_checkpoint",
    "load_config",
    "read_conversations",
    "read_log",
    "train",
]

_LAZY = {
    "Conversation": "giqa.train.data",
    "SftDataset": "giqa.train.data",
    "TaskMixSampler": "giqa.train.data",
    "read_conversations": "giqa.train.data",
    "SftCollator": "giqa.train.collate",
    "TrainResult": "giqa.train.trainer",
    "last_checkpoint": "giqa.train.trainer",
    "read_log": "giqa.train.trainer",
    "train": "giqa.train.trainer",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
