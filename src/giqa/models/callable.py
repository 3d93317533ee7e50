"""In-memory backends wrapping plain functions (the ``MockTransport`` of giqa).

Every pipeline and bench test runs through these: deterministic, no model, no network.
Each wraps a *per-item* function and does the batching, output checks and normalisation
that the real backends do, so a wrong function fails here with a clear message.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from giqa.errors import BackendContractError, BackendError
from giqa.models.protocols import ChatMessage, Detection
from giqa.types import Box

__all__ = [
    "CallableDetector",
    "CallableLLM",
    "CallableQualityFilter",
    "CallableEmbedder",
    "CallableVLM",
]


class _Base:
    random_weights = False

    def __init__(self, fn: Callable[..., Any], *, model_id: str = "callable") -> None:
        if not callable(fn):
            raise TypeError(f"expected a callable, got {type(fn).__name__}")
        self.fn = fn
        self.model_id = model_id
        self.calls = 0  # number of batch calls, for tests that check batching

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Base":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CallableDetector(_Base):
    """``fn(image, phrase) -> iterable of Detection or (xyxy, score)``."""

    def detect(self, images: Sequence[Any], phrases: Sequence[Sequence[str]]) -> list[list[list[Detection]]]:
        if len(images) != len(phrases):
            raise ValueError(f"{len(images)} images but {len(phrases)} phrase lists")
        self.calls += 1
        out: list[list[list[Detection]]] = []
        for image, image_phrases in zip(images, phrases):
            per_image = []
            for phrase in image_phrases:
                dets = []
                for d in self.fn(image, phrase):
                    if not isinstance(d, Detection):
                        xyxy, score = d
                        d = Detection(box=Box.from_xyxy(xyxy), score=float(score), phrase=phrase)
                    dets.append(d)
                dets.sort(key=lambda d: -d.score)
                per_image.append(dets)
            out.append(per_image)
        return out


class CallableLLM(_Base):
    """``fn(messages) -> str``; ``json_schema`` is passed as a keyword when ``fn`` accepts it."""

    def generate(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        *,
        json_schema: Optional[Mapping[str, Any]] = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
    ) -> list[str]:
        self.calls += 1
        outs = []
        for messages in conversations:
            text = self.fn(list(messages))
            if not isinstance(text, str):
                raise BackendContractError(f"LLM function returned {type(text).__name__}, expected str")
            outs.append(text)
        return outs


class CallableQualityFilter(_Base):
    """``fn(crop, question) -> P(yes)`` in [0, 1]."""

    def p_yes(self, crops: Sequence[Any], questions: Sequence[str]) -> list[float]:
        if len(crops) != len(questions):
            raise ValueError(f"{len(crops)} crops but {len(questions)} questions")
        self.calls += 1
        out = []
        for crop, q in zip(crops, questions):
            p = float(self.fn(crop, q))
            if not 0.0 <= p <= 1.0:
                raise BackendContractError(f"filter probability {p} outside [0, 1]")
            out.append(p)
        return out


class CallableEmbedder(_Base):
    """``fn(text) -> vector``; rows are L2-normalised here."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if len(texts) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        vecs = np.asarray([np.asarray(self.fn(t), dtype=np.float32) for t in texts])
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.where(norms == 0, 1.0, norms)


class CallableVLM(_Base):
    """``fn(image, prompt) -> str``."""

    def answer(self, images: Sequence[Any], prompts: Sequence[str], *, max_new_tokens: int = 512) -> list[str]:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        self.calls += 1
        return [str(self.fn(image, prompt)) for image, prompt in zip(images, prompts)]


def scripted(answers: Iterable[str]) -> Callable[..., str]:
    """A function returning the given answers in order (then raising), for scripted tests."""
    it = iter(answers)

    def fn(*_: Any) -> str:
        try:
            return next(it)
        except StopIteration:
            raise BackendError("scripted backend ran out of answers") from None

    return fn
