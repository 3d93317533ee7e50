"""The pipeline base class shared by DES, VQA and the bench runner.

A :class:`Pipeline` is a list of stages over one record type plus four things a runner needs:

- :meth:`Pipeline.make_inputs`: input items -> records (bad input already marked failed at
  stage ``"input"``; every record's ``key`` hashes its content and :meth:`fingerprint`);
- :meth:`Pipeline.fingerprint`: SHA-256 of everything that changes a result: the output-
  relevant configuration fields, prompt versions, each backend's fingerprint (registry name and
  result-relevant settings, see :class:`giqa.models.BackendSpec`) and the preset;
- :meth:`Pipeline.outputs` (one record -> its samples) and :meth:`Pipeline.finalize`;
- :meth:`Pipeline.run`: the whole thing in memory, for library users (the on-disk runners are
  :func:`giqa.pipeline.run_local` and :func:`giqa.pipeline.ray_runner.run_ray`).

``stage(name)`` / ``replace_stage(name, stage)`` find and swap stages; each stage also works
alone on records, e.g. ``pipe.stage("detect")(records)``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Generic, Iterable, Literal, Optional, Sequence, TypeVar

from giqa.errors import ConfigError, GiqaError
from giqa.pipeline.backends import BackendSlot
from giqa.pipeline.records import Record
from giqa.pipeline.stages import Stage, run_stages

__all__ = ["Pipeline", "RecordErrors", "fingerprint"]

R = TypeVar("R", bound=Record)
O = TypeVar("O")


def fingerprint(*parts: Any) -> str:
    """SHA-256 hex of the canonical JSON of ``parts``."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


class RecordErrors(GiqaError, ValueError):
    """Records failed in :meth:`Pipeline.run`. ``errors``: their ``errors.jsonl`` entries;
    ``outputs``: the samples of the records that succeeded."""

    def __init__(self, errors: list[dict[str, Any]], outputs: list[Any]) -> None:
        first = errors[0]
        super().__init__(f"{len(errors)} record(s) failed; first: {first['id']!r} at {first['stage']}: {first['message']}")
        self.errors = errors
        self.outputs = outputs


class Pipeline(Generic[R, O]):
    """Stages over records of type ``R`` giving outputs of type ``O`` (a
    :class:`giqa.types.Sample` for DES and VQA)."""

    task: ClassVar[str] = "run"
    record_type: ClassVar[type[Record]] = Record
    stages: list[Stage[R]]
    preset: Optional[str] = None

    # -- stages --------------------------------------------------------------------------------
    def stage(self, name: str) -> Stage[R]:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages are {[s.name for s in self.stages]}")

    def replace_stage(self, name: str, stage: Stage[R]) -> None:
        """Swap the stage called ``name`` for ``stage`` (any object with ``name``,
        ``batch_size`` and ``__call__(records) -> records``)."""
        missing = [a for a in ("name", "batch_size") if not hasattr(stage, a)]
        if missing or not callable(stage):
            raise ConfigError(f"a stage needs name, batch_size and __call__(records); {type(stage).__name__} lacks "
                              f"{', '.join(missing) or '__call__'}")
        self.stages[self.stages.index(self.stage(name))] = stage
        self._provenance = None

    def slots(self) -> dict[str, BackendSlot]:
        """Every configured backend slot of the stages, by role name."""
        out: dict[str, BackendSlot] = {}
        for s in self.stages:
            slots = s.slots() if isinstance(s, Stage) else {}
            for role, slot in slots.items():
                if slot.configured:
                    out.setdefault(role.value, slot)
        return out

    # -- identity ------------------------------------------------------------------------------
    def fingerprint_parts(self) -> dict[str, Any]:
        """The configuration and prompt versions that change a result (subclasses add theirs)."""
        return {}

    def backend_fingerprints(self) -> dict[str, Any]:
        out: dict[str, Any] = {role: slot.fingerprint() for role, slot in self.slots().items()}
        custom = [f"{type(s).__module__}.{type(s).__qualname__}" for s in self.stages if not isinstance(s, Stage)]
        if custom:
            out["custom_stages"] = custom
        return out

    def fingerprint(self) -> str:
        """SHA-256 of what changes this pipeline's results (see the module docstring)."""
        return fingerprint(self.task, self.fingerprint_parts(), self.backend_fingerprints(), self.preset)

    def config_fingerprint(self) -> str:  # the older name
        return self.fingerprint()

    _provenance: Optional[dict[str, Any]] = None

    def provenance_config(self) -> dict[str, Any]:
        """The part of :meth:`resolved_config` that made a sample: fingerprint, output-relevant
        settings, backends (computed once per pipeline; it goes into every sample's provenance
        as ``extra["run"]``; ``run.json`` in the output directory has the whole of it)."""
        if self._provenance is None:
            config: Any = getattr(self, "config", None)
            fields = config.fingerprint_fields() if hasattr(config, "fingerprint_fields") else {}
            self._provenance = {"fingerprint": self.fingerprint(), "config": fields,
                                "backends": {role: slot.public() for role, slot in self.slots().items()}}
        return self._provenance

    def resolved_config(self) -> dict[str, Any]:
        """The configuration as run: task, settings, backends (no secrets), preset, fingerprint.
        Written to ``run.json`` in the output directory and into each sample's provenance."""
        config = getattr(self, "config", None)
        return {
            "task": self.task,
            "config": config.model_dump(mode="json") if config is not None else {},
            "backends": {role: slot.public() for role, slot in self.slots().items()},
            "preset": self.preset,
            "fingerprint": self.fingerprint(),
        }

    # -- records -------------------------------------------------------------------------------
    def make_inputs(self, items: Iterable[Any], **options: Any) -> list[R]:  # pragma: no cover - abstract
        """Input records of ``items``; ``options`` are runner hints a pipeline may use
        (``hasher``, ``known_ids``, ``progress``)."""
        raise NotImplementedError

    def outputs(self, record: R) -> list[O]:  # pragma: no cover - abstract
        """The outputs of one good record (raise ValueError/KeyError/TypeError if it has none)."""
        raise NotImplementedError

    def finalize(self, records: Iterable[R]) -> tuple[list[O], list[dict[str, Any]]]:
        """``(outputs, errors)``: the outputs of the good records, one ``errors.jsonl`` entry per
        failed record. A record whose outputs cannot be built fails at stage ``finalize``; a good
        record that gives no output fails with ``EmptyResult``."""
        outputs: list[O] = []
        errors: list[dict[str, Any]] = []
        for r in records:
            if r.error is None:
                try:
                    got = self.outputs(r)
                except (ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError included
                    r = r.failed("finalize", exc)
                else:
                    if got:
                        outputs.extend(got)
                        continue
                    r = r.failed("finalize", "the record gave no sample", "EmptyResult")
            errors.append(r.error_entry())
        return outputs, errors

    def run(self, items: Iterable[Any], *, errors: Literal["raise", "skip"] = "raise") -> list[O]:
        """Run ``items`` through every stage in this process and return the outputs.

        ``errors="raise"`` (default): if any record failed, :class:`RecordErrors` carries the
        error entries and the outputs of the others; ``"skip"`` returns those outputs only.
        """
        records: list[R] = run_stages(self.stages, list(self.make_inputs(items)))
        outputs, failed = self.finalize(records)
        if failed and errors == "raise":
            raise RecordErrors(failed, outputs)
        return outputs


def stage_names(stages: Sequence[Any]) -> list[str]:
    return [getattr(s, "name", type(s).__name__) for s in stages]
