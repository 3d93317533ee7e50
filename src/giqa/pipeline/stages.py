"""Stage base class: error pass-through, per-record isolation, lazy picklable backends."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar

from pydantic import BaseModel, ValidationError

from giqa.errors import BackendError, MissingDependencyError, ParseError, RegistryError
from giqa.pipeline.config import BackendSpec
from giqa.pipeline.records import is_error, set_error

__all__ = ["Stage", "BackendSlot", "generate_json", "record_backend"]

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


class BackendSlot:
    """A backend given as an instance, a :class:`BackendSpec` or ``None`` (not configured).

    Pickling keeps the spec and drops a built instance (an instance given directly is pickled
    as it is, so it must be picklable to travel to another process).
    """

    def __init__(self, role: str, value: Any) -> None:
        self.role = role
        if isinstance(value, str):
            value = BackendSpec.from_preset(value, role)
        self.spec: Optional[BackendSpec] = value if isinstance(value, BackendSpec) else None
        self._instance: Any = None if isinstance(value, BackendSpec) else value

    @property
    def configured(self) -> bool:
        return self.spec is not None or self._instance is not None

    def get(self) -> Any:
        if self._instance is None:
            if self.spec is None:
                raise BackendError(f"no {self.role} backend configured")
            self._instance = self.spec.create()
        return self._instance

    def model_id(self) -> str:
        if self._instance is not None:
            return str(getattr(self._instance, "model_id", type(self._instance).__name__))
        if self.spec is not None:
            return self.spec.describe()
        return "none"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.spec is not None:
            state["_instance"] = None
        return state


def record_backend(record: dict[str, Any], role: str, backend: Any) -> None:
    """Note ``backend``'s model id and ``random_weights`` in ``record`` (for provenance)."""
    record.setdefault("models", {})[role] = str(getattr(backend, "model_id", type(backend).__name__))
    if getattr(backend, "random_weights", False):
        record["random_weights"] = True


# Setup problems (a missing optional package, an unknown backend name): not a bad record.
_SETUP_ERRORS = (MissingDependencyError, RegistryError)


class Stage:
    """One pipeline stage. Subclasses implement :meth:`process` on records without error.

    ``__call__`` passes records with an ``error`` through untouched, runs :meth:`process` on
    the rest, and, if the whole batch raises, re-runs it record by record so that only the
    failing records get an ``error`` (``{"stage": name, "type", "message"}``). Setup errors
    (:class:`MissingDependencyError`, :class:`RegistryError`) are raised, not recorded.
    """

    name: str = "stage"
    needs: tuple[str, ...] = ()

    def __init__(self, *, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def process(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[Optional[dict[str, Any]]] = [None] * len(records)
        todo = []
        for i, r in enumerate(records):
            if is_error(r):
                out[i] = r
            else:
                todo.append(i)
        if todo:
            batch = [dict(records[i]) for i in todo]
            try:
                results = self._checked(batch)
            except _SETUP_ERRORS:
                raise  # a backend that cannot be built fails every record: stop the run instead
            except Exception as exc:  # noqa: BLE001 - isolate the failing record(s)
                if len(batch) == 1:
                    results = [set_error(records[todo[0]], self.name, exc)]
                else:
                    log.debug("stage %s: batch failed (%s), retrying record by record", self.name, exc)
                    results = []
                    for i in todo:
                        try:
                            results.extend(self._checked([dict(records[i])]))
                        except Exception as exc1:  # noqa: BLE001
                            results.append(set_error(records[i], self.name, exc1))
            for i, r in zip(todo, results):
                out[i] = r
        return out  # type: ignore[return-value]

    def _checked(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = self.process(batch)
        if len(results) != len(batch):
            raise BackendError(f"stage {self.name} returned {len(results)} records for {len(batch)}")
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, batch_size={self.batch_size})"


_MAX_JSON_STARTS = 8  # bounded, so a brace-heavy answer costs O(8 n), not O(n^2)


def _extract_json(text: str) -> Any:
    """The first JSON object or array in ``text`` (code fences and chatter around it allowed).

    Tries ``raw_decode`` from at most 8 opening brackets, so the cost stays linear.
    """
    decoder = json.JSONDecoder()
    starts = sorted(i for i in (text.find("{"), text.find("[")) if i != -1)
    tries = 0
    while starts and tries < _MAX_JSON_STARTS:
        i = starts.pop(0)
        tries += 1
        try:
            obj, _ = decoder.raw_decode(text, i)
            return obj
        except RecursionError:
            raise ParseError("model output nests JSON too deeply") from None
        except json.JSONDecodeError:
            nxt = min((j for j in (text.find("{", i + 1), text.find("[", i + 1)) if j != -1), default=-1)
            if nxt != -1:
                starts = [nxt]
    raise ParseError("no JSON object found in the model output")


@lru_cache(maxsize=None)
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def generate_json(
    llm: Any,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    model: type[M],
    *,
    max_retries: int,
    max_new_tokens: int,
    coerce: Optional[Callable[[Any], Any]] = None,
) -> list[M | Exception]:
    """Ask ``llm`` for JSON validated by ``model``; malformed answers are retried.

    Each retry appends the model's answer and the validation error to the conversation and
    asks again (at most ``max_retries`` extra rounds, batched over the still-failing items).
    Returns, per conversation, the validated model or the last exception (a ParseError).
    """
    schema = _schema(model)
    convs = [list(c) for c in conversations]
    results: list[M | Exception] = [ParseError("not attempted")] * len(convs)
    pending = list(range(len(convs)))
    for attempt in range(max_retries + 1):
        if not pending:
            break
        texts = llm.generate([convs[i] for i in pending], json_schema=schema, max_new_tokens=max_new_tokens)
        if len(texts) != len(pending):
            raise BackendError(f"LLM returned {len(texts)} answers for {len(pending)} prompts")
        still = []
        for i, text in zip(pending, texts):
            try:
                data = _extract_json(text)
                if coerce is not None:
                    data = coerce(data)
                results[i] = model.model_validate(data)
            except (ParseError, ValidationError, ValueError, TypeError) as exc:
                msg = _short_error(exc)
                results[i] = ParseError(f"malformed LLM output after {attempt + 1} attempt(s): {msg}")
                still.append(i)
                convs[i] = convs[i] + [
                    {"role": "assistant", "content": text[:4000]},
                    {"role": "user", "content": f"That was not valid: {msg}. Answer again with the JSON object only."},
                ]
        pending = still
    return results


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errs = exc.errors()
        first = errs[0]
        loc = ".".join(str(x) for x in first.get("loc", ()))
        return f"{len(errs)} validation error(s), first at {loc or 'top level'}: {first.get('msg')}"
    return str(exc)[:300]
