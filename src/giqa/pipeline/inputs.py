"""Input hygiene shared by the pipelines: clean text, image hashes, id clashes.

Text (:func:`clean_text`): control characters are removed (C0/C1 controls except tab and
newline, e.g. NUL and BEL; Unicode bidirectional controls such as U+202E RIGHT-TO-LEFT
OVERRIDE and U+2066-U+2069), ``\\r\\n`` becomes ``\\n``. Applied to input descriptions and to
every text an LLM writes into a sample.

Image hashes (:class:`ImageHasher`): the SHA-256 of an image's bytes, read through
:func:`giqa.images.read_image_bytes` (confined to the root, regular files only). With a cache
file (the runners keep ``image_hashes.tsv`` in the output directory), an image whose size,
modification time and inode are unchanged is not read again, so resuming 160K items costs
160K ``stat`` calls, not 160K file reads.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from giqa.pipeline.records import Record

__all__ = ["clean_text", "canonical", "ImageHasher", "item_repr", "mark_id_clashes", "progress_bar", "read_input_rows"]

R = TypeVar("R", bound=Record)

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """``text`` without control and bidirectional-override characters (see the module docstring)."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def progress_bar(total: int, enabled: bool, desc: str, unit: str = "rec") -> Any:
    """A tqdm bar on stderr, or None (disabled, or tqdm missing)."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm ships with giqa[models]; runs work without it
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


class ImageHasher:
    """SHA-256 of image files under ``root``, cached by ``(size, mtime_ns, inode)`` in
    ``cache_path`` (a TSV file: ``sha256, size, mtime_ns, inode, resolved path``; appended to,
    last line per path wins). Errors are :class:`giqa.errors.ImageError` naming the path."""

    def __init__(self, root: Optional[str], cache_path: Optional[Path] = None) -> None:
        self.root = root
        self.cache_path = cache_path
        self._cache: dict[str, tuple[str, int, int, int]] = {}
        self._new: list[str] = []
        self.hashed = 0  # files read in this process (cache misses)
        if cache_path is not None and cache_path.exists():
            with open(cache_path, encoding="utf-8") as fh:
                for line in fh:
                    parts = line.rstrip("\n").split("\t", 4)
                    if len(parts) == 5 and line.endswith("\n"):
                        sha, size, mtime, ino, path = parts
                        self._cache[path] = (sha, int(size), int(mtime), int(ino))

    def digest(self, path: str) -> str:
        from giqa.images import read_image_bytes, regular_file_stat, resolve_image_path

        full = resolve_image_path(self.root, path)
        st = regular_file_stat(full, path)
        got = self._cache.get(str(full))
        if got is not None and got[1:] == (st.st_size, st.st_mtime_ns, st.st_ino):
            return got[0]
        sha = hashlib.sha256(read_image_bytes(self.root, path, resolved=full)).hexdigest()
        self.hashed += 1
        self._cache[str(full)] = (sha, st.st_size, st.st_mtime_ns, st.st_ino)
        if self.cache_path is not None:
            self._new.append(f"{sha}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ino}\t{full}\n")
            if len(self._new) >= 1024:
                self.flush()
        return sha

    def flush(self) -> None:
        """Append the new cache lines to ``cache_path``."""
        if self.cache_path is not None and self._new:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.cache_path, "a", encoding="utf-8") as fh:
                fh.write("".join(self._new))
            self._new.clear()


def mark_id_clashes(records: list[R], known: Optional[Callable[[str], Optional[str]]] = None) -> list[R]:
    """Mark every record whose ``id`` is shared with different content (another ``key``) as an
    input error (``DuplicateIdError``); ``known(id)`` gives the key already done for an id in
    the output directory, if any. Records with the same key (content duplicates) are left to
    the runner, which runs one and reports the others by id."""
    first_key: dict[str, str] = {}
    clashing: set[str] = set()
    for r in records:
        if r.error is None and first_key.setdefault(r.id, r.key) != r.key:
            clashing.add(r.id)
    done_elsewhere: set[str] = set()
    if known is not None:
        for rid, key in first_key.items():
            done = known(rid)
            if done is not None and done != key:
                done_elsewhere.add(rid)
    if not clashing and not done_elsewhere:
        return list(records)
    out = []
    for r in records:
        if r.error is None and r.id in clashing:
            r = r.failed("input", f"id {r.id!r} is used by other inputs with different content; ids must be unique",
                         "DuplicateIdError")
        elif r.error is None and r.id in done_elsewhere and known is not None and known(r.id) != r.key:
            r = r.failed("input", f"id {r.id!r} already has a sample in this output directory, made from "
                                  "different content; give the changed input a new id or use a new output directory",
                         "DuplicateIdError")
        out.append(r)
    return out


def canonical(value: Any) -> str:
    """Canonical JSON of a JSON-like value (what keys hash)."""
    import json

    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def item_repr(item: Any, limit: int = 1000) -> str:
    """A short, stable description of a bad input item for ``errors.jsonl``."""
    text = canonical(item) if isinstance(item, (dict, list)) else repr(item)
    return text[:limit]


def read_input_rows(path: "str | Path") -> list[Any]:
    """Input rows of a JSONL / JSON / Parquet file, or of every such file in a directory (sorted).

    JSONL follows :func:`giqa.data.io.iter_jsonl` with ``on_bad="item"``: an unreadable line
    becomes a :class:`giqa.data.io.BadLine` in its place (an input error record, not lost). A
    ``.json`` file holds one list (streamed); a giqa run directory gives its samples.
    """
    from giqa.data.io import is_run_dir, iter_jsonl, iter_run_samples
    from giqa.data.jsonstream import iter_json_records
    from giqa.errors import ConfigError, require

    p = Path(path)
    if is_run_dir(p):
        return list(iter_run_samples(p))
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in (".jsonl", ".json", ".parquet") and f.is_file())
        if not files:
            raise ConfigError(f"no .jsonl, .json or .parquet file in {p}")
        return [row for f in files for row in read_input_rows(f)]
    if not p.is_file():
        raise ConfigError(f"input file not found: {str(p)!r}")
    if p.suffix == ".parquet":
        pq = require("pyarrow.parquet", "scale")
        return list(pq.read_table(str(p)).to_pylist())
    if p.suffix == ".json":
        return [row for _, row in iter_json_records(p)]
    return list(iter_jsonl(p, on_bad="item"))
