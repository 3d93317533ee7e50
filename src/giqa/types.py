"""Typed core of giqa (Pydantic v2, frozen models).

Coordinate convention everywhere: normalised ``xyxy`` in ``[0, 1]``, origin at the image's
top-left corner, x to the right, y down. Pixel boxes use the same corners in pixels
(``0 <= x <= width``), i.e. edges, not pixel centres.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Iterable, Optional

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from giqa.errors import InvalidBoxError

__all__ = [
    "Box",
    "Effect",
    "Tag",
    "GroundedPhrase",
    "Task",
    "VqaKind",
    "VqaMode",
    "Provenance",
    "Sample",
    "json_schemas",
    "BOX_DECIMALS",
]

# Boxes computed from pixels or float arithmetic may overshoot [0, 1] by rounding noise only.
_EDGE_TOL = 1e-6

BOX_DECIMALS = 6
"""Decimal places of box coordinates written as JSON (a millionth of the image side: below a
pixel of any image up to 10^6 pixels wide). Boxes are kept exact in memory; see
:class:`Box` and :class:`Sample` for how they are rounded when written."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Box(_Frozen):
    """An axis-aligned box, normalised ``xyxy`` in ``[0, 1]``.

    Invariants (checked, :class:`giqa.errors.InvalidBoxError` otherwise): every coordinate is
    finite and inside ``[0, 1]``, ``x1 <= x2`` and ``y1 <= y2``. Degenerate (zero-area) boxes
    are allowed. Values within 1e-6 outside ``[0, 1]`` are clamped (float noise).

    Written as JSON (``model_dump_json``, ``model_dump(mode="json")``) each coordinate is
    rounded to :data:`BOX_DECIMALS` places (``0.7400000095367432``, a float32 widened, is
    written ``0.74``); inside a :class:`Sample` the rounding also keeps every corner in its
    grid cell. ``model_dump()`` in Python mode keeps the exact floats.
    """

    x1: float
    y1: float
    x2: float
    y2: float

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if isinstance(data, (list, tuple)):
            if len(data) != 4:
                raise InvalidBoxError(f"a box needs 4 numbers (x1, y1, x2, y2), got {len(data)}")
            data = dict(zip(("x1", "y1", "x2", "y2"), data))
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key in ("x1", "y1", "x2", "y2"):
            if key not in out:
                continue
            try:
                v = float(out[key])
            except (TypeError, ValueError) as exc:
                raise InvalidBoxError(f"box {key}={out[key]!r} is not a number") from exc
            if not math.isfinite(v):
                raise InvalidBoxError(f"box {key}={v} is not finite")
            if v < -_EDGE_TOL or v > 1 + _EDGE_TOL:
                raise InvalidBoxError(
                    f"box {key}={v} lies outside [0, 1]; boxes are normalised xyxy "
                    "(use Box.from_pixels for pixel coordinates)"
                )
            out[key] = min(max(v, 0.0), 1.0)
        if all(k in out for k in ("x1", "x2")) and out["x1"] > out["x2"]:
            raise InvalidBoxError(f"box is inverted: x1={out['x1']} > x2={out['x2']}")
        if all(k in out for k in ("y1", "y2")) and out["y1"] > out["y2"]:
            raise InvalidBoxError(f"box is inverted: y1={out['y1']} > y2={out['y2']}")
        return out

    @field_serializer("x1", "y1", "x2", "y2", when_used="json")
    def _rounded(self, v: float) -> float:
        return round(v, BOX_DECIMALS)

    # -- derived -------------------------------------------------------------------------
    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        """Normalised area in ``[0, 1]`` (fraction of the image)."""
        return self.width * self.height

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    # -- conversions ---------------------------------------------------------------------
    @classmethod
    def from_xyxy(cls, xyxy: Iterable[float]) -> "Box":
        """Build from ``(x1, y1, x2, y2)``; raises :class:`InvalidBoxError` (a ValueError).

        The ``from_*`` constructors raise ``InvalidBoxError``; ``Box(...)`` itself raises
        pydantic's ``ValidationError`` (also a ValueError) with the same message.
        """
        try:
            return cls.model_validate(tuple(xyxy))
        except ValidationError as exc:
            raise InvalidBoxError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from exc

    @classmethod
    def from_pixels(cls, x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> "Box":
        """Pixel corners (edges, ``0..width`` / ``0..height``) -> normalised box."""
        if not (width > 0 and height > 0):
            raise InvalidBoxError(f"image size must be positive, got {width}x{height}")
        return cls.from_xyxy((x1 / width, y1 / height, x2 / width, y2 / height))

    def to_pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Pixel corners (floats; round as your drawing code needs)."""
        return (self.x1 * width, self.y1 * height, self.x2 * width, self.y2 * height)

    @classmethod
    def from_xywh(cls, x: float, y: float, w: float, h: float) -> "Box":
        """Top-left corner plus width and height, normalised."""
        if w < 0 or h < 0:
            raise InvalidBoxError(f"negative size w={w}, h={h}")
        return cls.from_xyxy((x, y, x + w, y + h))

    def to_xywh(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.width, self.height)

    @classmethod
    def from_cxcywh(cls, cx: float, cy: float, w: float, h: float) -> "Box":
        """Centre plus width and height, normalised."""
        if w < 0 or h < 0:
            raise InvalidBoxError(f"negative size w={w}, h={h}")
        return cls.from_xyxy((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))

    def to_cxcywh(self) -> tuple[float, float, float, float]:
        return ((self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2, self.width, self.height)

    def to_grid(self, n: int = 20, m: int = 20) -> tuple[int, int]:
        """``(idx_l, idx_r)`` on an ``n`` columns x ``m`` rows grid (see :class:`giqa.geometry.GridCodec`)."""
        from giqa.geometry import GridCodec

        idx = GridCodec(n, m).encode([self.as_tuple()])[0]
        return int(idx[0]), int(idx[1])

    @classmethod
    def from_grid(cls, idx_l: int, idx_r: int, n: int = 20, m: int = 20) -> "Box":
        """Cell-centre decoding of ``<idx_l, idx_r>`` (raises GridIndexError out of range)."""
        from giqa.geometry import GridCodec

        return cls.from_xyxy(GridCodec(n, m).decode([(idx_l, idx_r)])[0].tolist())


class Effect(str, enum.Enum):
    """T_e: how an object affects the image's quality."""

    positive = "positive"
    negative = "negative"
    no_impact = "no_impact"


_EFFECT_ALIASES = {
    "positive": Effect.positive,
    "negative": Effect.negative,
    "no_impact": Effect.no_impact,
    "no impact": Effect.no_impact,
    "no-impact": Effect.no_impact,
    "none": Effect.no_impact,
    "neutral": Effect.no_impact,
}


class Tag(_Frozen):
    """The paper's three-tuple {T_r, T_q, T_e} plus the object's bare name.

    ``phrase`` (T_r) is the describing phrase used for detection ("the man wearing a white
    t-shirt"); ``name`` the object ("man"); ``quality`` (T_q) e.g. "blurry"; ``effect`` (T_e).
    """

    name: str = Field(min_length=1)
    phrase: str = Field(min_length=1)
    quality: str = Field(min_length=1)
    effect: Effect

    @field_validator("name", "phrase", "quality", mode="before")
    @classmethod
    def _strip(cls, v: Any) -> Any:
        return v.strip() if isinstance(v, str) else v

    @field_validator("effect", mode="before")
    @classmethod
    def _effect(cls, v: Any) -> Any:
        if isinstance(v, str):
            key = v.strip().lower()
            if key in _EFFECT_ALIASES:
                return _EFFECT_ALIASES[key]
            raise ValueError(f"effect must be positive, negative or no_impact, got {v!r}")
        return v


class GroundedPhrase(_Frozen):
    """A phrase of a text and the boxes it refers to.

    ``span`` is the ``[start, end)`` character range of the phrase in the *clean* text (the
    text with coordinates removed), when known.
    """

    phrase: str = Field(min_length=1)
    boxes: tuple[Box, ...] = ()
    span: Optional[tuple[int, int]] = None
    tag: Optional[Tag] = None

    @field_validator("span")
    @classmethod
    def _span(cls, v: Optional[tuple[int, int]]) -> Optional[tuple[int, int]]:
        if v is not None and not (0 <= v[0] <= v[1]):
            raise ValueError(f"span must satisfy 0 <= start <= end, got {v}")
        return v


class Task(str, enum.Enum):
    des = "des"
    vqa = "vqa"


class VqaKind(str, enum.Enum):
    """Question family. ``yes_no`` is binary; the others are open-ended (What/Which/Why/How)."""

    yes_no = "yes_no"
    what = "what"
    which = "which"
    why = "why"
    how = "how"

    @property
    def is_binary(self) -> bool:
        return self is VqaKind.yes_no


class VqaMode(str, enum.Enum):
    """Where the boxes are: in the question (referring) or in the answer (grounding)."""

    referring = "referring"
    grounding = "grounding"


class Provenance(_Frozen):
    """What made a sample: models (role -> model id), prompt versions, thresholds, preset."""

    models: dict[str, str] = Field(default_factory=dict)
    prompts: dict[str, str] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)
    preset: Optional[str] = None
    random_weights: bool = False
    giqa_version: Optional[str] = None
    seed: Optional[int] = None
    extra: dict[str, Any] = Field(default_factory=dict)


