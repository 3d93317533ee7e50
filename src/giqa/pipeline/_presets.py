"""Build one backend of a preset by role (the preset API is touched only here)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from giqa.errors import BackendError

# pipeline role -> role name in giqa.models.presets
PRESET_ROLES = {"llm": "llm", "detector": "detector", "quality_filter": "filter"}


@lru_cache(maxsize=None)
def _backends(preset: str) -> Any:
    from giqa.models.presets import load_preset

    return load_preset(preset)  # builds backend objects; weights load on first use


def backend_from_preset(preset: str, role: str) -> Any:
    """The ``role`` backend (``llm``, ``detector``, ``quality_filter``) of preset ``preset``.

    One :class:`giqa.models.presets.Backends` per preset and process, shared by the stages.
    """
    if role not in PRESET_ROLES:
        raise BackendError(f"unknown pipeline role {role!r}; roles are {', '.join(PRESET_ROLES)}")
    return getattr(_backends(preset), PRESET_ROLES[role])
