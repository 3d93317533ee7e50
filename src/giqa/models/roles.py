"""Backend roles: the one table of what each kind of backend is called and must do.

A *role* names a kind of backend (``llm``, ``detector``, ``quality_filter``, ``embedder``,
``vlm``). Presets, the registry, the pipelines and the command line all use :class:`Role`; the
short name ``"filter"`` is accepted wherever a role is read from text (older configs, entry
points ``"filter:<name>"``).

:func:`check_backend` is the construction-time check of a backend object: it must have its
role's method (``generate``, ``detect``, ``p_yes``, ``embed``, ``answer``); ``model_id``,
``random_weights`` and ``close`` are optional (``model_id`` defaults to the class name).
"""

from __future__ import annotations

import enum
from typing import Any, Optional

from giqa.errors import ConfigError

__all__ = ["Role", "check_backend", "backend_model_id"]


class Role(str, enum.Enum):
    """A backend role; its value is the name used in configs, provenance and the registry."""

    llm = "llm"
    detector = "detector"
    quality_filter = "quality_filter"
    embedder = "embedder"
    vlm = "vlm"

    @property
    def method(self) -> str:
        """The protocol method a backend of this role must have."""
        return _METHODS[self]

    @property
    def wrapper(self) -> str:
        """The :mod:`giqa.models.callable` class that turns a plain function into this role."""
        return _WRAPPERS[self]

    @classmethod
    def parse(cls, value: "Role | str") -> Optional["Role"]:
        """The role ``value`` names (aliases: ``filter``), or None."""
        if isinstance(value, Role):
            return value
        if not isinstance(value, str):
            return None
        key = value.strip().lower().replace("-", "_")
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            return None

    @classmethod
    def coerce(cls, value: "Role | str") -> "Role":
        """Like :meth:`parse`, but an unknown name is a :class:`ConfigError` listing the roles."""
        role = cls.parse(value)
        if role is None:
            raise ConfigError(f"unknown backend role {value!r}; roles are {', '.join(r.value for r in cls)}")
        return role

    def __str__(self) -> str:
        return self.value


_ALIASES = {"filter": "quality_filter", "qualityfilter": "quality_filter", "iqa_filter": "quality_filter"}
_METHODS = {
    Role.llm: "generate",
    Role.detector: "detect",
    Role.quality_filter: "p_yes",
    Role.embedder: "embed",
    Role.vlm: "answer",
}
_WRAPPERS = {
    Role.llm: "CallableLLM",
    Role.detector: "CallableDetector",
    Role.quality_filter: "CallableQualityFilter",
    Role.embedder: "CallableEmbedder",
    Role.vlm: "CallableVLM",
}


def check_backend(role: Role, backend: Any) -> None:
    """Raise :class:`ConfigError` unless ``backend`` has ``role``'s method.

    The message names the role and the missing method; a bare function is pointed at the
    wrapper class that makes a backend of it.
    """
    method = role.method
    if callable(getattr(backend, method, None)):
        return
    what = type(backend).__name__
    if callable(backend) and not isinstance(backend, type):
        hint = (f"; a plain function is not a backend: wrap it, e.g. giqa.models.{role.wrapper}(fn, "
                "model_id=...)")
    else:
        hint = f"; see giqa.models.protocols for the {role.value} protocol"
    raise ConfigError(f"{role.value} backend {what} has no method {method}(){hint}")


def backend_model_id(backend: Any) -> str:
    """``backend.model_id`` as a string, or its class name when it has none."""
    return str(getattr(backend, "model_id", None) or type(backend).__name__)
