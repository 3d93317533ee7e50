"""Backend protocols: small, batch-first, one method each (plus ``close``).

Every backend has ``model_id`` (recorded in sample provenance) and ``random_weights`` (True
when its weights were built from a config, never trained: such samples say so). Images are
``PIL.Image.Image`` in RGB mode; boxes are normalised xyxy (:class:`giqa.types.Box`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional, Protocol, Sequence, TypedDict, runtime_checkable

from giqa.types import Box

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL.Image import Image

__all__ = [
    "ChatMessage",
    "Detection",
    "Detector",
    "LLM",
    "QualityFilter",
    "Embedder",
    "VisionLanguageModel",
]


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Detection:
    """One detected box for one phrase; ``score`` in [0, 1]."""

    box: Box
    score: float
    phrase: str


@runtime_checkable
class Detector(Protocol):
    model_id: str
    random_weights: bool

    def detect(
        self, images: Sequence["Image"], phrases: Sequence[Sequence[str]]
    ) -> list[list[list[Detection]]]:
        """For each image ``i`` and each phrase ``phrases[i][j]``: its detections, best first.

        Returns ``out[i][j]`` = list of :class:`Detection` (possibly empty).
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class LLM(Protocol):
    model_id: str
    random_weights: bool

    def generate(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        *,
        json_schema: Optional[Mapping[str, Any]] = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
    ) -> list[str]:
        """One completion text per conversation. ``json_schema`` asks for structured output
        where the backend supports it (callers still validate what comes back)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class QualityFilter(Protocol):
    model_id: str
    random_weights: bool

    def p_yes(self, crops: Sequence["Image"], questions: Sequence[str]) -> list[float]:
        """P("Yes") in [0, 1] for each (crop, question) pair, read from token probabilities."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    model_id: str
    random_weights: bool

    def embed(self, texts: Sequence[str]) -> "np.ndarray":
        """``(N, D)`` float32, each row of unit L2 norm."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class VisionLanguageModel(Protocol):
    """An answer generator for benchmarks (and the trainer's output): image + prompt -> text."""

    model_id: str
    random_weights: bool

    def answer(
        self, images: Sequence["Image"], prompts: Sequence[str], *, max_new_tokens: int = 512
    ) -> list[str]:
        ...

    def close(self) -> None: ...
