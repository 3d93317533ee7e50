"""Generate predictions for a bench file with a vision-language model (``giqa bench run``).

Output is JSONL, one ``{"id", "answer", "model", "random_weights"}`` per item, appended and
flushed after every batch. A rerun with the same output file skips the ids already written
(resume); a last line cut off by a crash is dropped and regenerated. Images are read relative
to ``images_root`` and may not leave it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from giqa.images import load_image  # confined to the root, any pixel format -> RGB
from giqa.types import Sample

__all__ = ["run_bench", "load_done", "load_image"]

PromptFn = Callable[[Sample], str]


def default_prompt(sample: Sample) -> str:
    """The bench question as the model sees it (``<image>`` markers removed)."""
    return sample.question.replace("<image>\n", "").replace("<image>", "").strip()


def load_done(path: Union[str, Path]) -> set[str]:
    """Ids already in a predictions file; a truncated last line is cut off the file."""
    p = Path(path)
    if not p.exists():
        return set()
    done: set[str] = set()
    good_end = 0
    with p.open("rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            break  # no newline: a line cut off mid-write
        line = data[pos:nl]
        if line.strip():
            try:
                rec = json.loads(line)
                done.add(str(rec["id"]))
            except (ValueError, KeyError, TypeError):
                break  # a damaged line: drop it and everything after
        pos = nl + 1
        good_end = pos
    if good_end < len(data):
        with p.open("r+b") as f:
            f.truncate(good_end)
    return done


class _Progress:
    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled
        self.n, self.total = initial, total
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="giqa bench run", unit="item")
        except ImportError:
            self.bar = None

    def update(self, k: int) -> None:
        self.n += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.enabled:
            print(f"\rgiqa bench run: {self.n}/{self.total}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


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
    """
    from giqa.bench.scoring import read_bench

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    items = read_bench(samples) if isinstance(samples, (str, Path)) else list(samples)
    if limit is not None:
        items = items[:limit]
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not resume and out.exists():
        out.unlink()
    done = load_done(out)
    todo = [s for s in items if s.id not in done]
    prompt_fn = prompt_fn or default_prompt
    bar = _Progress(len(items), len(items) - len(todo), progress)
    try:
        with out.open("a", encoding="utf-8") as f:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                images = [load_image(images_root, s.image) for s in batch]
                answers = vlm.answer(images, [prompt_fn(s) for s in batch], max_new_tokens=max_new_tokens)
                if len(answers) != len(batch):
                    from giqa.errors import BackendError

                    raise BackendError(f"VLM returned {len(answers)} answers for {len(batch)} prompts")
                for s, a in zip(batch, answers):
                    rec = {
                        "id": s.id,
                        "answer": a,
                        "model": getattr(vlm, "model_id", "unknown"),
                        "random_weights": bool(getattr(vlm, "random_weights", False)),
                    }
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                bar.update(len(batch))
    finally:
        bar.close()
    return out
