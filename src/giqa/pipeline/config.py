"""Pipeline configuration: :class:`DesConfig` and :class:`VqaConfig` (frozen, picklable).

``BackendSpec`` lives in :mod:`giqa.models.spec` (it names models, not pipelines); it is
re-exported here and from :mod:`giqa.pipeline` for older code.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from giqa.models.spec import BackendSpec
from giqa.pipeline.base import fingerprint

__all__ = ["BackendSpec", "DesConfig", "VqaConfig", "fingerprint"]

# Fields that never change a result (left out of record keys).
_RUN_ONLY = frozenset({"root", "max_retries"})


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def fingerprint_fields(self) -> dict[str, Any]:
        """The fields that change the output (the record key hashes these): all but the root,
        retry counts and batch sizes."""
        skip = set(_RUN_ONLY) | {k for k in type(self).model_fields if k.endswith("batch_size")}
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in skip}


class DesConfig(_Config):
    """DES pipeline settings. Thresholds follow the paper (T_a = 0.256, T_o = 0.95)."""

    root: Optional[str] = None  # dataset root; image paths are confined to it
    area_thr: float = Field(0.256, ge=0.0, le=1.0)  # T_a, normalised area
    cover_thr: float = Field(0.95, ge=0.0, le=1.0)  # T_o, coverage ratio
    filter_threshold: float = Field(0.5, ge=0.0, le=1.0)  # keep boxes with P(yes) >= this
    # when the quality filter rejects every box of a phrase: keep the box with the highest
    # P(yes) ("keep_best", default) or leave the phrase without boxes ("drop", the paper's letter)
    filter_all_rejected: Literal["keep_best", "drop"] = "keep_best"
    grid: tuple[int, int] = (20, 20)  # n columns, m rows
    seed: int = 0
    max_retries: int = Field(2, ge=0, le=10)  # extra LLM attempts on malformed output
    max_new_tokens: int = Field(512, ge=16)
    keep_ungrounded: bool = False  # keep a DES sample whose description got no box at all
    max_pixels: int = Field(64_000_000, ge=1)  # larger images are rejected (decompression bombs)
    max_side: int = Field(2048, ge=16)  # decoded images are downscaled to this longer side
    max_aspect_ratio: float = Field(20.0, ge=1.0)  # longer / shorter side; thinner strips are refused
    max_description_chars: int = Field(20_000, ge=1)  # longer descriptions are refused at input
    tag_prompt: str = "tag_extraction"
    filter_prompt: str = "iqa_filter"
    question_pool: str = "des_questions"
    input_batch_size: int = Field(64, ge=1)
    tags_batch_size: int = Field(8, ge=1)
    detect_batch_size: int = Field(4, ge=1)
    refine_batch_size: int = Field(8, ge=1)
    fuse_batch_size: int = Field(256, ge=1)


# Words that make a question a quality question (lower case, matched word-prefix-wise).
QUALITY_KEYWORDS = (
    "quality", "clear", "clarity", "sharp", "blur", "focus", "noise", "noisy", "grain",
    "exposure", "exposed", "overexpos", "underexpos", "bright", "dark", "light", "contrast",
    "color", "colour", "saturat", "detail", "texture", "distort", "artifact", "artefact",
    "compression", "jpeg", "pixel", "resolution", "motion", "shak", "haz", "fog", "glare",
    "aesthetic", "composition", "vivid", "dull", "fine", "soft", "crisp", "visible",
    "distinguish", "degrad", "good", "poor", "bad", "low", "high",
)


class VqaConfig(_Config):
    """VQA pipeline settings."""

    seed: int = 0
    grid: tuple[int, int] = (20, 20)
    max_retries: int = Field(2, ge=0, le=10)
    max_new_tokens: int = Field(768, ge=16)
    yes_no_per_sample: int = Field(4, ge=0, le=20)  # asked of the LLM (half Yes, half No)
    open_per_sample: int = Field(3, ge=0, le=20)
    max_answer_words: int = Field(8, ge=1)  # open-ended answers are short phrases
    quality_keywords: tuple[str, ...] = QUALITY_KEYWORDS
    allow_ungrounded: bool = False  # keep a QA pair that names no key object (so has no box)
    yes_no_prompt: str = "vqa_yes_no"
    open_prompt: str = "vqa_open"
    generate_batch_size: int = Field(8, ge=1)
    filter_batch_size: int = Field(256, ge=1)
    ground_batch_size: int = Field(256, ge=1)
