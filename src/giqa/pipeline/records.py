"""Typed records: what flows between pipeline stages.

A record is a frozen dataclass; a stage returns new records (``dataclasses.replace``), never
edits one. Tags are :class:`giqa.types.Tag`, boxes :class:`giqa.types.Box` (validated),
detections :class:`giqa.models.Detection`, regions :class:`Region`. Records become plain JSON
only where they leave the process: :func:`to_json` / :func:`from_json` (Ray blocks), and
:meth:`Record.error_entry` (a line of ``errors.jsonl``).

==============  ===================================================================================
record          fields added by the stages (all records: ``key``, ``id``, ``image``, ``error``,
                ``models``, ``prompts``, ``random_weights``, ``input``)
==============  ===================================================================================
DesRecord       input: ``description``, ``meta``, ``given_tags``; ``tags`` stage: ``tags``,
                ``tags_dropped``, ``tags_source``; ``detect``: ``detections`` (per tag);
                ``refine``: ``regions``; ``fuse``: ``question``, ``answer``, region ``span``
VqaRecord       input: ``description``, ``objects`` (key objects: regions with tag and boxes),
                ``tags``, ``des_provenance``, ``des_key``; ``generate``: ``qa``; ``filter``:
                normalised ``qa``, ``qa_dropped``; ``ground``: grounded ``qa``,
                ``qa_ungrounded_dropped``
==============  ===================================================================================
"""

from __future__ import annotations

import enum
import hashlib
import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from functools import lru_cache
from typing import Any, Mapping, Optional, TypeVar, Union

from pydantic import BaseModel

from giqa.models.protocols import Detection
from giqa.models.roles import backend_model_id
from giqa.types import Box, Provenance, Tag

__all__ = [
    "Detection",
    "DesRecord",
    "QAItem",
    "Record",
    "Region",
    "StageError",
    "VqaRecord",
    "content_key",
    "from_json",
    "to_json",
]

R = TypeVar("R", bound="Record")

_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def content_key(*parts: bytes | str) -> str:
    """SHA-256 hex over ``parts`` (each length-prefixed, so part boundaries matter)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else bytes(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class StageError:
    """Why a record failed: the stage, the error type's name and a message naming paths, not
    objects (an ``<... object at 0x...>`` in a library's message becomes ``<object>``)."""

    stage: str
    type: str
    message: str

    @classmethod
    def of(cls, stage: str, exc: BaseException | str, type_: Optional[str] = None) -> "StageError":
        if isinstance(exc, BaseException):
            message = str(exc) or repr(exc)
            return cls(stage, type_ or type(exc).__name__, _OBJECT_REPR.sub("<object>", message))
        return cls(stage, type_ or "Error", exc)


@dataclass(frozen=True)
class Region:
    """A phrase and its boxes (normalised xyxy). ``p_yes``: the quality filter's P(yes) per
    detected box before filtering (None when the filter did not run on it); ``span``: the
    ``[start, end)`` of the mention in the clean text once fused."""

    phrase: str
    boxes: tuple[Box, ...]
    tag: Optional[Tag] = None
    p_yes: Optional[tuple[float, ...]] = None
    span: Optional[tuple[int, int]] = None


@dataclass(frozen=True)
class QAItem:
    """One question-answer pair. ``family`` is the prompt it came from (``yes_no``/``open``);
    ``kind`` (a :class:`giqa.types.VqaKind` value) is set by the filter; ``mode`` and ``region``
    by the ground stage."""

    family: str
    question: str
    answer: str
    object: Optional[str] = None
    kind: Optional[str] = None
    mode: Optional[str] = None
    region: Optional[Region] = None


@dataclass(frozen=True, kw_only=True)
class Record:
    """What every record has. ``key``: SHA-256 of the input's content and the pipeline's
    fingerprint; ``id``: the sample id; ``error``: None, or why the record failed (a stage
    passes a failed record through untouched); ``input``: what ``errors.jsonl`` shows of the
    input; ``models`` (role -> model id), ``backend_info`` (role -> what else a backend reports
    about how it ran, e.g. a LLaVA backend's ``image_aspect``) and ``prompts`` (name -> version)
    for provenance."""

    key: str
    id: str
    image: Optional[str] = None
    error: Optional[StageError] = None
    models: dict[str, str] = field(default_factory=dict)
    backend_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)
    random_weights: bool = False
    input: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def replace(self: R, **changes: Any) -> R:
        """A copy with ``changes`` (field name -> value); like ``dataclasses.replace`` without
        re-running ``__init__`` (records have no validation of their own), so stages can afford
        it per record."""
        cls: type = type(self)
        unknown = changes.keys() - _field_names(cls)
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        new: R = object.__new__(cls)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def failed(self: R, stage: str, exc: BaseException | str, type_: Optional[str] = None) -> R:
        """A copy marked failed at ``stage``."""
        return self.replace(error=StageError.of(stage, exc, type_))

    def used(self: R, role: str, backend: Any, **changes: Any) -> R:
        """A copy noting ``backend``'s model id (and random weights) under ``role``, with ``changes``."""
        rw = self.random_weights or bool(getattr(backend, "random_weights", False))
        info = backend_run_info(backend)
        if info:
            changes["backend_info"] = {**self.backend_info, role: info}
        return self.replace(models={**self.models, role: backend_model_id(backend)}, random_weights=rw, **changes)

    def with_prompt(self: R, name: str, version: str, **changes: Any) -> R:
        """A copy noting prompt ``name`` at ``version``, with ``changes``."""
        return self.replace(prompts={**self.prompts, name: version}, **changes)

    def error_entry(self) -> dict[str, Any]:
        """The ``errors.jsonl`` line of a failed record:
        ``{"key", "id", "image", "stage", "type", "message", "input"}``."""
        err = self.error or StageError("?", "Error", "")
        return {"key": self.key, "id": self.id, "image": self.image, "stage": err.stage, "type": err.type,
                "message": err.message, "input": dict(self.input)}


