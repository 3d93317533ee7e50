"""Training data: records -> :class:`Conversation` -> a map-style dataset and a task-mixing sampler.

Two record formats, told apart per record by the ``conversations`` key:

- a giqa :class:`~giqa.types.Sample` (``question`` / ``answer``, task from the sample);
- a LLaVA conversation record ``{"id", "image", "conversations": [{"from": "human", "value":
  "<image>\\n..."}, {"from": "gpt", "value": "..."}, ...]}`` (multi-turn allowed; every gpt turn
  is a training target; task from the record's ``task`` field, else the data source's, else DES).

Each conversation has exactly one image, placed before the text of the first user turn (the
LLaVA convention); image paths are relative to the dataset root and confined to it
(:func:`giqa.images.resolve_image_path`). Nothing here imports torch: the dataset and the
sampler are plain Python objects that ``torch.utils.data.DataLoader`` accepts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
from pydantic import ValidationError

from giqa.errors import ImageError, ParseError
from giqa.images import load_image, resolve_image_path
from giqa.types import Sample, Task

__all__ = [
    "IMAGE_PLACEHOLDER",
    "Conversation",
    "SftDataset",
    "TaskMixSampler",
    "conversation_from_llava",
    "conversation_from_sample",
    "read_conversations",
]

IMAGE_PLACEHOLDER = "<image>"
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass(frozen=True)
class Conversation:
    """One training example: an image and alternating user/assistant turns.

    ``turns`` is ``((role, text), ...)`` with roles ``"user"`` / ``"assistant"``, starting with
    a user turn and ending with an assistant turn; text holds no image placeholder. ``image``
    is a path relative to the dataset root.
    """

    id: str
    image: str
    task: Task
    turns: tuple[tuple[str, str], ...]

    def messages(self) -> list[dict[str, Any]]:
        """Chat messages in the transformers multimodal format (image first in the first turn)."""
        out: list[dict[str, Any]] = []
        for i, (role, text) in enumerate(self.turns):
            content: list[dict[str, Any]] = [{"type": "text", "text": text}]
            if i == 0:
                content.insert(0, {"type": "image"})
            out.append({"role": role, "content": content})
        return out


def _check_turns(rid: str, turns: Sequence[tuple[str, str]]) -> None:
    if not turns:
        raise ParseError(f"record {rid!r} has no turns")
    for i, (role, text) in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise ParseError(f"record {rid!r}: turn {i} is from {role!r}, expected {expected!r} (turns alternate)")
        if IMAGE_PLACEHOLDER in text:
            raise ParseError(
                f"record {rid!r}: turn {i} holds an extra {IMAGE_PLACEHOLDER!r}; one image per "
                "conversation, placed in the first user turn"
            )
    if turns[-1][0] != "assistant":
        raise ParseError(f"record {rid!r} ends with a user turn; the last turn must be the answer")
    if not turns[-1][1].strip():
        raise ParseError(f"record {rid!r} has an empty answer")


def conversation_from_sample(sample: Sample) -> Conversation:
    """A :class:`Sample` as a one-turn conversation (``question`` -> ``answer``)."""
    turns = (("user", sample.question.strip()), ("assistant", sample.answer.strip()))
    _check_turns(sample.id, turns)
    return Conversation(id=sample.id, image=sample.image, task=sample.task, turns=turns)


def conversation_from_llava(record: Mapping[str, Any], *, task: Union[Task, str, None] = None) -> Conversation:
    """A LLaVA conversation record as a :class:`Conversation`.

    The first human turn must hold exactly one ``<image>`` placeholder or none (the image is
    always placed first); later turns none. ``task`` applies when the record has no ``task``.
    """
    try:
        rid, image, convs = record["id"], record["image"], record["conversations"]
    except (KeyError, TypeError) as exc:
        raise ParseError(f"not a LLaVA record (needs id, image, conversations): missing {exc}") from exc
    rid = str(rid)
    if not isinstance(image, str) or not image:
        raise ParseError(f"record {rid!r}: 'image' must be one relative path (text-only and multi-image records are not supported)")
    if not isinstance(convs, list) or not convs:
        raise ParseError(f"record {rid!r}: 'conversations' must be a non-empty list")
    turns: list[tuple[str, str]] = []
    for i, turn in enumerate(convs):
        if not isinstance(turn, Mapping) or not isinstance(turn.get("value"), str):
            raise ParseError(f"record {rid!r}: turn {i} needs 'from' and a string 'value'")
        role = _ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise ParseError(f"record {rid!r}: turn {i} is from {turn.get('from')!r}; expected human or gpt")
        text = turn["value"]
        if i == 0:
            if text.count(IMAGE_PLACEHOLDER) > 1:
                raise ParseError(f"record {rid!r}: the first turn holds more than one {IMAGE_PLACEHOLDER!r}")
            text = text.replace(IMAGE_PLACEHOLDER, "", 1)
        turns.append((role, text.strip()))
    _check_turns(rid, turns)
    raw_task = record.get("task", task)
    try:
        task_value = Task(raw_task) if raw_task is not None else Task.des
    except ValueError as exc:
        raise ParseError(f"record {rid!r}: task {raw_task!r} is not 'des' or 'vqa'") from exc
    return Conversation(id=rid, image=image, task=task_value, turns=tuple(turns))


def _records(path: Path) -> Iterator[tuple[str, Any]]:
    """``(location, record)`` for each record of a data file or folder, read through giqa's readers.

    ``.jsonl``: :func:`giqa.data.io.iter_jsonl_numbered` (location ``<file>:<line>``; a malformed
    line raises :class:`ParseError` naming the file and line); ``.json``:
    :func:`giqa.data.jsonstream.iter_json_records` (records stay raw, so multi-turn LLaVA records
    keep every turn); ``.parquet`` and ``datasets`` folders (``giqa build export --to
    parquet|hf``): :func:`giqa.data.writers.iter_samples`, as full samples.
    """
    from giqa.data.io import iter_jsonl_numbered
    from giqa.data.jsonstream import iter_json_records
    from giqa.data.writers import iter_samples

    if path.is_dir() or path.suffix.lower() == ".parquet":
        if not path.exists():
            raise ParseError(f"cannot read training data {path}: not found")
        for i, sample in enumerate(iter_samples(path)):
            yield f"{path}[{i}]", sample.model_dump(mode="json")
        return
    if path.suffix.lower() not in (".json", ".jsonl"):
        raise ParseError(f"training data {path} must be .jsonl, .json, .parquet or a datasets folder")
    if not path.is_file():
        raise ParseError(f"cannot read training data {path}: not found")
    if path.suffix.lower() == ".jsonl":
        for line, rec in iter_jsonl_numbered(path, objects=False):
            yield f"{path}:{line}", rec
        return
    for i, rec in iter_json_records(path):
        yield f"{path}[{i}]", rec


def read_conversations(path: Union[str, os.PathLike[str]], *, task: Union[Task, str, None] = None) -> list[Conversation]:
    """Every record of one data file or folder as conversations; errors name the file and record."""
    path = Path(path)
    out = []
    for where, rec in _records(path):
        if not isinstance(rec, dict):
            raise ParseError(f"{where}: a record must be a JSON object")
        try:
            if "conversations" in rec and "question" not in rec:
                out.append(conversation_from_llava(rec, task=task))
            else:
                out.append(conversation_from_sample(Sample.model_validate(rec)))
        except ParseError as exc:
            raise ParseError(f"{where}: {exc}") from exc
        except ValidationError as exc:
            raise ParseError(f"{where}: not a giqa Sample (and no 'conversations'): {exc}") from exc
    return out


class SftDataset:
    """Map-style dataset of conversations; ``dataset[i]`` -> ``{"conversation", "image"}``.

    ``image`` is an RGB ``PIL.Image`` loaded (and size-limited) by :func:`giqa.images.load_image`.
    Every image path is confined to ``image_root`` and checked to exist on construction, so a
    bad path fails before training starts rather than hours into it.
    """

    def __init__(
        self,
        conversations: Sequence[Conversation],
        image_root: Union[str, os.PathLike[str]],
        *,
        check_files: bool = True,
    ) -> None:
        self.conversations = list(conversations)
        self.image_root = Path(image_root)
        if not self.conversations:
            raise ParseError("no training records")
        seen: set[str] = set()
        for conv in self.conversations:
            if conv.id in seen:
                raise ParseError(f"duplicate record id {conv.id!r}")
            seen.add(conv.id)
            if check_files:
                full = resolve_image_path(self.image_root, conv.image)
                if not full.is_file():
                    raise ImageError(f"record {conv.id!r}: image not found: {conv.image!r} under {self.image_root}")

    @classmethod
    def from_sources(
        cls, sources: Iterable[tuple[Union[str, os.PathLike[str]], Optional[Task]]], image_root: Union[str, os.PathLike[str]]
    ) -> "SftDataset":
        """Read ``(path, task)`` data sources (see :func:`read_conversations`)."""
        convs: list[Conversation] = []
        for path, task in sources:
            convs.extend(read_conversations(path, task=task))
        return cls(convs, image_root)

    def __len__(self) -> int:
        return len(self.conversations)

    def __getitem__(self, i: int) -> dict[str, Any]:
        conv = self.conversations[i]
        return {"conversation": conv, "image": load_image(self.image_root, conv.image)}

    @property
    def tasks(self) -> list[Task]:
        return [c.task for c in self.conversations]

    def lengths(self) -> list[int]:
        """Characters of text per conversation (a tokenizer-free proxy of its length in tokens)."""
        return [sum(len(text) for _, text in c.turns) for c in self.conversations]


class TaskMixSampler:
    """Seeded sampler of dataset indices that mixes tasks by weight; one pass = one epoch.

    ``weights=None``: every index once per epoch in a seeded random order (the data's own task
    proportions). With weights: an epoch of ``num_samples`` indices (default: the number of
    samples whose task has weight > 0) in which task ``t`` gets the share
    ``w_t / sum(w)`` (largest-remainder rounding); each task's samples are drawn without
    replacement, cycling through fresh permutations when its share exceeds its size, and the
    epoch is shuffled. The order depends only on ``(seed, epoch)`` (:meth:`set_epoch`), so a
    resumed run sees the same batches.

    ``lengths`` (one per sample) turns on grouping by modality and length, LLaVA's
    ``group_by_modality_length`` with the task as the modality: the epoch's order is cut, per
    task, into groups of ``group_size`` samples (one global micro-batch: per-device batch x
    processes), each group sorted longest first, leftovers of all tasks pooled into mixed groups,
    and the groups shuffled. Batches then hold one task and similar lengths (less padding).
    """

    def __init__(
        self,
        tasks: Sequence[Union[Task, str]],
        weights: Union[Mapping[Task, float], Mapping[str, float], None] = None,
        *,
        seed: int = 0,
        num_samples: Optional[int] = None,
        lengths: Optional[Sequence[int]] = None,
        group_size: int = 1,
    ) -> None:
        self.tasks = [Task(t) for t in tasks]
        if lengths is not None and len(lengths) != len(self.tasks):
            raise ValueError(f"{len(lengths)} lengths for {len(self.tasks)} samples")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)
        self.group_size = int(group_size)
        if not self.tasks:
            raise ValueError("TaskMixSampler needs at least one sample")
        self.seed = int(seed)
        self.epoch = 0
        self.weights: Optional[dict[Task, float]] = None
        self._by_task: dict[Task, np.ndarray] = {}
        if weights is not None:
            self.weights = {Task(k): float(v) for k, v in weights.items()}
            for task, w in self.weights.items():
                if not (np.isfinite(w) and w >= 0):
                    raise ValueError(f"task weight for {task.value} must be finite and >= 0, got {w}")
            present = {t for t in self.tasks}
            for task in present:
                if task not in self.weights:
                    raise ValueError(f"the data holds {task.value} samples but task_weights gives no weight for it")
            for task, w in self.weights.items():
                if w > 0 and task not in present:
                    raise ValueError(f"task_weights gives {task.value} weight {w} but the data holds no {task.value} samples")
            if not any(w > 0 for w in self.weights.values()):
                raise ValueError("at least one task weight must be > 0")
            arr = np.array([t.value for t in self.tasks])
            for task, w in sorted(self.weights.items(), key=lambda kv: kv[0].value):
                if w > 0:
                    self._by_task[task] = np.flatnonzero(arr == task.value)
        default = len(self.tasks) if weights is None else sum(len(v) for v in self._by_task.values())
        self.num_samples = int(num_samples) if num_samples is not None else default
        if self.num_samples <= 0:
            raise ValueError(f"num_samples must be > 0, got {self.num_samples}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def quotas(self) -> dict[Task, int]:
        """Samples per task in one epoch (weighted mode; largest-remainder rounding)."""
        if self.weights is None:
            counts: dict[Task, int] = {}
            for t in self.tasks:
                counts[t] = counts.get(t, 0) + 1
            return counts
        tasks = list(self._by_task)
        w = np.array([self.weights[t] for t in tasks], dtype=np.float64)
        exact = w / w.sum() * self.num_samples
        base = np.floor(exact).astype(np.int64)
        rest = self.num_samples - int(base.sum())
        order = np.argsort(-(exact - base), kind="stable")
        base[order[:rest]] += 1
        return {t: int(n) for t, n in zip(tasks, base)}

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = self._order(rng)
        if self.lengths is not None:
            order = self._grouped(order, rng)
        return iter(order.tolist())

    def _grouped(self, order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``order`` regrouped by task and length (see the class docstring); same multiset."""
        assert self.lengths is not None
        size = self.group_size
        groups, leftovers = [], []
        task_of = np.array([t.value for t in self.tasks])[order]
        for task in sorted(set(task_of.tolist())):
            members = order[task_of == task]
            full = len(members) - len(members) % size
            for start in range(0, full, size):
                chunk = members[start : start + size]
                groups.append(chunk[np.argsort(-self.lengths[chunk], kind="stable")])
            leftovers.extend(members[full:].tolist())
        rest = np.asarray(leftovers, dtype=np.int64)
        for start in range(0, len(rest), size):
            chunk = rest[start : start + size]
            groups.append(chunk[np.argsort(-self.lengths[chunk], kind="stable")])
        if not groups:
            return order
        return np.concatenate([groups[i] for i in rng.permutation(len(groups))])

    def _order(self, rng: np.random.Generator) -> np.ndarray:
        if self.weights is None:
            idx = rng.permutation(len(self.tasks))
            if self.num_samples != len(idx):
                reps = -(-self.num_samples // len(idx))
                idx = np.concatenate([idx] + [rng.permutation(len(self.tasks)) for _ in range(reps - 1)])
            return idx[: self.num_samples]
        parts = []
        for task, quota in self.quotas().items():
            if quota == 0:
                continue
            pool = self._by_task[task]
            reps = -(-quota // len(pool))
            drawn = np.concatenate([rng.permutation(pool) for _ in range(reps)])[:quota]
            parts.append(drawn)
        return rng.permutation(np.concatenate(parts))
