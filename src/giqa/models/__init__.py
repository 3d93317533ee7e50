"""Model backends: protocols, in-memory callables, registry. Real backends import torch lazily."""

from giqa.models.callable import (
    CallableDetector,
    CallableEmbedder,
    CallableLLM,
    CallableQualityFilter,
    CallableVLM,
)
from giqa.models.protocols import LLM, ChatMessage, Detection, Detector, Embedder, QualityFilter, VisionLanguageModel
from giqa.models import registry
from giqa.models.registry import available, create, register

__all__ = [
    "CallableDetector",
    "CallableEmbedder",
    "CallableLLM",
    "CallableQualityFilter",
    "CallableVLM",
    "ChatMessage",
    "Detection",
    "Detector",
    "Embedder",
    "LLM",
    "QualityFilter",
    "VisionLanguageModel",
    "available",
    "create",
    "register",
]
