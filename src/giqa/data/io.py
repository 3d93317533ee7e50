"""giqa's one I/O layer: atomic writes, one JSONL reader, appends that survive a kill, one
Parquet schema for samples, and the output-directory lock.

Every file giqa writes goes through here:

* :func:`atomic_target` / :func:`write_jsonl_atomic` / :func:`write_text_atomic`: write into
  ``<path>.incomplete`` and rename it to ``<path>`` only on success (files and directories), so
  a crash never leaves a half file that looks whole.
* :class:`JsonlAppender`: append-only JSON Lines; each group of lines is one ``write`` and one
  ``flush`` (a killed process loses at most the group it was writing); a torn last line is cut
  off (:func:`repair_tail`) before appending again.
* :func:`iter_jsonl`: the JSON Lines reader. **Bad-line policy** (``on_bad``):

  - blank lines are skipped, a UTF-8 BOM at the start is ignored;
  - a *bad line* is one that is not valid UTF-8, not valid JSON, or (with ``objects=True``,
    the default) not a JSON object;
  - ``on_bad="raise"`` (files a person wrote: inputs, benches): :class:`giqa.errors.ParseError`
    naming the file and line;
  - ``on_bad="item"`` (inputs where every line must be accounted for): a :class:`BadLine` is
    yielded in its place, and reading goes on;
  - ``on_bad="skip"`` (files giqa appends to: samples, errors, predictions): bad lines are
    skipped; the only bad line giqa itself can leave is a torn last line after a kill.

* :data:`SAMPLE_SCHEMA` / :func:`sample_record_batch`: the one Parquet/Arrow layout of samples
  (``giqa build export --to parquet`` and the Ray runner's Parquet shards).
* :func:`exclusive_lock`: one writer per output directory; a second gets
  :class:`giqa.errors.OutputLockedError`.

Nothing heavy is imported: pyarrow only inside the Parquet helpers (extra ``scale``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Literal, Optional, Sequence, Union

from giqa.errors import OutputLockedError, ParseError, require

__all__ = [
    "BadLine",
    "JsonlAppender",
    "SAMPLE_COLUMNS",
    "atomic_target",
    "dumps",
    "exclusive_lock",
    "iter_jsonl",
    "iter_jsonl_numbered",
    "read_jsonl",
    "remove_path",
    "repair_tail",
    "sample_record_batch",
    "sample_schema",
    "write_jsonl_atomic",
    "write_text_atomic",
]

PathLike = Union[str, "os.PathLike[str]"]
OnBad = Literal["raise", "skip", "item"]
INCOMPLETE = ".incomplete"


def dumps(obj: Any) -> str:
    """Compact JSON on one line (UTF-8 kept as is)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# -- atomic writes -------------------------------------------------------------------------------
