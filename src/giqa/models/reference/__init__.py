"""The real checkpoints' small configuration files (templates, special tokens, processor settings).

``load(name, file)`` returns one parsed JSON file of a reference checkpoint; ``names()`` lists
them. Where each file comes from is in ``SOURCES.md`` beside this module. No weights, no
vocabularies: :mod:`giqa.models.tiny` builds small tokenizers in code and applies these settings.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

__all__ = ["LLAVA_15", "LLAVA_INTERLEAVE", "LLAMA_3_INSTRUCT", "QWEN_25_INSTRUCT", "GROUNDING_DINO", "names", "load", "path", "chat_template"]

LLAVA_15 = "llava-1.5-7b-hf"
LLAVA_INTERLEAVE = "llava-interleave-qwen-0.5b-hf"
LLAMA_3_INSTRUCT = "Meta-Llama-3-8B-Instruct"
QWEN_25_INSTRUCT = "Qwen2.5-0.5B-Instruct"
GROUNDING_DINO = "grounding-dino-tiny"

_ROOT = Path(__file__).resolve().parent


def names() -> list[str]:
    """The reference checkpoints shipped (folder names)."""
    return sorted(p.name for p in _ROOT.iterdir() if p.is_dir() and not p.name.startswith("_"))


def path(name: str) -> Path:
    """The folder of reference checkpoint ``name``; ``KeyError`` naming the choices if unknown."""
    folder = _ROOT / name
    if not folder.is_dir():
        raise KeyError(f"no reference checkpoint {name!r}; available: {', '.join(names())}")
    return folder


@lru_cache(maxsize=None)
def _read(name: str, file: str) -> str:
    return (path(name) / file).read_text(encoding="utf-8")


def load(name: str, file: str) -> Any:
    """Parsed ``file`` (e.g. ``"tokenizer_config.json"``) of reference checkpoint ``name``."""
    return json.loads(_read(name, file))


def chat_template(name: str) -> Optional[str]:
    """The chat template: ``chat_template.json`` when present, else the tokenizer config's."""
    if (path(name) / "chat_template.json").is_file():
        return load(name, "chat_template.json")["chat_template"]
    return load(name, "tokenizer_config.json").get("chat_template")
