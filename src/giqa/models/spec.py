"""How to build a backend in any process: :class:`BackendSpec` (role + registry name + settings).

A spec is a small frozen Pydantic model, so it pickles, travels to Ray workers and reads from a
TOML/JSON run configuration. :meth:`BackendSpec.from_preset` resolves a preset's entry *here*
(on the driver), so a worker builds exactly what the driver saw, whatever presets it has.

:meth:`BackendSpec.fingerprint` is what record keys hash: the role, the versioned registry name
and every setting that can change a result. Settings that only change how a result is
obtained (device, batch size, concurrency, timeouts, retries, credentials, server address,
cache paths, prefetching, the LLM's KV-cache kind and compilation) are left out, so moving a
run to another machine keeps its keys.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from giqa.errors import BackendError, ConfigError, GiqaError, RegistryError
from giqa.models.roles import Role

__all__ = ["BackendSpec", "RUN_ONLY_SETTINGS", "result_settings"]

# Settings that never change a backend's output (left out of fingerprints).
RUN_ONLY_SETTINGS = frozenset({
    "device", "batch_size", "max_concurrency", "timeout_s", "connect_timeout_s", "deadline_s",
    "max_retries", "backoff_s", "backoff_max_s", "cooldown_s", "api_key", "api_key_env", "base_url",
    "cache_dir", "local_files_only", "revision_check", "prefetch", "cache_implementation", "compile",
})


def result_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` without :data:`RUN_ONLY_SETTINGS` (what a fingerprint hashes)."""
    return {k: v for k, v in sorted(settings.items()) if k not in RUN_ONLY_SETTINGS}


class BackendSpec(BaseModel):
    """A backend of role ``role``: registry entry ``name`` built with ``settings``.

    ``preset`` records which preset the entry came from (provenance only; the entry is
    resolved into ``name``/``settings`` when the spec is made). ``kind=`` is accepted for
    ``role=`` (older code). A ``{cache}`` in a string setting is the tiny-random build
    directory of the process that builds the backend.

    >>> BackendSpec(role="llm", name="openai", settings={"model_id": "m", "base_url": "http://h:8000/v1"})
    ... # doctest: +SKIP
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    role: Role
    name: str = Field(min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)
    preset: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _compat(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "kind" in data:
                kind = data.pop("kind")
                data.setdefault("role", kind)
            if isinstance(data.get("role"), str):
                data["role"] = Role.coerce(data["role"])
            if data.get("name") is None and data.get("preset") is not None:
                resolved = _preset_entry(str(data["preset"]), Role.coerce(data.get("role") or ""))
                data["name"] = resolved[0]
                data["settings"] = {**resolved[1], **dict(data.get("settings") or {})}
        return data

    @classmethod
    def from_preset(cls, preset: str, role: "Role | str", **settings: Any) -> "BackendSpec":
        """The ``role`` entry of preset ``preset`` (settings override the preset's)."""
        return cls.model_validate({"role": Role.coerce(role), "preset": preset, "settings": settings})

    # -- identity ------------------------------------------------------------------------------
    def registry_name(self) -> str:
        """The versioned registry name (``openai`` -> ``openai.v1``); RegistryError if unknown."""
        from giqa.models.registry import resolve

        return resolve(self.role, self.name)

    def full_settings(self) -> dict[str, Any]:
        """The settings after the backend's own validation and defaults (JSON values).

        Validated with the backend class's ``settings_cls`` when it has one (every built-in
        backend does): a wrong setting is a :class:`ConfigError` here, before any model loads.
        """
        from giqa.models.registry import settings_class

        cls = settings_class(self.role, self.name)
        if cls is None:
            return dict(self.settings)
        try:
            return dict(cls.model_validate(_template_free(self.settings)).model_dump(mode="json"))
        except ValueError as exc:
            raise ConfigError(f"{self.role.value} backend {self.name!r}: invalid settings: {exc}") from exc

    def check(self) -> None:
        """Raise :class:`ConfigError` when the name is unknown or a setting is invalid."""
        try:
            self.registry_name()
        except RegistryError as exc:
            raise ConfigError(f"{self.role.value} backend: {exc}") from exc
        self.full_settings()

    def fingerprint(self) -> dict[str, Any]:
        """Role, versioned name and the result-relevant settings (see the module docstring)."""
        settings = result_settings(self.full_settings())
        for k, v in self.settings.items():  # keep "{cache}" templates, not this machine's paths
            if isinstance(v, str) and "{cache}" in v:
                settings[k] = v
        return {"role": self.role.value, "name": self.registry_name(), "settings": settings}

    def describe(self) -> str:
        model = self.settings.get("model_id")
        return f"{self.role.value}/{self.name}" + (f"({model})" if model else "")

    def public(self) -> dict[str, Any]:
        """JSON for run configs and provenance: secrets (``api_key``) removed."""
        settings = {k: v for k, v in self.settings.items() if k != "api_key"}
        out: dict[str, Any] = {"role": self.role.value, "name": self.name, "settings": settings}
        if self.preset is not None:
            out["preset"] = self.preset
        return out

    # -- building ------------------------------------------------------------------------------
    def create(self) -> Any:
        """Build the backend (heavy libraries are imported now, weights load on first use)."""
        from giqa.models.registry import create

        settings = dict(self.settings)
        if any(isinstance(v, str) and "{cache}" in v for v in settings.values()):
            from giqa.models.presets import tiny_cache_dir

            cache = tiny_cache_dir(build=True)
            settings = {k: (v.format(cache=cache) if isinstance(v, str) else v) for k, v in settings.items()}
        try:
            return create(self.role, self.name, **settings)
        except GiqaError:
            raise
        except Exception as exc:  # noqa: BLE001 - a factory may raise anything
            raise BackendError(f"could not build the {self.describe()} backend: {exc}") from exc


def _template_free(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings with ``{cache}`` templates made concrete enough to validate (paths stay strings)."""
    return {k: (v.replace("{cache}", "cache") if isinstance(v, str) else v) for k, v in settings.items()}


def _preset_entry(preset: str, role: Role) -> tuple[str, dict[str, Any]]:
    from giqa.models.presets import preset_entry

    return preset_entry(preset, role)
