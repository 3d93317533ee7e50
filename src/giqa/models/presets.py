"""Named sets of backends: ``paper``, ``small`` and ``tiny-random``.

>>> from giqa.models.presets import load_preset, preset_available_locally
>>> name = "small" if preset_available_locally("small") else "tiny-random"
>>> backends = load_preset(name)              # nothing is loaded until first use
>>> backends.detector.detect([image], [["the blurry sky"]])   # doctest: +SKIP
>>> BackendSpec.from_preset("paper", Role.llm)   # one role as a spec (giqa.models.spec)  # doctest: +SKIP
>>> backends.close()

- ``paper``: the models the paper used, or their closest public transformers checkpoints:
  Grounding DINO base, Llama-3-8B-Instruct, LLaVA-1.5-7B as the Yes/No quality filter
  (Q-Instruct's role) and as the VLM, all-MiniLM-L6-v2.
- ``small``: the smallest public checkpoints that still do each job (a laptop, a few GB):
  Grounding DINO tiny, Qwen2.5-0.5B-Instruct, LLaVA-Interleave-Qwen-0.5B, all-MiniLM-L6-v2.
- ``tiny-random``: random-weight models built from configs into a cache directory, offline,
  in seconds (:mod:`giqa.models.tiny`). Every backend reports ``random_weights=True``.

The LLM at throughput: given the URL of an OpenAI-compatible server (vLLM, SGLang; ``vllm serve
meta-llama/Meta-Llama-3-8B-Instruct``), a preset's LLM becomes the ``openai`` backend asking
that server for the preset's model (``load_preset("paper", llm_base_url=URL)``; on the command
line ``--llm-base-url URL`` or ``GIQA_LLM_BASE_URL``); without one it runs in process on
transformers (:func:`server_llm_entry`).

This module imports nothing heavy; the tiny models are built by :func:`load_preset`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from giqa.errors import GiqaError, RegistryError
from giqa.models.registry import create
from giqa.models.roles import Role

__all__ = [
    "ROLES", "PRESETS", "PresetSpec", "Backends", "load_preset", "preset_available_locally", "default_cache_dir",
    "preset_entry", "tiny_cache_dir", "server_llm_entry",
]

ROLES = tuple(Role)  # every preset names a backend for each role


@dataclass(frozen=True)
class PresetSpec:
    """Per role: ``(registry name, settings)``; ``description`` says what it is for."""

    name: str
    description: str
    roles: Mapping[Role, tuple[str, Mapping[str, Any]]]


_MINILM = ("sentence-transformers", {"model_id": "sentence-transformers/all-MiniLM-L6-v2"})

PRESETS: dict[str, PresetSpec] = {
    "paper": PresetSpec(
        "paper",
        "the paper's models or their closest public checkpoints (GPU with >= 24 GB advised)",
        {
            Role.detector: ("grounding-dino", {"model_id": "IDEA-Research/grounding-dino-base"}),
            Role.llm: ("transformers", {"model_id": "meta-llama/Meta-Llama-3-8B-Instruct"}),
            Role.quality_filter: ("llava", {"model_id": "llava-hf/llava-1.5-7b-hf"}),
            Role.embedder: _MINILM,
            Role.vlm: ("llava", {"model_id": "llava-hf/llava-1.5-7b-hf"}),
        },
    ),
    "small": PresetSpec(
        "small",
        "the smallest public checkpoints that still do each job (runs on a laptop CPU)",
        {
            Role.detector: ("grounding-dino", {"model_id": "IDEA-Research/grounding-dino-tiny"}),
            Role.llm: ("transformers", {"model_id": "Qwen/Qwen2.5-0.5B-Instruct"}),
            Role.quality_filter: ("llava", {"model_id": "llava-hf/llava-interleave-qwen-0.5b-hf"}),
            Role.embedder: _MINILM,
            Role.vlm: ("llava", {"model_id": "llava-hf/llava-interleave-qwen-0.5b-hf"}),
        },
    ),
    "tiny-random": PresetSpec(
        "tiny-random",
        "random-weight models built from configs, offline (tests and demos; outputs are meaningless)",
        {
            Role.detector: ("grounding-dino", {"model_id": "{cache}/grounding_dino"}),
            Role.llm: ("transformers", {"model_id": "{cache}/llama"}),
            Role.quality_filter: ("llava", {"model_id": "{cache}/llava"}),
            Role.embedder: ("sentence-transformers", {"model_id": "{cache}/embedder"}),
            Role.vlm: ("llava", {"model_id": "{cache}/llava"}),
        },
    ),
}

# Registry names whose backends load Hugging Face checkpoints (take ``device``/``dtype``).
_HF_BACKENDS = {"grounding-dino", "transformers", "llava", "sentence-transformers"}


@dataclass(frozen=True)
class Backends:
    """The five backends of a preset (built, weights loaded on first use) and ``close()``.

    ``filter`` is another name of ``quality_filter``."""

    preset: str
    detector: Any
    llm: Any
    quality_filter: Any
    embedder: Any
    vlm: Any

    @property
    def filter(self) -> Any:
        return self.quality_filter

    def get(self, role: "Role | str") -> Any:
        """The backend of ``role``."""
        return getattr(self, Role.coerce(role).value)

    @property
    def random_weights(self) -> bool:
        """True when any backend runs random weights (samples must say so)."""
        return any(getattr(b, "random_weights", False) for b in self._all())

    def models(self) -> dict[str, str]:
        """Role -> model id, for sample provenance."""
        return {role.value: str(getattr(self.get(role), "model_id", "?")) for role in ROLES}

    def provenance(self, **fields: Any):
        """A :class:`giqa.types.Provenance` with this preset's models, name and random-weights
        flag; ``fields`` (prompts, thresholds, seed, ...) are passed through."""
        from giqa.types import Provenance

        return Provenance(models=self.models(), preset=self.preset, random_weights=self.random_weights, **fields)

    def _all(self) -> list[Any]:
        return [self.get(role) for role in ROLES]

    def close(self) -> None:
        """Close every backend once (shared instances are closed once)."""
        seen: set[int] = set()
        for backend in self._all():
            if id(backend) in seen:
                continue
            seen.add(id(backend))
            close = getattr(backend, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> "Backends":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_cache_dir() -> Path:
    """``$GIQA_CACHE_DIR`` or ``~/.cache/giqa`` (``$XDG_CACHE_HOME`` respected)."""
    env = os.environ.get("GIQA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "giqa"


def _spec(name: str) -> PresetSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise RegistryError(f"no preset named {name!r}; presets are {', '.join(PRESETS)}") from None


def preset_entry(name: str, role: "Role | str") -> tuple[str, dict[str, Any]]:
    """``(registry name, settings)`` of ``role`` in preset ``name`` (``{cache}`` kept as is)."""
    backend, settings = _spec(name).roles[Role.coerce(role)]
    return backend, dict(settings)


def server_llm_entry(backend: str, settings: Mapping[str, Any], base_url: Optional[str] = None) -> tuple[str, dict[str, Any]]:
    """The ``openai`` LLM entry serving the model of LLM entry ``(backend, settings)``.

    An in-process ``transformers`` entry whose ``model_id`` is a hub id (``paper``:
    ``meta-llama/Meta-Llama-3-8B-Instruct``) keeps that id, which is the name vLLM and SGLang
    serve it under; a local build (``tiny-random``'s ``{cache}/llama``) has no served name, so
    the ``openai`` backend's default applies (give ``model_id`` then). An ``openai`` entry is
    kept. ``base_url`` is added when given.
    """
    name = backend.split(".v")[0]
    out: dict[str, Any] = dict(settings) if name == "openai" else {}
    model_id = settings.get("model_id")
    if name == "transformers" and isinstance(model_id, str) and _is_hub_id(model_id):
        out["model_id"] = model_id
    if base_url is not None:
        out["base_url"] = base_url
    return "openai", out


def _is_hub_id(model_id: str) -> bool:
    return "{" not in model_id and model_id.count("/") == 1 and not Path(model_id).expanduser().exists()


def tiny_cache_dir(*, build: bool = False) -> Path:
    """Where ``tiny-random`` keeps its models in this process; ``build`` builds them if missing."""
    cache = default_cache_dir() / "tiny-random-v1"
    if build:
        _build_tiny(cache)
    return cache


def _build_tiny(cache: Path) -> None:
    from giqa.models import tiny

    tiny.build_tiny_grounding_dino(cache / "grounding_dino")
    tiny.build_tiny_llama(cache / "llama")
    tiny.build_tiny_llava(cache / "llava")
    tiny.build_tiny_sentence_embedder(cache / "embedder")


def load_preset(
    name: str,
    *,
    cache_dir: "Optional[os.PathLike[str] | str]" = None,
    device: Optional[str] = None,
    llm_base_url: Optional[str] = None,
    **overrides: Any,
) -> Backends:
    """Build the backends of preset ``name`` (weights load lazily, on first use).

    ``llm_base_url``: an OpenAI-compatible server (up to ``/v1``) that serves the preset's LLM
    (:func:`server_llm_entry`); None runs it in process.

    ``overrides`` are keyed by role (``detector``, ``llm``, ``quality_filter`` or ``filter``,
    ``embedder``, ``vlm``):
    a backend object replaces the preset's; a mapping updates its settings, and may name a
    different registry backend with ``"backend"`` (e.g.
    ``llm={"backend": "openai", "base_url": "http://gpu-box:8000/v1"}``). ``device`` applies to
    every transformers backend. ``cache_dir`` is where ``tiny-random`` builds its models
    (default :func:`default_cache_dir` ``/ "tiny-random-v1"``).
    """
    spec = _spec(name)
    unknown = sorted(k for k in overrides if Role.parse(k) is None)
    if unknown:
        raise TypeError(f"unknown override(s) {unknown}; roles are {', '.join(r.value for r in ROLES)}")
    by_role = {Role.coerce(k): v for k, v in overrides.items()}
    cache = Path(cache_dir).expanduser() if cache_dir is not None else tiny_cache_dir()
    if name == "tiny-random":
        _build_tiny(cache)
    built: dict[str, Any] = {}
    for role in ROLES:
        override = by_role.get(role)
        if override is not None and not isinstance(override, Mapping):
            built[role.value] = override
            continue
        backend_name, settings = spec.roles[role]
        if role is Role.llm and llm_base_url is not None:
            backend_name, settings = server_llm_entry(backend_name, settings, llm_base_url)
        settings = {k: (v.format(cache=cache) if isinstance(v, str) else v) for k, v in settings.items()}
        if override is not None:
            override = dict(override)
            new_name = override.pop("backend", None)
            if new_name is not None and new_name != backend_name:
                backend_name, settings = new_name, {}
            settings.update(override)
        if device is not None and backend_name.split(".v")[0] in _HF_BACKENDS:
            settings.setdefault("device", device)
        try:
            built[role.value] = create(role, backend_name, **settings)
        except GiqaError:
            raise
        except Exception as exc:
            raise GiqaError(f"preset {name!r}: could not build the {role.value} backend {backend_name!r}: {exc}") from exc
    return Backends(preset=name, **built)


def _hf_cached(model_id: str, files: tuple[tuple[str, ...], ...], cache_dir: Optional[str]) -> bool:
    """Whether, for each group of ``files``, one file is in the local HF cache (no network)."""
    if Path(model_id).expanduser().is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for group in files:
        if not any(isinstance(try_to_load_from_cache(model_id, f, cache_dir=cache_dir), str) for f in group):
            return False
    return True


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_NEEDS = {
    "grounding-dino": (("config.json",), _WEIGHTS, ("preprocessor_config.json", "processor_config.json")),
    "transformers": (("config.json",), _WEIGHTS, ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")),
    "llava": (("config.json",), _WEIGHTS, ("preprocessor_config.json", "processor_config.json")),
    "sentence-transformers": (("modules.json",), _WEIGHTS),
}


def preset_available_locally(name: str, *, hf_cache_dir: "Optional[os.PathLike[str] | str]" = None) -> bool:
    """Whether preset ``name`` can run offline now: its checkpoints are in the local Hugging Face
    cache (``hf_cache_dir``, default the hub cache; checked on disk, no network), or, for
    ``tiny-random``, torch, transformers and sentence-transformers are installed. Never
    downloads anything."""
    spec = _spec(name)
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        return False
    if name == "tiny-random":
        return importlib.util.find_spec("sentence_transformers") is not None
    for role in ROLES:
        backend_name, settings = spec.roles[role]
        model_id = settings["model_id"]
        if backend_name == "sentence-transformers":
            from giqa.models.sentence_embedder import _MINILM_NAMES, bundled_minilm_path

            if model_id in _MINILM_NAMES and bundled_minilm_path() is not None:
                continue
        cache = str(hf_cache_dir) if hf_cache_dir is not None else None
        if not _hf_cached(model_id, _NEEDS[backend_name], cache):
            return False
    return True
