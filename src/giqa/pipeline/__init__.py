"""Annotation pipelines (paper section 3.2, Alg. 1): ``DesPipeline``, ``VqaPipeline`` and runners.

``import giqa.pipeline`` is light (no torch, no transformers): backends are built lazily.

Stage API (stable; the in-process runner and the Ray runner both rely only on this)
-------------------------------------------------------------------------------------
A *record* is a JSON-serialisable ``dict``. Every record carries

- ``key``: ``str``, a SHA-256 content hash of the input (image bytes, description or source
  sample) and of the pipeline configuration (:meth:`Pipeline.config_fingerprint`). Two runs
  with the same inputs and configuration give the same keys, whatever the batch order.
- ``id``: ``str``, the sample id (given by the input or derived from image path + text).
- ``error``: ``None`` or ``{"stage": str, "type": str, "message": str}``. A stage passes a
  record with an error through untouched.

A pipeline exposes

- ``pipeline.stages``: ``list`` of stage objects, in order. Each stage has
  ``name: str``, ``batch_size: int``, ``needs: tuple[str, ...]`` (backend roles it uses, e.g.
  ``("llm",)``), and ``__call__(records: list[dict]) -> list[dict]`` returning one record per
  input record, in order. A stage never raises for a bad record: it marks that record's
  ``error`` (a batch-level failure is retried record by record to isolate the culprit).
  Stages are picklable; backends given as :class:`BackendSpec` (or a preset name) are
  created lazily, once per process, on first use (e.g. inside a Ray actor).
- ``pipeline.make_inputs(items) -> list[dict]``: input records (bad input already marked
  with an ``error`` whose stage is ``"input"``).
- ``pipeline.finalize(records) -> (samples: list[giqa.types.Sample], errors: list[dict])``:
  the samples of records without error (each sample's ``meta["key"]`` is its record's key;
  a VQA record gives several samples) and one error dict per failed record
  (``{"key", "id", "image", "stage", "type", "message", "input"}``).

Runners: :func:`run_local` here; ``giqa.pipeline.ray_runner.run_ray`` on Ray. Both write
``samples.jsonl`` and ``errors.jsonl`` in ``out_dir`` and resume from them by key.
"""

from __future__ import annotations

from giqa._lazy import lazy_exports

__all__ = [
    "BackendSpec",
    "DesConfig",
    "DesPipeline",
    "RunSummary",
    "Stage",
    "VqaConfig",
    "VqaPipeline",
    "balance_vqa",
    "run_local",
]

_LAZY = {
    "BackendSpec": "giqa.pipeline.config",
    "DesConfig": "giqa.pipeline.config",
    "VqaConfig": "giqa.pipeline.config",
    "Stage": "giqa.pipeline.stages",
    "DesPipeline": "giqa.pipeline.des",
    "VqaPipeline": "giqa.pipeline.vqa",
    "balance_vqa": "giqa.pipeline.balance",
    "run_local": "giqa.pipeline.runner",
    "RunSummary": "giqa.pipeline.runner",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
