"""Pydantic settings shared by the real backends (validated, frozen, JSON-serialisable).

Every backend takes ``settings=`` (its settings model) and/or keyword overrides, so
``giqa.models.create("detector", "grounding-dino", box_threshold=0.3)`` validates the keywords.
"""

from __future__ import annotations

import os
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BackendSettings", "HFSettings", "ImageTextSettings", "DType", "Device"]

Device = str  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
DType = Literal["auto", "float32", "float16", "bfloat16"]


class BackendSettings(BaseModel):
    """Settings every backend has.

    ``random_weights``: ``None`` means "detect": True when ``model_id`` is a directory built by
    :mod:`giqa.models.tiny` (it holds a ``giqa_tiny.json`` marker), False otherwise.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model_id: str = Field(min_length=1)
    random_weights: Optional[bool] = None
    batch_size: int = Field(8, ge=1, le=4096)


class HFSettings(BackendSettings):
    """Settings of backends that load a Hugging Face checkpoint (hub id or local directory).

    - ``device``: ``"auto"`` picks CUDA, then MPS, then CPU.
    - ``dtype``: ``"auto"`` is bfloat16 on a GPU that supports it, float16 on other GPUs, and
      float32 on CPU/MPS.
    - ``local_files_only``: ``None`` follows ``HF_HUB_OFFLINE``; True never touches the network.
    - ``trust_remote_code``: False by default (security); only set it for a repository you trust.
    """

    revision: Optional[str] = None
    cache_dir: Optional[str] = None
    device: Device = "auto"
    dtype: DType = "auto"
    local_files_only: Optional[bool] = None
    trust_remote_code: bool = False

    def offline(self) -> bool:
        if self.local_files_only is not None:
            return self.local_files_only
        return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


class ImageTextSettings(HFSettings):
    """Settings of the LLaVA-style image+text backends (quality filter, VLM).

    - ``image_aspect``: how an image reaches the vision tower (:mod:`giqa.models.image_geometry`):
      ``"pad"`` (default; pad to a square with the processor's mean colour, as LLaVA-1.5 was
      trained), ``"crop"`` (the processor's own resize + centre crop) or ``"native"`` (the
      processor's own handling, for tiling processors such as LLaVA-NeXT). Train and ask with
      the same value (``TrainConfig.image_aspect``).
    - ``attn_implementation``: passed to ``from_pretrained`` when set (``"sdpa"``,
      ``"flash_attention_2"``, ``"eager"``); ``None`` keeps transformers' choice.
    """

    image_aspect: Literal["pad", "crop", "native"] = "pad"
    attn_implementation: Optional[str] = None
