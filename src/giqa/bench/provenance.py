"""Where a report's numbers come from: versions, input hashes, command, tokeniser, judge, time."""

from __future__ import annotations

import hashlib
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence, Union

__all__ = ["giqa_version", "file_sha256", "data_sha256", "provenance"]


def giqa_version() -> str:
    """The installed giqa's version (the package's own ``__version__`` from a source tree)."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("giqa")
    except (ImportError, PackageNotFoundError):  # pragma: no cover - a bare source checkout
        import giqa

        return getattr(giqa, "__version__", "unknown")


def file_sha256(path: Union[str, Path]) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_sha256(lines: Sequence[str]) -> str:
    """SHA-256 of in-memory records, one line each (what a report hashes when it was given
    objects rather than files): ``id<TAB>...`` lines joined by newlines, UTF-8."""
    data = "".join(line + "\n" for line in lines)
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


def _source(obj: Any, lines) -> dict[str, Optional[str]]:
    if isinstance(obj, (str, Path)):
        return {"path": str(obj), "sha256": file_sha256(obj), "hashed": "file"}
    return {"path": None, "sha256": data_sha256(lines()), "hashed": "in-memory records (id<TAB>text lines)"}


def provenance(
    *,
    bench: Any,
    bench_lines,
    predictions: Any,
    prediction_lines,
    command: Optional[Sequence[str]],
    tokenizer: Optional[str],
    bleu_flavour: str,
    judge: Any,
) -> dict[str, Any]:
    """The provenance block of a report. ``bench_lines`` / ``prediction_lines`` are callables
    giving the records to hash when the input was not a file."""
    return {
        "giqa_version": giqa_version(),
        "python": sys.version.split()[0],
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else None,
        "bench": _source(bench, bench_lines),
        "predictions": _source(predictions, prediction_lines),
        "bleu": bleu_flavour,
        "tokenizer": tokenizer,
        "judge": None if judge is None else {
            "model": judge.model_id, "url": judge.base_url, "prompt_version": judge.prompt_version,
            "temperature": judge.temperature, "random_weights": judge.random_weights,
        },
    }
