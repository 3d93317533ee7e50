"""Backend registry: one table per kind, filled in this one module, extended by entry points.

Kinds are the backend roles (:class:`giqa.models.roles.Role`: ``llm``, ``detector``,
``quality_filter`` (alias ``filter``), ``embedder``, ``vlm``). Names are versioned
(``grounding-dino.v1``); the bare name (``grounding-dino``) resolves to the highest version.
Third-party packages add backends through the ``giqa.backends`` entry-point group, with
entry-point names ``"<role>:<name>"`` and values ``"module:factory"``.
Nothing heavy is imported until :func:`create` builds a backend.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable, Optional, Union

from pydantic import BaseModel

from giqa.errors import RegistryError
from giqa.models.roles import Role

KINDS = tuple(r.value for r in Role)
ENTRY_POINT_GROUP = "giqa.backends"

Factory = Union[str, Callable[..., Any]]  # "module:attr" (lazy) or a callable

_BUILTIN: dict[Role, dict[str, Factory]] = {
    Role.detector: {
        "grounding-dino.v1": "giqa.models.grounding_dino:GroundingDinoDetector",
        "groundingdino-py.v1": "giqa.models.groundingdino_py:GroundingDinoPyDetector",
    },
    Role.llm: {
        "transformers.v1": "giqa.models.hf_llm:TransformersLLM",
        "openai.v1": "giqa.models.openai_llm:OpenAICompatibleLLM",
    },
    Role.quality_filter: {"llava.v1": "giqa.models.llava_filter:LlavaQualityFilter"},
    Role.embedder: {"sentence-transformers.v1": "giqa.models.sentence_embedder:SentenceTransformerEmbedder"},
    Role.vlm: {"llava.v1": "giqa.models.llava_vlm:LlavaVLM"},
}

_registry: dict[Role, dict[str, Factory]] = {k: dict(v) for k, v in _BUILTIN.items()}
_entry_points_loaded = False
_VERSIONED = re.compile(r"^(?P<base>.+)\.v(?P<ver>\d+)$")


def _check_kind(kind: "Role | str") -> Role:
    role = Role.parse(kind)
    if role is None:
        raise RegistryError(f"unknown backend kind {kind!r}; kinds are {', '.join(KINDS)}")
    return role


def register(kind: "Role | str", name: str, factory: Factory, *, replace: bool = False) -> None:
    """Register ``factory`` as ``kind``/``name``. A taken name raises unless ``replace``."""
    table = _registry[_check_kind(kind)]
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
        role = Role.parse(kind)
        if role is not None and name:
            _registry[role].setdefault(name, ep.value)


def available(kind: "Role | str") -> list[str]:
    """Registered names of ``kind`` (versioned), sorted."""
    role = _check_kind(kind)
    _load_entry_points()
    return sorted(_registry[role])


def resolve(kind: "Role | str", name: str) -> str:
    """The versioned name ``name`` refers to (bare names pick the highest version)."""
    names = available(kind)
    if name in names:
        return name
    versions = [
        (int(m["ver"]), n) for n in names if (m := _VERSIONED.match(n)) and m["base"] == name
    ]
    if versions:
        return max(versions)[1]
    raise RegistryError(f"no {_check_kind(kind).value} backend named {name!r}; available: {', '.join(names) or 'none'}")


def get_factory(kind: "Role | str", name: str) -> Callable[..., Any]:
    factory = _registry[_check_kind(kind)][resolve(kind, name)]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        loaded: Callable[..., Any] = getattr(importlib.import_module(module), attr)
        return loaded
    return factory


def settings_class(kind: "Role | str", name: str) -> Optional[type[BaseModel]]:
    """The Pydantic settings model of backend ``kind``/``name`` (its ``settings_cls``), if any.

    Imports the backend's module (light: backends import torch only when they load)."""
    cls = getattr(get_factory(kind, name), "settings_cls", None)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def create(kind: "Role | str", name: str, **settings: Any) -> Any:
    """Build the ``kind`` backend ``name`` with keyword settings (validated by the backend)."""
    return get_factory(kind, name)(**settings)
