"""Model backends: roles, protocols, specs, in-memory callables, registry. Real backends import
torch lazily.

- :class:`Role`: the backend roles (``llm``, ``detector``, ``quality_filter``, ``embedder``,
  ``vlm``), one table used by presets, the registry, the pipelines and the CLI.
- :class:`BackendSpec`: role + registry name + settings; picklable, built on first use.
- protocols (:class:`LLM`, :class:`Detector`, ...), ``Callable*`` wrappers of plain functions,
  the registry (:func:`create`, :func:`register`, :func:`available`), presets
  (:mod:`giqa.models.presets`).
"""

from giqa.models import registry
from giqa.models.callable import (
    CallableDetector,
    CallableEmbedder,
    CallableLLM,
    CallableQualityFilter,
    CallableVLM,
)
from giqa.models.protocols import LLM, ChatMessage, Detection, Detector, Embedder, QualityFilter, VisionLanguageModel
from giqa.models.registry import available, create, register
from giqa.models.roles import Role, check_backend
from giqa.models.spec import BackendSpec

__all__ = [
    "BackendSpec",
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
    "Role",
    "VisionLanguageModel",
    "available",
    "check_backend",
    "create",
    "register",
]