def remove_path(path: Path) -> None:
    """Remove a file, link or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_target(path: PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield ``<path>.incomplete`` to write into; rename it to ``path`` when the block succeeds.

    On an exception the temporary is removed and ``path`` is left as it was. A leftover
    temporary of a crashed run is removed first. ``overwrite=False`` refuses an existing
    ``path`` with :class:`FileExistsError`. Works for files and directories.
    """
    target = Path(os.fspath(path))
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    tmp = target.with_name(target.name + INCOMPLETE)
    remove_path(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        remove_path(tmp)
        raise
    if tmp.is_dir() and target.exists():
        old = target.with_name(target.name + ".old")
        remove_path(old)
        target.rename(old)
        tmp.rename(target)
        remove_path(old)
    else:
        os.replace(tmp, target)


def _fsync(fh: IO[Any]) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def write_jsonl_atomic(path: PathLike, objs: Iterable[Any]) -> Path:
    """Replace ``path`` with one line per object (a ``str`` is written as it is), atomically."""
    with atomic_target(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for o in objs:
                fh.write((o if isinstance(o, str) else dumps(o)) + "\n")
            _fsync(fh)
    return Path(os.fspath(path))


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8), atomically."""
    with atomic_target(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            _fsync(fh)
    return Path(os.fspath(path))


# -- appends -------------------------------------------------------------------------------------
def repair_tail(path: PathLike) -> int:
    """Cut a torn last line (one without its newline) off ``path``; returns the bytes cut."""
    p = Path(os.fspath(path))
    if not p.exists():
        return 0
    size = p.stat().st_size
    if size == 0:
        return 0
    with open(p, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        pos, block, cut = size, 1 << 16, 0
        while pos > 0:  # scan back for the last newline, in blocks
            start = max(0, pos - block)
            f.seek(start)
            i = f.read(pos - start).rfind(b"\n")
            if i >= 0:
                cut = start + i + 1
                break
            pos = start
        f.truncate(cut)
    return size - cut


class JsonlAppender:
    """Append-only JSON Lines file. :meth:`write_group` writes several lines with one ``write``
    and one ``flush`` and returns ``(offset, length)`` of what it wrote (bytes)."""

    def __init__(self, path: PathLike, *, fsync: bool = False) -> None:
        self.path = Path(os.fspath(path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._f = open(self.path, "ab")
        self._fsync = fsync

    def tell(self) -> int:
        return self._f.tell()

    def write(self, obj: Any) -> tuple[int, int]:
        return self.write_group([obj])

    def write_group(self, objs: Iterable[Any]) -> tuple[int, int]:
        data = "".join((o if isinstance(o, str) else dumps(o)) + "\n" for o in objs).encode("utf-8")
        start = self._f.tell()
        if data:
            self._f.write(data)
            self._f.flush()
            if self._fsync:
                os.fsync(self._f.fileno())
        return start, len(data)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the reader ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BadLine:
    """A line :func:`iter_jsonl` could not read: 1-based ``line``, byte ``offset``, why."""

    path: str
    line: int
    offset: int
    message: str
    text: str

    def error(self) -> ParseError:
        return ParseError(f"{self.path}: line {self.line}: {self.message}")


def _decode(raw: bytes, objects: bool) -> tuple[Any, Optional[str]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} (column {exc.colno})"
    if objects and not isinstance(value, dict):
        return None, f"not a JSON object (got {type(value).__name__})"
    return value, None


def iter_jsonl(
    path: PathLike, *, on_bad: OnBad = "raise", objects: bool = True, missing_ok: bool = False
) -> Iterator[Any]:
    """Values of a JSON Lines file, one per non-blank line (see the module's bad-line policy).

    With ``on_bad="item"`` a :class:`BadLine` takes a bad line's place. A missing file raises
    :class:`FileNotFoundError` unless ``missing_ok``. Memory: one line at a time.
    """
    for _, value in iter_jsonl_numbered(path, on_bad=on_bad, objects=objects, missing_ok=missing_ok):
        yield value


def iter_jsonl_numbered(
    path: PathLike, *, on_bad: OnBad = "raise", objects: bool = True, missing_ok: bool = False
) -> Iterator[tuple[int, Any]]:
    """:func:`iter_jsonl` with each value's 1-based line number: ``(line, value)`` (for readers
    that name lines in their own errors, e.g. duplicate ids)."""
    p = Path(os.fspath(path))
    if missing_ok and not p.exists():
        return
    offset = 0
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            start, offset = offset, offset + len(raw)
            body = raw[3:] if lineno == 1 and raw.startswith(b"\xef\xbb\xbf") else raw
            if not body.strip():
                continue
            value, problem = _decode(body, objects)
            if problem is None:
                yield lineno, value
                continue
            bad = BadLine(str(p), lineno, start, problem, body[:500].decode("utf-8", "replace"))
            if on_bad == "raise":
                raise bad.error()
            if on_bad == "item":
                yield lineno, bad


def read_jsonl(path: PathLike) -> Iterator[dict[str, Any]]:
    """Objects of a JSONL file giqa wrote (``on_bad="skip"``); a missing file yields nothing."""
    return iter_jsonl(path, on_bad="skip", missing_ok=True)


# -- the lock ------------------------------------------------------------------------------------
LOCK_FILE = ".giqa.lock"


@contextlib.contextmanager
def exclusive_lock(directory: PathLike, what: str = "giqa run") -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (file ``.giqa.lock``) for the block.

    A second process (or a second lock in this one) gets :class:`OutputLockedError` at once,
    naming the holder's pid. The lock is an ``flock``: it dies with its process, so a killed
    run never leaves a stale lock. Platforms without ``fcntl`` run unlocked.
    """
    d = Path(os.fspath(directory))
    d.mkdir(parents=True, exist_ok=True)
    path = d / LOCK_FILE
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            raise OutputLockedError(
                f"{d} is in use by another {what} (pid {holder}); wait for it to finish or use another output directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock


# -- Parquet -------------------------------------------------------------------------------------
SAMPLE_COLUMNS = ("key", "id", "image", "task", "vqa_kind", "vqa_mode", "question", "answer", "description",
                  "source", "conversations", "sample")


def sample_schema() -> Any:
    """The Arrow schema of sample tables: flat columns to browse and filter, ``key`` (the record
    key of a pipeline run, else null), ``random_weights`` (made by random-weight models), LLaVA
    ``conversations``, and ``sample``, the full sample
    JSON (lossless read-back)."""
    pa = require("pyarrow", "scale")
    text = pa.string()
    return pa.schema([
        ("key", text), ("id", text), ("image", text), ("task", text), ("vqa_kind", text), ("vqa_mode", text),
        ("question", text), ("answer", text), ("description", text), ("source", text),
        ("random_weights", pa.bool_()), ("conversations", pa.list_(pa.struct([("from", text), ("value", text)]))), ("sample", text),
    ])


def _opt_str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def sample_record_batch(rows: Sequence[dict[str, Any]], lines: Optional[Sequence[str]] = None) -> Any:
    """A ``pyarrow.RecordBatch`` of :func:`sample_schema` from sample dicts (``model_dump(mode=
    "json")`` form); ``lines`` are their JSON texts when already serialised."""
    pa = require("pyarrow", "scale")
    texts = list(lines) if lines is not None else [dumps(r) for r in rows]
    meta: list[dict[str, Any]] = [m if isinstance(m := r.get("meta"), dict) else {} for r in rows]
    get: Callable[[str], list[Optional[str]]] = lambda k: [_opt_str(r.get(k)) for r in rows]  # noqa: E731
    cols = {
        "key": [_opt_str(m.get("key")) for m in meta], "id": get("id"), "image": get("image"), "task": get("task"),
        "vqa_kind": get("vqa_kind"), "vqa_mode": get("vqa_mode"), "question": get("question"), "answer": get("answer"),
        "description": get("description"), "source": [_opt_str(m.get("source")) for m in meta],
        "random_weights": [bool((r.get("provenance") or {}).get("random_weights", False)) for r in rows],
        "conversations": [[{"from": "human", "value": "<image>\n" + str(r.get("question", ""))},
                           {"from": "gpt", "value": str(r.get("answer", ""))}] for r in rows],
        "sample": texts,
    }
    return pa.RecordBatch.from_pydict(cols, schema=sample_schema())


# -- run directories -----------------------------------------------------------------------------
SAMPLES_FILE = "samples.jsonl"
SHARD_DIR = "samples"


def is_run_dir(path: PathLike) -> bool:
    """Whether ``path`` is an output directory of ``giqa des`` / ``giqa vqa`` (either runner)."""
    p = Path(os.fspath(path))
    return p.is_dir() and ((p / SAMPLES_FILE).is_file() or (p / SHARD_DIR).is_dir())


def shard_files(out_dir: PathLike) -> list[Path]:
    """The complete sample shards ``samples/part-*.{jsonl,parquet}`` of a run directory, sorted
    (temporary files of an interrupted write are not listed)."""
    d = Path(os.fspath(out_dir)) / SHARD_DIR
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.name.startswith("part-") and p.suffix in (".jsonl", ".parquet"))


def iter_shard(path: Path) -> Iterator[dict[str, Any]]:
    """Sample dicts of one shard file."""
    if path.suffix == ".parquet":
        pq = require("pyarrow.parquet", "scale")
        for text in pq.read_table(str(path), columns=["sample"]).column("sample").to_pylist():
            yield json.loads(text)
    else:
        yield from read_jsonl(path)


def iter_run_samples(out_dir: PathLike) -> Iterator[dict[str, Any]]:
    """Every sample dict of a run directory: ``samples.jsonl``, then the shards (streamed)."""
    out = Path(os.fspath(out_dir))
    yield from read_jsonl(out / SAMPLES_FILE)
    for shard in shard_files(out):
        yield from iter_shard(shard)
