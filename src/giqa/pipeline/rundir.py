"""A run's output directory: samples, their key index, errors, the run's configuration, the lock.

Files in ``out_dir``:

- ``samples.jsonl``: one :class:`giqa.types.Sample` JSON per line; the lines of one record
  (a *group*: a VQA record gives several samples) are appended with one write.
- ``samples.index``: one line per group, appended right after it:
  ``key, file, offset, length, crc32, lines, id`` (tab-separated; ``id`` as JSON). Resume reads
  only this file (constant memory apart from the set of done keys) and checks every group of
  ``samples.jsonl`` against its CRC-32 in one sequential read: a torn or unindexed tail is cut
  off (that record is redone), and a corrupt group or stray bytes *anywhere* in the file are
  moved to ``samples.quarantine.jsonl`` and the record redone. A directory without an index
  (an older giqa, or a deleted index) is indexed once by reading ``samples.jsonl``. Ray shards
  (``samples/part-*``) are indexed by file.
- ``errors.jsonl``: one line per failed record; rewritten at the end of each run to hold the
  failures of that run's inputs only (an input since fixed, changed or removed loses its entry).
- ``run.json``: the resolved configuration and its fingerprint. Another configuration in the
  same directory is refused (its keys would never match; use a new directory).
- ``run_summary.json``, ``image_hashes.tsv`` (the image-hash cache), ``.giqa.lock``.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Optional

from giqa.data.io import (
    SAMPLES_FILE,
    JsonlAppender,
    iter_shard,
    read_jsonl,
    shard_files,
    write_jsonl_atomic,
    write_text_atomic,
)
from giqa.errors import ConfigError

__all__ = ["RunDir", "ResumeState", "INDEX_FILE", "ERRORS_FILE", "SUMMARY_FILE", "RUN_FILE", "QUARANTINE_FILE"]

INDEX_FILE = "samples.index"
ERRORS_FILE = "errors.jsonl"
SUMMARY_FILE = "run_summary.json"
RUN_FILE = "run.json"
QUARANTINE_FILE = "samples.quarantine.jsonl"
HASH_CACHE_FILE = "image_hashes.tsv"
_INDEX_HEADER = "# giqa samples index v1\n"


class IndexEntry(NamedTuple):
    """One group of sample lines: in ``file`` at byte ``offset`` (``-1`` for a shard)."""

    key: str
    file: str
    offset: int
    length: int
    crc: int
    lines: int
    id: str

    def line(self) -> str:
        return f"{self.key}\t{self.file}\t{self.offset}\t{self.length}\t{self.crc}\t{self.lines}\t{_encode_id(self.id)}\n"

    @classmethod
    def parse(cls, line: str) -> "IndexEntry":
        key, file, offset, length, crc, lines, rid = line.rstrip("\n").split("\t", 6)
        return cls(key, file, int(offset), int(length), int(crc), int(lines), _decode_id(rid))


def _encode_id(rid: str) -> str:
    """The id as it is, or as JSON when it could be misread (tabs, newlines, a leading quote)."""
    if not rid or rid[0] == '"' or any(c in rid for c in "\t\n\r"):
        return json.dumps(rid)
    return rid


def _decode_id(text: str) -> str:
    return str(json.loads(text)) if text[:1] == '"' else text


class _Inconsistent(Exception):
    """The fast resume path met something it does not repair itself."""


@dataclass
class ResumeState:
    """What a run directory holds: done keys (and the key of each done id), the number of
    sample lines, the failed records by key, and what resume had to repair."""

    done: set[str] = field(default_factory=set)
    key_of_id: dict[str, str] = field(default_factory=dict)
    n_samples: int = 0
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    quarantined: int = 0
    repaired_bytes: int = 0
    reindexed: bool = False

    def add(self, e: IndexEntry) -> None:
        self.done.add(e.key)
        self.key_of_id[e.id] = e.key
        self.n_samples += e.lines

    def known_id(self, rid: str) -> Optional[str]:
        return self.key_of_id.get(rid)


class RunDir:
    """The output directory of a run (see the module docstring). Used by both runners."""

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self.dir = Path(os.fspath(path))
        self.samples_path = self.dir / SAMPLES_FILE
        self.index_path = self.dir / INDEX_FILE
        self.errors_path = self.dir / ERRORS_FILE
        self.hash_cache_path = self.dir / HASH_CACHE_FILE
        self._samples: Optional[JsonlAppender] = None
        self._index: Optional[Any] = None
        self._errors: Optional[JsonlAppender] = None

    # -- configuration ---------------------------------------------------------------------------
    def check_config(self, resolved: dict[str, Any]) -> None:
        """Write ``run.json``, or refuse when it holds another fingerprint (ConfigError)."""
        path = self.dir / RUN_FILE
        self.dir.mkdir(parents=True, exist_ok=True)
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = {}
            if old.get("fingerprint") not in (None, resolved["fingerprint"]):
                raise ConfigError(
                    f"{self.dir} holds a {old.get('task', '?')} run with another configuration (fingerprint "
                    f"{str(old.get('fingerprint'))[:12]}, now {resolved['fingerprint'][:12]}; see {path}); its samples "
                    "would never be resumed: use a new output directory, or delete run.json to mix configurations"
                )
        write_text_atomic(path, json.dumps(resolved, indent=2, sort_keys=True) + "\n")

    # -- resume ----------------------------------------------------------------------------------
    def open(self, *, progress: bool = False) -> ResumeState:
        """Read the index, check ``samples.jsonl`` against it, repair, load the errors.

        The usual case is one streaming pass over the index and ``samples.jsonl`` together;
        anything it cannot fix in place (a corrupt group or stray bytes in the middle, an
        unreadable index line, no index at all) takes the repairing path."""
        state = ResumeState()
        try:
            if not self.index_path.exists() and (self.samples_path.exists() or shard_files(self.dir)):
                raise _Inconsistent  # written by an older giqa, or the index was deleted
            self._fast_open(state)
        except _Inconsistent:
            state = self._repair_open(progress)
        for err in read_jsonl(self.errors_path):
            if err.get("key"):
                state.errors[str(err["key"])] = err  # last entry per key wins
        return state

    def _fast_open(self, state: ResumeState) -> None:
        """One pass: each indexed group of ``samples.jsonl`` must follow the previous one and
        match its CRC. A torn last index line is cut off, and so is an unindexed tail of
        ``samples.jsonl`` (that record is redone)."""
        shards: list[IndexEntry] = []
        pos = 0
        good_index_bytes = 0
        size = self.samples_path.stat().st_size if self.samples_path.exists() else 0
        with open(self.index_path, "rb") if self.index_path.exists() else _empty() as index, \
                open(self.samples_path, "rb") if size else _empty() as samples:
            done, ids, n_samples = state.done, state.key_of_id, 0
            for raw in index:  # the hot loop of a resume: inlined, no objects per line
                if not raw.endswith(b"\n"):
                    break  # torn by a kill: the group it indexed is redone
                good_index_bytes += len(raw)
                if raw[:1] == b"#" or not raw.strip():
                    continue
                try:
                    key, file, offset, length, crc, lines, rid = raw.decode("utf-8")[:-1].split("\t", 6)
                    if file != SAMPLES_FILE:
                        shards.append(IndexEntry(key, file, int(offset), int(length), int(crc), int(lines), _decode_id(rid)))
                        continue
                    n = int(length)
                    ok = int(offset) == pos and key not in done and zlib.crc32(samples.read(n)) == int(crc)
                except (ValueError, UnicodeDecodeError):
                    raise _Inconsistent from None
                if not ok:
                    raise _Inconsistent
                done.add(key)
                ids[_decode_id(rid)] = key
                n_samples += int(lines)
                pos += n
            state.n_samples += n_samples
        if self.index_path.exists() and good_index_bytes < self.index_path.stat().st_size:
            with open(self.index_path, "rb+") as fh:
                fh.truncate(good_index_bytes)
        if pos < size:
            state.repaired_bytes += size - pos
            with open(self.samples_path, "rb+") as fh:
                fh.truncate(pos)
        kept = self._check_shards(shards, state)
        indexed = {e.file for e in shards}
        added = [e for e in kept if e.file not in indexed]
        if added:  # shards written by a run that stopped before indexing them
            with open(self.index_path, "a", encoding="utf-8") as fh:
                fh.write((_INDEX_HEADER if fh.tell() == 0 else "") + "".join(e.line() for e in added))
        for e in kept:
            state.add(e)

    def _repair_open(self, progress: bool) -> ResumeState:
        """The slow path: read (or rebuild) the whole index, quarantine what does not match,
        rewrite ``samples.jsonl`` and the index."""
        state = ResumeState()
        entries: Optional[list[IndexEntry]] = None
        if self.index_path.exists():
            entries, _ = self._read_index()
        if entries is None:
            entries = self._reindex(progress)
            state.reindexed = True
        entries = self._check_samples(entries, state)
        entries = self._check_shards(entries, state)
        write_text_atomic(self.index_path, _INDEX_HEADER + "".join(e.line() for e in entries))
        for e in entries:
            state.add(e)
        return state

    def _read_index(self) -> tuple[Optional[list[IndexEntry]], bool]:
        """``(entries, clean)``; entries None when a line in the middle is unreadable."""
        entries: list[IndexEntry] = []
        clean = True
        with open(self.index_path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("#") or not line.strip():
                    continue
                try:
                    entries.append(IndexEntry.parse(line))
                except (ValueError, TypeError):
                    if line.endswith("\n"):
                        return None, False
                    clean = False  # a torn last line: the group it indexed is redone
                    continue
                if not line.endswith("\n"):
                    clean = False
        return entries, clean

    def _reindex(self, progress: bool) -> list[IndexEntry]:
        """Index ``samples.jsonl`` by reading it (groups by ``meta.key``; a group must hold
        ``meta.group_size`` lines). Lines that are not samples are left to :meth:`_check_samples`."""
        from giqa.pipeline.inputs import progress_bar

        entries: list[IndexEntry] = []
        if not self.samples_path.exists():
            return entries
        bar = progress_bar(self.samples_path.stat().st_size, progress, "indexing samples.jsonl", "B")
        group: list[tuple[int, bytes, dict[str, Any]]] = []

        def close_group() -> None:
            if group and len(group) == int((group[0][2].get("meta") or {}).get("group_size", 1)):
                data = b"".join(raw for _, raw, _ in group)
                first = group[0][2]
                rid = (first.get("meta") or {}).get("record_id") or first.get("id")
                entries.append(IndexEntry(str(first["meta"]["key"]), SAMPLES_FILE, group[0][0], len(data),
                                          zlib.crc32(data), len(group), str(rid)))
            group.clear()

        for offset, raw, obj in _lines(self.samples_path):
            if bar is not None:
                bar.update(len(raw))
            key = (obj.get("meta") or {}).get("key") if isinstance(obj, dict) else None
            if key is None:
                close_group()
                continue
            if group and (group[0][2]["meta"]["key"] != key or group[-1][0] + len(group[-1][1]) != offset):
                close_group()
            group.append((offset, raw, obj))
        close_group()
        if bar is not None:
            bar.close()
        return entries

    def _check_samples(self, entries: list[IndexEntry], state: ResumeState) -> list[IndexEntry]:
        """Check each ``samples.jsonl`` group's CRC in one sequential read; quarantine bad bytes
        and stray lines; cut an unindexed tail; rewrite the file when its middle was bad."""
        local = [e for e in entries if e.file == SAMPLES_FILE]
        others = [e for e in entries if e.file != SAMPLES_FILE]
        if not self.samples_path.exists():
            return others
        size = self.samples_path.stat().st_size
        good: list[IndexEntry] = []
        bad: list[tuple[int, int, str]] = []  # (offset, length, why)
        pos = 0
        seen: set[str] = set()
        with open(self.samples_path, "rb") as fh:
            for e in local:
                if e.offset < pos or e.offset + e.length > size or e.key in seen:
                    continue  # overlapping, beyond the end or repeated: not a group of this file
                if e.offset > pos:
                    bad.append((pos, e.offset - pos, "bytes outside every indexed group"))
                fh.seek(e.offset)
                data = fh.read(e.length)
                if zlib.crc32(data) == e.crc:
                    good.append(e)
                    seen.add(e.key)
                else:
                    bad.append((e.offset, e.length, "group does not match its CRC-32 (corrupt)"))
                pos = e.offset + e.length
        if not bad:
            if pos < size:
                state.repaired_bytes += size - pos
                with open(self.samples_path, "rb+") as fh:
                    fh.truncate(pos)  # a torn or unindexed tail: the record is redone
            return good + others
        return self._rewrite(good, bad, state) + others

    def _rewrite(self, good: list[IndexEntry], bad: list[tuple[int, int, str]], state: ResumeState) -> list[IndexEntry]:
        quarantine = JsonlAppender(self.dir / QUARANTINE_FILE)
        moved: list[IndexEntry] = []
        with open(self.samples_path, "rb") as src, quarantine:
            for offset, length, why in bad:
                src.seek(offset)
                text = src.read(length).decode("utf-8", "replace")
                quarantine.write({"offset": offset, "length": length, "reason": why, "text": text})
                state.quarantined += 1
            out_lines: list[str] = []
            pos = 0
            for e in good:
                src.seek(e.offset)
                data = src.read(e.length)
                moved.append(IndexEntry(e.key, e.file, pos, e.length, e.crc, e.lines, e.id))
                out_lines.append(data.decode("utf-8")[:-1])  # without its final newline
                pos += e.length
        write_jsonl_atomic(self.samples_path, out_lines)
        return moved

    def _check_shards(self, entries: list[IndexEntry], state: ResumeState) -> list[IndexEntry]:
        present = {str(p.relative_to(self.dir)): p for p in shard_files(self.dir)}
        kept = [e for e in entries if e.file == SAMPLES_FILE or e.file in present]
        indexed = {e.file for e in kept}
        for name, path in present.items():
            if name not in indexed:  # written, but the run stopped before indexing it
                state.reindexed = True
                kept.extend(_shard_entries(name, path))
        return kept

    # -- writing ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._samples = JsonlAppender(self.samples_path)
        self._errors = JsonlAppender(self.errors_path)
        new = not self.index_path.exists()
        self._index = open(self.index_path, "a", encoding="utf-8")
        if new:
            self._index.write(_INDEX_HEADER)

    def write_group(self, key: str, rid: str, lines: list[str]) -> None:
        """Append one record's sample lines, then its index line."""
        assert self._samples is not None and self._index is not None
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        offset, length = self._samples.write_group(lines)
        self._index.write(IndexEntry(key, SAMPLES_FILE, offset, length, zlib.crc32(data), len(lines), rid).line())
        self._index.flush()

    def index_shard(self, path: Path, groups: Iterable[tuple[str, str, int]]) -> None:
        """Index a shard written (atomically) at ``path``: ``(key, id, lines)`` per group."""
        assert self._index is not None
        name = str(path.relative_to(self.dir))
        self._index.write("".join(IndexEntry(k, name, -1, -1, 0, n, rid).line() for k, rid, n in groups))
        self._index.flush()

    def write_error(self, entry: dict[str, Any]) -> None:
        assert self._errors is not None
        self._errors.write(entry)

    def close(self) -> None:
        for f in (self._samples, self._errors, self._index):
            if f is not None:
                f.close()

    def compact_errors(self, errors: dict[str, dict[str, Any]], keep: set[str]) -> int:
        """Rewrite ``errors.jsonl`` with the entries of ``keep`` (last per key); returns how many."""
        kept = [e for k, e in errors.items() if k in keep]
        if _count_lines(self.errors_path) != len(kept):
            write_jsonl_atomic(self.errors_path, kept)
        return len(kept)


def _empty() -> Any:
    import io

    return io.BytesIO(b"")


def _lines(path: Path) -> Iterator[tuple[int, bytes, Any]]:
    """``(offset, raw line, parsed JSON or None)`` per complete line of ``path``."""
    offset = 0
    with open(path, "rb") as fh:
        for raw in fh:
            start, offset = offset, offset + len(raw)
            if not raw.endswith(b"\n"):
                return
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = None
            yield start, raw, obj


def _shard_entries(name: str, path: Path) -> list[IndexEntry]:
    groups: dict[str, list[Any]] = {}
    for s in iter_shard(path):
        meta = s.get("meta") or {}
        if meta.get("key"):
            groups.setdefault(str(meta["key"]), []).append(meta.get("record_id") or s.get("id"))
    return [IndexEntry(k, name, -1, -1, 0, len(ids), str(ids[0])) for k, ids in groups.items()]


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())

