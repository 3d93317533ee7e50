"""Run configuration files: ``giqa des|vqa|build --config run.toml``.

One TOML (or JSON) file holds a whole run; it is validated by Pydantic, and errors name the
file and the field. Command-line flags override it. The resolved configuration is written to
``run.json`` in the output directory and into every sample's provenance
(``provenance.extra["run"]``); Ray workers build their backends from the specs in it.

Example (every table and key is optional)::

    preset = "paper"                       # backends for the roles not named below

    [backends]                             # role = registry name + settings, or a preset entry
    llm = {name = "openai", base_url = "http://gpu-box:8000/v1",
           model_id = "meta-llama/Meta-Llama-3-8B-Instruct", max_concurrency = 64}
    detector = {preset = "paper", device = "cuda:0", box_threshold = 0.3}
    quality_filter = false                 # no IQA-Filter (Box-Merge still runs)

    [des]                                  # giqa.pipeline.DesConfig
    root = "/data/images"
    area_thr = 0.256

    [vqa]                                  # giqa.pipeline.VqaConfig
    open_per_sample = 3

    [runner]                               # RunnerOptions
    kind = "ray"
    address = "auto"
    batch_size = 128
    max_failures = 0.2
    stage_options = {detect = {concurrency = 4, num_gpus = 1}}

    [build.sources]                        # defaults of `giqa build sources` options
    min_words = 20
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from giqa.errors import ConfigError
from giqa.models.roles import Role
from giqa.models.spec import BackendSpec
from giqa.pipeline.config import DesConfig, VqaConfig

__all__ = ["RunConfig", "RunnerOptions", "load_run_config", "backend_entry", "format_validation_error"]

BackendEntry = Union[BackendSpec, None]


class RunnerOptions(BaseModel):
    """How to run: ``kind`` (``local`` or ``ray``), records per chunk/block, the fail-fast rule
    (``max_failures``: largest failure share; ``fail_fast``: stop when the first N all fail),
    and Ray settings (``address``, ``output``, ``stage_options`` per stage)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["local", "ray"] = "local"
    batch_size: int = Field(64, ge=1)
    max_failures: float = Field(0.5, ge=0.0, le=1.0)
    fail_fast: int = Field(20, ge=0)
    retry_failed: bool = False
    progress: bool = True
    address: Optional[str] = None
    output: Literal["jsonl", "jsonl-shards", "parquet"] = "jsonl"
    stage_options: dict[str, dict[str, Any]] = Field(default_factory=dict)


def backend_entry(role: Role, value: Any) -> Optional[BackendSpec]:
    """A config's backend entry -> a spec: ``false``/``"none"`` (no backend), a preset or
    registry name, a spec, or a table ``{name|preset = ..., <settings>...}``."""
    from giqa.pipeline.backends import spec_from_name

    if value is None or value is False or (isinstance(value, str) and value.lower() == "none"):
        return None
    if isinstance(value, BackendSpec):
        return value
    if isinstance(value, str):
        return spec_from_name(role, value)
    if isinstance(value, Mapping):
        data = dict(value)
        settings = dict(data.pop("settings", {}) or {})
        name, preset = data.pop("name", None), data.pop("preset", None)
        data.pop("role", None)
        settings.update(data)
        if name is None and preset is None:
            raise ConfigError(f"the {role.value} backend needs name = <registry name> or preset = <preset name>")
        spec = BackendSpec(role=role, name=name, preset=preset, settings=settings) if name else \
            BackendSpec.from_preset(str(preset), role, **settings)
        spec.check()
        return spec
    raise ConfigError(f"the {role.value} backend must be a name, a table or false, got {type(value).__name__}")


class RunConfig(BaseModel):
    """A whole run (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    preset: Optional[str] = None
    backends: dict[Role, Optional[BackendSpec]] = Field(default_factory=dict)
    des: DesConfig = Field(default_factory=DesConfig)
    vqa: VqaConfig = Field(default_factory=VqaConfig)
    runner: RunnerOptions = Field(default_factory=RunnerOptions)
    build: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("backends", mode="before")
    @classmethod
    def _backends(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        return {Role.coerce(k): backend_entry(Role.coerce(k), v) for k, v in value.items()}

    @field_validator("preset")
    @classmethod
    def _preset(cls, value: Optional[str]) -> Optional[str]:
        from giqa.models.presets import PRESETS

        if value is not None and value not in PRESETS:
            raise ValueError(f"no preset named {value!r}; presets are {', '.join(PRESETS)}")
        return value

    def backend(self, role: Role) -> Optional[BackendSpec]:
        """The spec of ``role``: the ``[backends]`` entry, else the preset's (``paper`` if none)."""
        if role in self.backends:
            return self.backends[role]
        return BackendSpec.from_preset(self.preset or "paper", role)

    def with_backend(self, role: Role, spec: Optional[BackendSpec]) -> "RunConfig":
        return self.model_copy(update={"backends": {**self.backends, role: spec}})

    def public(self) -> dict[str, Any]:
        """JSON of the configuration as resolved (no secrets)."""
        return {
            "preset": self.preset,
            "backends": {r.value: (s.public() if s is not None else None) for r, s in self.backends.items()},
            "des": self.des.model_dump(mode="json"), "vqa": self.vqa.model_dump(mode="json"),
            "runner": self.runner.model_dump(mode="json"), "build": self.build,
        }


def format_validation_error(exc: ValidationError, where: str) -> str:
    """``where: a.b.c: message`` lines, one per error."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(top level)"
        lines.append(f"{where}: {loc}: {err.get('msg')}")
    return "\n".join(lines)


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    else:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of settings at the top level")
    return data


def load_run_config(path: "str | os.PathLike[str]") -> RunConfig:
    """Read and validate a run configuration (``.toml`` or ``.json``); ConfigError names the
    file and each wrong field."""
    p = Path(os.fspath(path))
    if not p.is_file():
        raise ConfigError(f"no such configuration file: {p}")
    data = _read(p)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(p))) from None
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