class Sample(_Frozen):
    """One instruction-tuning sample ``{image, question, answer}`` with its regions.

    ``question`` / ``answer`` hold the grounded text as the model sees it (``[phrase](<a, b>)``
    on the grid of ``grid``). ``regions`` are the grounded phrases found in the question and
    answer (boxes as normalised xyxy). ``image`` is a path relative to the dataset root.

    Written as JSON, region boxes are rounded to :data:`BOX_DECIMALS` places by
    :meth:`giqa.geometry.GridCodec.round_box` on this sample's ``grid``: no corner moves to
    another cell, so the boxes read back encode to the same ``<idx_l, idx_r>`` as the text.
    """

    id: str = Field(min_length=1)
    image: str = Field(min_length=1)
    task: Task
    question: str
    answer: str
    vqa_kind: Optional[VqaKind] = None
    vqa_mode: Optional[VqaMode] = None
    regions: tuple[GroundedPhrase, ...] = ()
    tags: tuple[Tag, ...] = ()
    description: Optional[str] = None
    grid: tuple[int, int] = (20, 20)
    provenance: Provenance = Field(default_factory=Provenance)
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kind_matches_task(self) -> "Sample":
        if self.task is Task.des and self.vqa_kind is not None:
            raise ValueError("a DES sample has no vqa_kind")
        if self.task is Task.vqa and self.vqa_kind is None:
            raise ValueError("a VQA sample needs vqa_kind (yes_no, what, which, why or how)")
        return self

    @field_serializer("regions", mode="wrap", when_used="json")
    def _regions_on_grid(self, regions: tuple[GroundedPhrase, ...], handler: Any) -> Any:
        out = handler(regions)
        if not any(g.boxes for g in regions):
            return out
        from giqa.geometry import GridCodec

        codec = GridCodec(*self.grid)
        for g, g_out in zip(regions, out):
            if isinstance(g_out, dict) and isinstance(g_out.get("boxes"), list):
                for b, b_out in zip(g.boxes, g_out["boxes"]):
                    b_out.update(zip(("x1", "y1", "x2", "y2"), codec.round_box(*b.as_tuple(), BOX_DECIMALS)))
        return out

    # -- LLaVA conversation records -----------------------------------------------------
    def to_llava(self) -> dict[str, Any]:
        """The LLaVA conversation record (one human turn with ``<image>``, one gpt turn).

        The way back is :func:`giqa.data.sample_from_llava` (it parses the grounded text, so it
        lives beside the text codec, not in this module)."""
        return {
            "id": self.id,
            "image": self.image,
            "conversations": [
                {"from": "human", "value": "<image>\n" + self.question},
                {"from": "gpt", "value": self.answer},
            ],
        }


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON schema of each public type, keyed by type name."""
    return {
        t.__name__: t.model_json_schema()
        for t in (Box, Tag, GroundedPhrase, Provenance, Sample)
    }
