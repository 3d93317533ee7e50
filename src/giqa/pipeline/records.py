"""Records, content-hash keys and crash-safe JSONL files.

A JSONL file written here holds one JSON object per line. Each append is a single ``write``
followed by ``flush`` (the OS has the bytes once it returns, so a killed process loses at most
the line it was writing). Readers skip a torn last line (no newline or invalid JSON) and
:func:`repair_jsonl` cuts it off before a file is appended to again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

__all__ = [
    "content_key",
    "error_info",
    "error_record",
    "set_error",
    "is_error",
    "JsonlWriter",
    "read_jsonl",
    "read_input_items",
    "repair_jsonl",
    "write_jsonl_atomic",
]


def content_key(*parts: bytes | str) -> str:
    """SHA-256 hex over ``parts`` (each length-prefixed, so part boundaries matter)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else bytes(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def error_info(stage: str, exc: BaseException | str, type_: Optional[str] = None) -> dict[str, str]:
    """``{"stage", "type", "message"}`` for a record's ``error`` field."""
    if isinstance(exc, BaseException):
        return {"stage": stage, "type": type_ or type(exc).__name__, "message": str(exc) or repr(exc)}
    return {"stage": stage, "type": type_ or "Error", "message": exc}


def set_error(record: dict[str, Any], stage: str, exc: BaseException | str, type_: Optional[str] = None) -> dict[str, Any]:
    """A copy of ``record`` marked failed at ``stage``."""
    out = dict(record)
    out["error"] = error_info(stage, exc, type_)
    return out


def error_record(r: dict[str, Any]) -> dict[str, Any]:
    """The ``errors.jsonl`` line of a failed record."""
    err = r.get("error") or {}
    inp = {k: r.get(k) for k in ("image", "description") if k in r}
    if r.get("input") is not None:
        inp.update(r["input"])
    return {
        "key": r.get("key"),
        "id": r.get("id"),
        "image": r.get("image"),
        "stage": err.get("stage"),
        "type": err.get("type"),
        "message": err.get("message"),
        "input": inp,
    }


def finalize_records(
    records: Iterable[dict[str, Any]], build: Callable[[dict[str, Any]], list[Any]]
) -> tuple[list[Any], list[dict[str, Any]]]:
    """``(samples, errors)``: ``build(record)`` gives the samples of each good record; a record
    that already failed, or whose ``build`` raises ValueError/KeyError/TypeError (a pydantic
    ValidationError included), becomes one error dict (stage ``finalize`` for the latter)."""
    samples: list[Any] = []
    errors: list[dict[str, Any]] = []
    for r in records:
        if r.get("error") is not None:
            errors.append(error_record(r))
            continue
        try:
            samples.extend(build(r))
        except (ValueError, KeyError, TypeError) as exc:
            errors.append(error_record(set_error(r, "finalize", exc)))
    return samples, errors


def is_error(record: dict[str, Any]) -> bool:
    return record.get("error") is not None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class JsonlWriter:
    """Append-only JSONL writer; :meth:`write_group` writes several lines with one ``write``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_jsonl(self.path)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, obj: Any) -> None:
        self.write_group([obj])

    def write_group(self, objs: Iterable[Any]) -> None:
        """Write all ``objs`` at once (pre-serialised ``str`` lines are written as they are)."""
        lines = [o if isinstance(o, str) else _dumps(o) for o in objs]
        if not lines:
            return
        self._f.write("\n".join(lines) + "\n")
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Objects of a JSONL file; a torn or invalid line is skipped (blank lines too).

    A missing file yields nothing.
    """
    p = Path(path)
    if not p.exists():
        return
    with open(p, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n") or not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                yield obj


def repair_jsonl(path: str | os.PathLike[str]) -> None:
    """Cut a torn last line (one without a trailing newline) off ``path``, if any."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return
    with open(p, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # scan back for the last newline, in blocks
        pos, block = size, 1 << 16
        cut = 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                cut = start + i + 1
                break
            pos = start
        f.truncate(cut)


def write_jsonl_atomic(path: str | os.PathLike[str], objs: Iterable[Any]) -> None:
    """Replace ``path`` with ``objs`` via a temporary file and ``os.replace`` (never half written)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for o in objs:
            f.write((o if isinstance(o, str) else _dumps(o)) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def read_input_items(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Items of an input JSONL file; a line that is not a JSON object becomes an item
    ``{"id": "line-N", "_error": "..."}`` so that it ends up as an error record, not lost."""
    from giqa.errors import ParseError

    p = Path(path)
    if not p.exists():
        raise ParseError(f"input file not found: {str(p)!r}")
    items: list[dict[str, Any]] = []
    with open(p, "r", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                items.append({"id": f"line-{n}", "_error": f"line {n} of {p.name} is not valid JSON: {exc}", "raw": line[:500]})
                continue
            if not isinstance(obj, dict):
                items.append({"id": f"line-{n}", "_error": f"line {n} of {p.name} is not a JSON object", "raw": line[:500]})
                continue
            items.append(obj)
    return items
