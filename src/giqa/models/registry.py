"""Backend registry: one table per kind, filled in this one module, extended by entry points.

Names are versioned (``grounding-dino.v1``); the bare name (``grounding-dino``) resolves to the
highest version. Third-party packages add backends through the ``giqa.backends`` entry-point
group, with entry-point names ``"<kind>:<name>"`` and values ``"module:factory"``.
Nothing heavy is imported until :func:`create` builds a backend.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable, Union

from giqa.errors import RegistryError

KINDS = ("detector", "llm", "filter", "embedder", "vlm")
ENTRY_POINT_GROUP = "giqa.backends"

Factory = Union[str, Callable[..., Any]]  # "module:attr" (lazy) or a callable

_BUILTIN: dict[str, dict[str, Factory]] = {
    "detector": {"grounding-dino.v1": "giqa.models.grounding_dino:GroundingDinoDetector", "groundingdino-py.v1": "giqa.models.groundingdino_py:GroundingDinoPyDetector"},
    "llm": {
        "transformers.v1": "giqa.models.hf_llm:TransformersLLM",
        "openai.v1": "giqa.models.openai_llm:OpenAICompatibleLLM",
    },
    "filter": {"llava.v1": "giqa.models.llava_filter:LlavaQualityFilter"},
    "embedder": {"sentence-transformers.v1": "giqa.models.sentence_embedder:SentenceTransformerEmbedder"},
    "vlm": {"llava.v1": "giqa.models.llava_vlm:LlavaVLM"},
}

_registry: dict[str, dict[str, Factory]] = {k: dict(v) for k, v in _BUILTIN.items()}
_entry_points_loaded = False
_VERSIONED = re.compile(r"^(?P<base>.+)\.v(?P<ver>\d+)$")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RegistryError(f"unknown backend kind {kind!r}; kinds are {', '.join(KINDS)}")


def register(kind: str, name: str, factory: Factory, *, replace: bool = False) -> None:
    """Register ``factory`` as ``kind``/``name``. A taken name raises unless ``replace``."""
    _check_kind(kind)
    table = _registry[kind]
    if name in table and table[name] != factory and not replace:
        raise RegistryError(f"{kind} backend {name!r} is already registered; pass replace=True")
    table[name] = factory


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        kind, _, name = ep.name.partition(":")
        if kind in KINDS and name:
            _registry[kind].setdefault(name, ep.value)


def available(kind: str) -> list[str]:
    """Registered names of ``kind`` (versioned), sorted."""
    _check_kind(kind)
    _load_entry_points()
    return sorted(_registry[kind])


def resolve(kind: str, name: str) -> str:
    """The versioned name ``name`` refers to (bare names pick the highest version)."""
    names = available(kind)
    if name in names:
        return name
    versions = [
        (int(m["ver"]), n) for n in names if (m := _VERSIONED.match(n)) and m["base"] == name
    ]
    if versions:
        return max(versions)[1]
    raise RegistryError(f"no {kind} backend named {name!r}; available: {', '.join(names) or 'none'}")


def get_factory(kind: str, name: str) -> Callable[..., Any]:
    factory = _registry[kind][resolve(kind, name)]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory


def create(kind: str, name: str, **settings: Any) -> Any:
    """Build the ``kind`` backend ``name`` with keyword settings (validated by the backend)."""
    return get_factory(kind, name)(**settings)