def backend_run_info(backend: Any) -> dict[str, Any]:
    """What ``backend.model_info()`` reports beyond its model id and random weights (e.g. the
    ``image_aspect`` of a LLaVA-style backend); ``{}`` for a backend without ``model_info``."""
    model_info = getattr(backend, "model_info", None)
    if not callable(model_info):
        return {}
    return {k: v for k, v in dict(model_info()).items() if k not in ("model_id", "random_weights")}


@dataclass(frozen=True, kw_only=True)
class DesRecord(Record):
    """A DES record (see the module docstring for the fields each stage adds)."""

    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    given_tags: Optional[tuple[Tag, ...]] = None
    tags: tuple[Tag, ...] = ()
    tags_dropped: int = 0
    tags_source: Optional[str] = None
    detections: Optional[tuple[tuple[Detection, ...], ...]] = None
    regions: Optional[tuple[Region, ...]] = None
    question: Optional[str] = None
    answer: Optional[str] = None


@dataclass(frozen=True, kw_only=True)
class VqaRecord(Record):
    """A VQA record: one DES sample and the QA pairs made from it."""

    description: str = ""
    objects: tuple[Region, ...] = ()
    tags: tuple[Tag, ...] = ()
    des_provenance: Provenance = field(default_factory=Provenance)
    des_key: Optional[str] = None
    des_meta: dict[str, Any] = field(default_factory=dict)  # the DES sample's CARRIED_META (source, ...)
    qa: tuple[QAItem, ...] = ()
    qa_dropped: dict[str, int] = field(default_factory=dict)
    qa_ungrounded_dropped: int = 0
    warnings: tuple[str, ...] = ()


# -- JSON at the process boundary ---------------------------------------------------------------
def to_json(obj: Any) -> Any:
    """Plain JSON values of a record (or any value inside one): boxes become ``[x1, y1, x2, y2]``,
    Pydantic models their JSON dump, dataclasses dicts, tuples lists."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj.value if isinstance(obj, enum.Enum) else obj
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Box):
        return list(obj.as_tuple())
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_json(x) for x in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    raise TypeError(f"cannot turn {type(obj).__name__} into JSON")


@lru_cache(maxsize=None)
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_json(tp: Any, data: Any) -> Any:
    """The value of type ``tp`` that :func:`to_json` turned into ``data`` (boxes and tags are
    validated again on the way in)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if origin is Union or origin is types.UnionType:
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if data is None else from_json(options[0], data)
    if origin is tuple:
        items = typing.get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(from_json(items[0], x) for x in data)
        return tuple(from_json(a, x) for a, x in zip(items, data))
    if origin is dict:
        return {k: from_json(typing.get_args(tp)[1], v) for k, v in data.items()}
    if tp is Box:
        return Box.from_xyxy(data)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.model_validate(data)
    if isinstance(tp, type) and is_dataclass(tp):
        hints = _hints(tp)
        return tp(**{f.name: from_json(hints[f.name], data[f.name]) for f in fields(tp) if f.name in data})
    if tp is float and isinstance(data, int):
        return float(data)
    return data
