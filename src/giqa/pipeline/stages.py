"""Stage base class: failed records pass through, one bad record fails alone, setup and
contract errors stop the run; plus :func:`generate_json` (validated JSON from an LLM).

A stage maps a list of typed records (:mod:`giqa.pipeline.records`) to a list of the same
length and order. :meth:`Stage.__call__` owns the error policy, so a concrete stage writes only
:meth:`Stage.process`:

- records with an ``error`` pass through untouched;
- if :meth:`Stage.process` raises on a batch, the batch is re-run record by record so that only
  the failing records get an ``error``; when the first two single records fail exactly as the
  whole batch did, the failure is not about a record and the rest of the batch gets it without
  further calls (a dead backend costs one call per batch, not one per record);
- setup errors (:class:`MissingDependencyError`, :class:`RegistryError`, :class:`ConfigError`)
  and a backend that breaks its protocol (:class:`BackendContractError`) are raised: every
  record would fail the same way, so the run stops instead.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any, Callable, Generic, Mapping, Optional, Sequence, TypeVar

from pydantic import BaseModel, ValidationError

from giqa.errors import BackendContractError, BackendError, ConfigError, MissingDependencyError, ParseError, RegistryError
from giqa.models.roles import Role
from giqa.pipeline.backends import BackendSlot, call_generate
from giqa.pipeline.records import Record

__all__ = ["Stage", "FATAL_ERRORS", "generate_json", "run_stages"]

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=Record)

# Not a bad record: stop the run.
FATAL_ERRORS = (MissingDependencyError, RegistryError, ConfigError, BackendContractError)


class Stage(Generic[R]):
    """One pipeline stage over records of type ``R``. Subclasses set ``name`` and ``needs``
    (the backend roles it uses; each is a :class:`BackendSlot` attribute named after its role)
    and implement :meth:`process` on records without error."""

    name: str = "stage"
    needs: tuple[Role, ...] = ()

    def __init__(self, *, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def process(self, records: list[R]) -> list[R]:  # pragma: no cover
        raise NotImplementedError

    def slots(self) -> dict[Role, BackendSlot]:
        """The stage's backend slots by role."""
        out = {}
        for role in self.needs:
            slot = getattr(self, role.value, None)
            if isinstance(slot, BackendSlot):
                out[role] = slot
        return out

    def __call__(self, records: Sequence[R]) -> list[R]:
        out: list[R] = list(records)
        todo = [i for i, r in enumerate(records) if r.error is None]
        if not todo:
            return out
        batch = [records[i] for i in todo]
        try:
            results = self._checked(batch)
        except FATAL_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the failing record(s)
            results = self._isolate(batch, exc)
        for i, r in zip(todo, results):
            out[i] = r
        return out

    def _isolate(self, batch: list[R], batch_exc: Exception) -> list[R]:
        if len(batch) == 1:
            return [batch[0].failed(self.name, batch_exc)]
        log.debug("stage %s: batch failed (%s), retrying record by record", self.name, batch_exc)
        same = (type(batch_exc), str(batch_exc))
        results: list[R] = []
        repeats = 0
        for k, r in enumerate(batch):
            if repeats >= 2 and repeats == k:  # the first two failed as the batch did: not about a record
                results.extend(x.failed(self.name, batch_exc) for x in batch[k:])
                break
            try:
                results.extend(self._checked([r]))
            except FATAL_ERRORS:
                raise
            except Exception as exc1:  # noqa: BLE001
                repeats += (type(exc1), str(exc1)) == same
                results.append(r.failed(self.name, exc1))
        return results

    def _checked(self, batch: list[R]) -> list[R]:
        results = self.process(batch)
        if len(results) != len(batch):
            raise BackendContractError(f"stage {self.name} returned {len(results)} records for {len(batch)}")
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
    Returns, per conversation, the validated model or the last exception: a ParseError for
    malformed output, the request's BackendError when the backend could not answer it (such
    an item is not asked again: the backend already retried it).
    """
    schema = _schema(model)
    convs = [list(c) for c in conversations]
    results: list[M | Exception] = [ParseError("not attempted")] * len(convs)
    pending = list(range(len(convs)))
    for attempt in range(max_retries + 1):
        if not pending:
            break
        texts = call_generate(llm, [convs[i] for i in pending], json_schema=schema, max_new_tokens=max_new_tokens)
        still = []
        for i, text in zip(pending, texts):
            if isinstance(text, BackendError):
                results[i] = text
                continue
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


def run_stages(stages: Sequence[Any], records: list[R]) -> list[R]:
    """Run ``records`` through ``stages``, each in batches of its ``batch_size``.

    A stage that raises marks that batch failed (the built-in stages never raise for a bad
    record; this guards user stages). Setup errors and contract breaks (:data:`FATAL_ERRORS`,
    a stage returning the wrong number of records included) propagate and stop the run.
    """
    for stage in stages:
        size = max(1, int(getattr(stage, "batch_size", len(records) or 1)))
        name = getattr(stage, "name", type(stage).__name__)
        nxt: list[R] = []
        for start in range(0, len(records), size):
            batch = records[start:start + size]
            try:
                res = list(stage(batch))
            except FATAL_ERRORS:
                raise  # nothing of this chunk was written; a re-run redoes it
            except Exception as exc:  # noqa: BLE001 - one bad batch never stops the run
                res = [r if r.error is not None else r.failed(name, exc) for r in batch]
            if len(res) != len(batch):
                raise BackendContractError(f"stage {name} returned {len(res)} records for {len(batch)}")
            nxt.extend(res)
        records = nxt
    return records
