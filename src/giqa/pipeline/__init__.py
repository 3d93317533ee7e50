"""Annotation pipelines (paper section 3.2, Alg. 1): ``DesPipeline``, ``VqaPipeline`` and runners.

``import giqa.pipeline`` is light (no torch, no transformers): backends are built lazily.

Records, stages, pipelines (stable; the in-process runner and the Ray runner rely only on this)
--------------------------------------------------------------------------------------------------
A *record* is a frozen dataclass (:mod:`giqa.pipeline.records`: ``DesRecord``, ``VqaRecord``)
with typed values (``Tag``, ``Box``, ``Detection``, ``Region``, ``QAItem``). Every record has
``key`` (SHA-256 of the input's content and :meth:`Pipeline.fingerprint`), ``id`` (the sample
id) and ``error`` (None or a ``StageError(stage, type, message)``). Records become JSON only
where they leave the process (Ray blocks, ``errors.jsonl``).

A *stage* (:class:`Stage`) has ``name``, ``batch_size``, ``needs`` (backend roles,
:class:`giqa.models.Role`) and ``__call__(records) -> records`` (one out per in, same order).
It passes failed records through, isolates a failing record, and stops the run on a setup
error or a backend that breaks its protocol.

A *pipeline* (:class:`Pipeline`: ``DesPipeline``, ``VqaPipeline``, the bench runner's) has
``stages``, ``stage(name)``, ``replace_stage(name, stage)``, ``fingerprint()``,
``make_inputs(items) -> records``, ``finalize(records) -> (samples, errors)`` and
``run(items) -> samples`` (in memory).

Runners: :func:`run_local` here; ``giqa.pipeline.ray_runner.run_ray`` on Ray. Both write into
one output directory (:mod:`giqa.pipeline.rundir`) and resume from it by key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from giqa._lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first use
    from giqa.models.spec import BackendSpec
    from giqa.pipeline.balance import balance_vqa
    from giqa.pipeline.base import Pipeline, RecordErrors
    from giqa.pipeline.config import DesConfig, VqaConfig
    from giqa.pipeline.des import DesPipeline
    from giqa.pipeline.records import DesRecord, QAItem, Record, Region, StageError, VqaRecord
    from giqa.pipeline.runner import FailurePolicy, RunSummary, run_local
    from giqa.pipeline.runconfig import RunConfig, load_run_config
    from giqa.pipeline.stages import Stage
    from giqa.pipeline.vqa import VqaPipeline

__all__ = [
    "BackendSpec",
    "DesConfig",
    "DesPipeline",
    "DesRecord",
    "FailurePolicy",
    "Pipeline",
    "QAItem",
    "Record",
    "RecordErrors",
    "Region",
    "RunConfig",
    "RunSummary",
    "Stage",
    "StageError",
    "VqaConfig",
    "VqaPipeline",
    "VqaRecord",
    "balance_vqa",
    "load_run_config",
    "run_local",
]

_LAZY = {
    "BackendSpec": "giqa.models.spec",
    "DesConfig": "giqa.pipeline.config",
    "VqaConfig": "giqa.pipeline.config",
    "Stage": "giqa.pipeline.stages",
    "Pipeline": "giqa.pipeline.base",
    "RecordErrors": "giqa.pipeline.base",
    "DesPipeline": "giqa.pipeline.des",
    "VqaPipeline": "giqa.pipeline.vqa",
    "DesRecord": "giqa.pipeline.records",
    "VqaRecord": "giqa.pipeline.records",
    "Record": "giqa.pipeline.records",
    "Region": "giqa.pipeline.records",
    "QAItem": "giqa.pipeline.records",
    "StageError": "giqa.pipeline.records",
    "balance_vqa": "giqa.pipeline.balance",
    "run_local": "giqa.pipeline.runner",
    "RunSummary": "giqa.pipeline.runner",
    "FailurePolicy": "giqa.pipeline.runner",
    "RunConfig": "giqa.pipeline.runconfig",
    "load_run_config": "giqa.pipeline.runconfig",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
