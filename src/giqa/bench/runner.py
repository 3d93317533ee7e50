"""Generate predictions for a bench file with a vision-language model (``giqa bench run``).

The bench run is a one-stage pipeline on the same base as DES and VQA
(:class:`giqa.pipeline.base.Pipeline`): :class:`BenchPipeline` turns bench samples into
:class:`BenchRecord` records and its ``answer`` stage asks the VLM (checked like every backend:
a wrong object is a ConfigError at construction, a wrong number of answers stops the run).

Output is JSONL, one ``{"id", "answer", "model", "random_weights"}`` per item (plus what the VLM
reports about how it ran, e.g. ``"image_aspect": "pad"``), appended and
flushed (and fsynced) after every batch. A rerun with the same output file skips the ids
already written (resume); a last line cut off by a crash is cut off and regenerated, other
unreadable lines are skipped (:func:`giqa.data.io.iter_jsonl`). Images are read relative to
``images_root`` and may not leave it; a bench item whose image is missing, outside the root
or not a regular file is an error before anything runs (a benchmark must be whole).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from giqa.errors import GiqaError
from giqa.images import load_image  # confined to the root, any pixel format -> RGB
from giqa.models.roles import Role, backend_model_id
from giqa.pipeline.backends import BackendSlot
from giqa.pipeline.base import Pipeline
from giqa.pipeline.records import Record
from giqa.pipeline.stages import Stage, run_stages
from giqa.types import Sample

__all__ = ["run_bench", "load_done", "load_image", "BenchPipeline", "BenchRecord", "default_prompt"]

PromptFn = Callable[[Sample], str]


def default_prompt(sample: Sample) -> str:
    """The bench question as the model sees it (``<image>`` markers removed)."""
    return sample.question.replace("<image>\n", "").replace("<image>", "").strip()


@dataclass(frozen=True, kw_only=True)
class BenchRecord(Record):
    """One bench item: its ``prompt`` and, once answered, the model's ``answer``."""

    prompt: str = ""
    answer: Optional[str] = None


class AnswerStage(Stage[BenchRecord]):
    """Asks the VLM about each record's image (one ``answer`` call per batch)."""

    name = "answer"
    needs = (Role.vlm,)

    def __init__(self, vlm: Any, images_root: Union[str, Path], *, batch_size: int = 4, max_new_tokens: int = 512) -> None:
        super().__init__(batch_size=batch_size)
        self.vlm = BackendSlot(Role.vlm, vlm)
        self.images_root = str(images_root)
        self.max_new_tokens = max_new_tokens

    def process(self, records: list[BenchRecord]) -> list[BenchRecord]:
        from giqa.errors import BackendContractError

        vlm = self.vlm.get()
        images = [load_image(self.images_root, r.image or "") for r in records]
        answers = vlm.answer(images, [r.prompt for r in records], max_new_tokens=self.max_new_tokens)
        if len(answers) != len(records) or not all(isinstance(a, str) for a in answers):
            raise BackendContractError(f"VLM {backend_model_id(vlm)} returned {len(answers)} answers for "
                                       f"{len(records)} prompts (one string each expected)")
        return [r.used(Role.vlm.value, vlm, answer=a) for r, a in zip(records, answers)]


class BenchPipeline(Pipeline[BenchRecord, dict]):
    """Bench samples -> one prediction per sample (see the module docstring)."""

    task = "bench"
    record_type = BenchRecord

    def __init__(self, vlm: Any, images_root: Union[str, Path], *, batch_size: int = 4, max_new_tokens: int = 512,
                 prompt_fn: Optional[PromptFn] = None) -> None:
        self.images_root = str(images_root)
        self.prompt_fn = prompt_fn or default_prompt
        self.stages: list[Stage[BenchRecord]] = [
            AnswerStage(vlm, images_root, batch_size=batch_size, max_new_tokens=max_new_tokens)]

    def fingerprint_parts(self) -> dict[str, Any]:
        return {"answer": {"max_new_tokens": getattr(self.stage("answer"), "max_new_tokens", None)}}

    def make_inputs(self, items: Iterable[Any], **_: Any) -> list[BenchRecord]:
        """One record per bench sample (the key is the sample id: predictions resume by id).
        A missing, escaping or irregular image raises :class:`giqa.errors.ImageError` here."""
        from giqa.images import regular_file_stat, resolve_image_path

        out = []
        for s in items:
            regular_file_stat(resolve_image_path(self.images_root, s.image), s.image)
            out.append(BenchRecord(key=s.id, id=s.id, image=s.image, prompt=self.prompt_fn(s)))
        return out

    def outputs(self, record: BenchRecord) -> list[dict]:
        if record.answer is None:
            raise ValueError("the record was not answered")
        return [{"id": record.id, "answer": record.answer, "model": record.models.get(Role.vlm.value, "unknown"),
                 "random_weights": record.random_weights, **record.backend_info.get(Role.vlm.value, {})}]


def load_done(path: Union[str, Path]) -> set[str]:
    """Ids already in a predictions file; a truncated last line is cut off the file."""
    from giqa.data.io import iter_jsonl, repair_tail

    p = Path(path)
    if not p.exists():
        return set()
    repair_tail(p)
    return {str(rec["id"]) for rec in iter_jsonl(p, on_bad="skip") if "id" in rec}


def run_bench(
    vlm: Any,
    samples: Union[Sequence[Sample], str, Path],
    images_root: Union[str, Path],
    out_path: Union[str, Path],
    *,
    batch_size: int = 4,
    max_new_tokens: int = 512,
    prompt_fn: Optional[PromptFn] = None,
    resume: bool = True,
    progress: bool = True,
    limit: Optional[int] = None,
) -> Path:
    """Answer every bench item with ``vlm`` (:class:`giqa.models.VisionLanguageModel`).

    ``samples``: Samples or a bench JSONL path; ``resume=False`` starts the file afresh;
    ``limit`` answers only the first ``limit`` items (smoke runs). Returns ``out_path``.
    An item that fails (an image that cannot be decoded) raises after the batch's other
    answers are written.
    """
    from giqa.bench.scoring import read_bench
    from giqa.data.io import JsonlAppender
    from giqa.pipeline.inputs import progress_bar

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    items = read_bench(samples) if isinstance(samples, (str, Path)) else list(samples)
    if limit is not None:
        items = items[:limit]
    pipe = BenchPipeline(vlm, images_root, batch_size=batch_size, max_new_tokens=max_new_tokens, prompt_fn=prompt_fn)
    records = pipe.make_inputs(items)
    out = Path(out_path)
    if not resume and out.exists():
        out.unlink()
    done = load_done(out)
    todo = [r for r in records if r.id not in done]
    bar = progress_bar(len(items), progress, "giqa bench run", "item")
    if bar is not None:
        bar.update(len(items) - len(todo))
    try:
        with JsonlAppender(out, fsync=True) as writer:
            for start in range(0, len(todo), batch_size):
                answered, errors = pipe.finalize(run_stages(pipe.stages, todo[start:start + batch_size]))
                writer.write_group(answered)
                if bar is not None:
                    bar.update(len(answered))
                if errors:
                    e = errors[0]
                    raise GiqaError(f"bench item {e['id']!r} failed at {e['stage']}: {e['message']}")
    finally:
        if bar is not None:
            bar.close()
    return out
