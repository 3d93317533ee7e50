"""Backends inside stages: checked when a pipeline is built, checked again on every call.

:class:`BackendSlot` holds a stage's backend of one :class:`giqa.models.Role`, given as

- an object: it must have the role's method (``generate``, ``detect``, ``p_yes``), else
  :class:`giqa.errors.ConfigError` names the role and the missing method, at construction;
- a :class:`giqa.models.BackendSpec` (or a dict of one): checked against the registry and the
  backend's settings model at construction, built on first use in the process that runs the
  stage (a Ray actor builds its own);
- a string: a preset name (``paper``, ``small``, ``tiny-random``) or a registry name of the role
  (``openai``, ``transformers``);
- ``None``: not configured (the refine stage then only merges boxes).

The ``call_*`` functions call a backend and check what comes back. A backend that breaks its
protocol (wrong number of results, wrong types, probabilities outside [0, 1]) raises
:class:`giqa.errors.BackendContractError`, which stops the run: it is not a bad record.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from giqa.errors import BackendContractError, BackendError, ConfigError, PartialBatchError
from giqa.models.protocols import Detection
from giqa.models.roles import Role, backend_model_id, check_backend
from giqa.models.spec import BackendSpec, result_settings

__all__ = ["BackendSlot", "call_detect", "call_generate", "call_p_yes", "spec_from_name"]


def spec_from_name(role: Role, name: str) -> BackendSpec:
    """A preset name or a registry name of ``role`` -> its spec (ConfigError if it is neither)."""
    from giqa.models.presets import PRESETS
    from giqa.models.registry import available, resolve

    if name in PRESETS:
        return BackendSpec.from_preset(name, role)
    try:
        resolve(role, name)
    except KeyError:
        raise ConfigError(
            f"{role.value} backend {name!r} is neither a preset ({', '.join(PRESETS)}) nor a registered "
            f"{role.value} backend ({', '.join(available(role))})"
        ) from None
    return BackendSpec(role=role, name=name)


class BackendSlot:
    """A stage's backend of role ``role`` (see the module docstring for what it accepts).

    Pickling keeps a spec and drops the instance built from it (each process builds its own);
    an object given directly is pickled as it is.
    """

    def __init__(self, role: "Role | str", value: Any) -> None:
        self.role = Role.coerce(role)
        if isinstance(value, BackendSlot):
            value = value.spec if value.spec is not None else value._instance
        if isinstance(value, str):
            value = spec_from_name(self.role, value)
        elif isinstance(value, Mapping):
            value = BackendSpec(role=self.role, **dict(value))
        self.spec: Optional[BackendSpec] = value if isinstance(value, BackendSpec) else None
        self._instance: Any = None if self.spec is not None else value
        if self.spec is not None:
            if self.spec.role is not self.role:
                raise ConfigError(f"a {self.spec.role.value} spec was given as the {self.role.value} backend")
            self.spec.check()
        elif value is not None:
            check_backend(self.role, value)

    @property
    def configured(self) -> bool:
        return self.spec is not None or self._instance is not None

    @property
    def built(self) -> bool:
        return self._instance is not None

    def get(self) -> Any:
        """The backend, built from its spec on first use in this process."""
        if self._instance is None:
            if self.spec is None:
                raise ConfigError(f"no {self.role.value} backend configured")
            backend = self.spec.create()
            check_backend(self.role, backend)
            self._instance = backend
        return self._instance

    def model_id(self) -> str:
        if self._instance is not None:
            return backend_model_id(self._instance)
        if self.spec is not None:
            return self.spec.describe()
        return "none"

    def fingerprint(self) -> Any:
        """What record keys hash about this backend: the spec's fingerprint, or for an object
        its class, ``model_id`` and result-relevant ``settings`` (when it has Pydantic settings)."""
        if self.spec is not None:
            return self.spec.fingerprint()
        if self._instance is None:
            return None
        b = self._instance
        settings: Any = getattr(b, "settings", None)
        dumped = settings.model_dump(mode="json") if hasattr(settings, "model_dump") else {}
        return {"role": self.role.value, "class": f"{type(b).__module__}.{type(b).__qualname__}",
                "model_id": backend_model_id(b), "settings": result_settings(dumped)}

    def public(self) -> Any:
        """JSON for the resolved run configuration (no secrets)."""
        if self.spec is not None:
            return self.spec.public()
        if self._instance is None:
            return None
        return {"role": self.role.value, "object": type(self._instance).__qualname__,
                "model_id": backend_model_id(self._instance)}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.spec is not None:
            state["_instance"] = None
        return state

    def __repr__(self) -> str:
        return f"BackendSlot({self.role.value}, {self.model_id()})"


# -- checked calls --------------------------------------------------------------------------------
def _contract(backend: Any, message: str) -> BackendContractError:
    return BackendContractError(f"{backend_model_id(backend)} ({type(backend).__name__}): {message}")


def _length(backend: Any, out: Any, n: int, what: str) -> None:
    if not isinstance(out, Sequence) or isinstance(out, (str, bytes)) or len(out) != n:
        got = f"{len(out)} results" if isinstance(out, Sequence) else type(out).__name__
        raise _contract(backend, f"returned {got} for {n} {what}")


def call_detect(detector: Any, images: Sequence[Any], phrases: Sequence[Sequence[str]]) -> list[list[list[Detection]]]:
    """``detector.detect`` with its output checked: one list per image, one per phrase, each of
    :class:`Detection` with a finite score."""
    out = detector.detect(list(images), [list(p) for p in phrases])
    _length(detector, out, len(images), "images")
    for i, (per_image, asked) in enumerate(zip(out, phrases)):
        _length(detector, per_image, len(asked), f"phrases of image {i}")
        for j, dets in enumerate(per_image):
            for d in dets:
                if not isinstance(d, Detection):
                    raise _contract(detector, f"image {i}, phrase {j}: got {type(d).__name__}, "
                                              "expected giqa.models.Detection(box, score, phrase)")
                if not math.isfinite(d.score):
                    raise _contract(detector, f"image {i}, phrase {j}: score {d.score} is not finite")
    return [[list(d) for d in per_image] for per_image in out]


def call_p_yes(quality_filter: Any, crops: Sequence[Any], questions: Sequence[str]) -> list[float]:
    """``quality_filter.p_yes`` with its output checked: one probability in [0, 1] per crop."""
    out = quality_filter.p_yes(list(crops), list(questions))
    _length(quality_filter, out, len(crops), "crops")
    probs = []
    for k, p in enumerate(out):
        try:
            v = float(p)
        except (TypeError, ValueError):
            raise _contract(quality_filter, f"crop {k}: got {type(p).__name__}, expected a probability") from None
        if not 0.0 <= v <= 1.0:  # also false for NaN
            raise _contract(quality_filter, f"crop {k}: P(yes) = {v} lies outside [0, 1]")
        probs.append(v)
    return probs


def call_generate(llm: Any, conversations: Sequence[Any], **kwargs: Any) -> list["str | BackendError"]:
    """``llm.generate`` with its output checked: one string per conversation. Requests that
    failed inside a batch (:class:`PartialBatchError`) come back as their ``BackendError``, so
    the answers that did arrive are kept and nothing is asked twice."""
    try:
        out: Sequence[Any] = llm.generate(list(conversations), **kwargs)
    except PartialBatchError as exc:
        out = exc.results
    _length(llm, out, len(conversations), "conversations")
    texts: list[str | BackendError] = []
    for i, t in enumerate(out):
        if isinstance(t, BaseException):
            texts.append(t if isinstance(t, BackendError) else BackendError(f"request {i} failed: {t}"))
        elif isinstance(t, str):
            texts.append(t)
        else:
            raise _contract(llm, f"answer {i} is {type(t).__name__}, expected str")
    return texts
