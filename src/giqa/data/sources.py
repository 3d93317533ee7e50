"""What every source reader shares: the item type, record errors, path checks, the reader base.

A source reader turns a published annotation file into *items*, the input of the DES pipeline::

    {"image": "spaq_koniq/00003.jpg",        # path relative to the image root, POSIX slashes
     "description": "The image is ...",      # the human quality description (stripped)
     "source": "spaq",                       # sub-dataset slug, see SOURCE_NAMES
     "source_id": "00003"}                   # the record's own id in the published file

Strict readers raise :class:`giqa.errors.ParseError` on the first malformed record, naming the
file, the record index and the field. Lenient readers (``strict=False``) skip it, keep a
:class:`RecordError` in ``reader.errors`` and go on: nothing is silently lost.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypedDict, Union

from giqa.errors import ParseError

__all__ = [
    "SOURCE_NAMES",
    "SourceItem",
    "RecordError",
    "RecordParseError",
    "ReaderStats",
    "SourceReader",
    "normalize_image_path",
    "count_words",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Sub-dataset slug -> display name (the paper's Sec. 3.3 sources).
SOURCE_NAMES: dict[str, str] = {
    "koniq": "KonIQ-10k",
    "spaq": "SPAQ",
    "livefb": "LIVE-FB",
    "liveitw": "LIVE-itw",
    "agiqa3k": "AGIQA-3K",
    "imagerewarddb": "ImageRewardDB",
    "kadis700k": "KADIS-700K",
    "unknown": "unknown",
}


class SourceItem(TypedDict):
    image: str
    description: str
    source: str
    source_id: str


@dataclass(frozen=True)
class RecordError:
    """One malformed record: which file, which element (0-based), which field, why."""

    path: str
    index: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: record {self.index}: field {self.field!r}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "index": self.index, "field": self.field, "message": self.message}


class RecordParseError(ParseError):
    """A :class:`ParseError` carrying the :class:`RecordError` that describes it."""

    def __init__(self, error: RecordError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class ReaderStats:
    """Counts after (or during) a read: every record lands in exactly one bucket."""

    records: int = 0  # elements seen in the file
    items: int = 0  # yielded
    skipped: int = 0  # well-formed but not a quality description (e.g. a VQA record)
    errors: int = 0  # malformed (lenient mode only; strict mode raises)
    by_source: dict[str, int] = field(default_factory=dict)
    skipped_by: dict[str, int] = field(default_factory=dict)  # why, e.g. "full_reference"
    selected_by: dict[str, int] = field(default_factory=dict)  # which rule kept an item
    unknown_types: dict[str, int] = field(default_factory=dict)  # task-type values no rule names

    def count(self, bucket: dict[str, int], key: str) -> None:
        bucket[key] = bucket.get(key, 0) + 1


def count_words(text: str) -> int:
    return len(text.split())


def normalize_image_path(value: str, *, root: Optional[Path] = None) -> str:
    """Check and normalise a dataset-relative image path; raise ``ValueError`` when unsafe.

    Accepts POSIX or Windows separators; rejects absolute paths, drive letters, NUL bytes and
    paths that leave the root (``..``). With ``root`` also resolves symlinks and checks that
    the resolved file stays inside ``root``. Returns the normalised POSIX relative path.
    """
    if "\x00" in value:
        raise ValueError("image path contains a NUL byte")
    p = value.strip().replace("\\", "/")
    if not p:
        raise ValueError("image path is empty")
    if p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        raise ValueError(f"image path {value!r} is absolute; it must be relative to the image root")
    norm = posixpath.normpath(p)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise ValueError(f"image path {value!r} leaves the image root")
    if root is not None:
        root_r = root.resolve()
        full = (root_r / norm).resolve()
        if root_r != full and root_r not in full.parents:
            raise ValueError(f"image path {value!r} resolves outside the image root {str(root)!r}")
    return norm


class SourceReader:
    """Base of the source readers: iterate to get items; see ``errors`` and ``stats`` after.

    Subclasses implement :meth:`_parse` (one raw record -> item, a short reason string to skip
    it, counted in ``stats.skipped_by``, or raise :class:`_FieldError`). The base handles JSON
    streaming, strict/lenient mode, ``limit`` and the optional image checks.

    Parameters
    ----------
    paths:
        One file or several (read in the given order; indices restart at 0 per file).
    image_root:
        Directory the image paths are relative to. When given, paths are also checked not to
        escape it through symlinks, and ``check_images=True`` checks that each file exists.
    strict:
        True (default): the first malformed record raises :class:`RecordParseError`.
        False: malformed records are skipped and collected in :attr:`errors`.
    limit:
        Stop after this many items (for small slices).
    check_images:
        Check that each selected record's image exists under ``image_root`` (a stat call each).
    min_words:
        The shortest answer (in words) that counts as a quality description, where the record's
        own fields do not decide (Q-Pathway's fallback rule; DQ-495K's brief answers).
    source_of:
        Replaces the sub-dataset inference (``image path -> slug``), e.g. for re-organised images.
    image_prefix:
        A relative folder put in front of every item's image path, so that several sources
        can share one DES root (``DesConfig(root="data")`` with ``image_prefix="q-instruct"``).
        Source inference and ``check_images`` use the path without the prefix.
    """

    name = "source"

    def __init__(
        self,
        paths: Union[PathLike, list[PathLike], tuple[PathLike, ...]],
        *,
        image_root: Optional[PathLike] = None,
        strict: bool = True,
        limit: Optional[int] = None,
        check_images: bool = False,
        min_words: int = 20,
        source_of: Optional[Callable[[str], str]] = None,
        image_prefix: Optional[str] = None,
    ) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [Path(os.fspath(p)) for p in paths]
        if not self.paths:
            raise ValueError("no source file given")
        self.image_root = Path(os.fspath(image_root)) if image_root is not None else None
        if check_images and self.image_root is None:
            raise ValueError("check_images=True needs image_root")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if min_words < 1:
            raise ValueError(f"min_words must be >= 1, got {min_words}")
        self.strict = strict
        self.limit = limit
        self.check_images = check_images
        self.min_words = min_words
        self._source_of = source_of
        self.image_prefix = normalize_image_path(image_prefix) if image_prefix else None
        self.errors: list[RecordError] = []
        self.stats = ReaderStats()

    # -- subclass hook -------------------------------------------------------------------
    def _parse(self, record: Any) -> Union[SourceItem, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared helpers for subclasses ----------------------------------------------------
    def _image(self, value: Any, field_name: str) -> str:
        if not isinstance(value, str):
            raise _FieldError(field_name, f"expected a path string, got {_type(value)}")
        try:
            rel = normalize_image_path(value, root=self.image_root)
        except ValueError as exc:
            raise _FieldError(field_name, str(exc)) from None
        return rel

    def _source_id(self, rec: dict[str, Any], image: str) -> str:
        """The record's ``id`` (string or integer), else the image's file stem."""
        rid = rec.get("id")
        if rid is not None and not isinstance(rid, (str, int)):
            raise _FieldError("id", f"expected a string or integer, got {_type(rid)}")
        return str(rid) if rid is not None else posixpath.splitext(posixpath.basename(image))[0]

    def _check_exists(self, rel: str, field_name: str) -> None:
        """With ``check_images``: the selected record's image must exist (one stat call)."""
        if self.check_images and not (self.image_root / rel).is_file():  # type: ignore[operator]
            raise _FieldError(field_name, f"image file {rel!r} not found under {str(self.image_root)!r}")

    # -- iteration -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[SourceItem]:
        from giqa.data.jsonstream import JsonSyntaxError, iter_json_records

        for path in self.paths:
            if not path.is_file():
                raise FileNotFoundError(f"{self.name} file not found: {path}")
            try:
                for index, record in iter_json_records(path, lenient_lines=not self.strict):
                    if self.limit is not None and self.stats.items >= self.limit:
                        return
                    self.stats.records += 1
                    if isinstance(record, JsonSyntaxError):  # lenient JSON Lines: a bad line
                        self._fail(RecordError(str(path), index, "<json>", str(record)))
                        continue
                    try:
                        item = self._parse(record)
                    except _FieldError as exc:
                        self._fail(RecordError(str(path), index, exc.field, exc.message))
                        continue
                    if isinstance(item, str):
                        self.stats.skipped += 1
                        self.stats.count(self.stats.skipped_by, item)
                        continue
                    if self.image_prefix:
                        item["image"] = f"{self.image_prefix}/{item['image']}"
                    self.stats.items += 1
                    self.stats.by_source[item["source"]] = self.stats.by_source.get(item["source"], 0) + 1
                    yield item
            except JsonSyntaxError as exc:
                if self.strict:
                    raise
                # A broken JSON list cannot be resynchronised: the rest of this file is lost.
                self._fail(RecordError(str(path), exc.index, "<json>", str(exc)))

    def read(self) -> list[SourceItem]:
        """All items as a list (``errors`` / ``stats`` filled as for iteration)."""
        return list(self)

    def _fail(self, error: RecordError) -> None:
        if self.strict:
            raise RecordParseError(error)
        self.stats.errors += 1
        self.errors.append(error)


class _FieldError(Exception):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def require_dict(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise _FieldError("<record>", f"expected a JSON object, got {_type(record)}")
    return record


def conversation_pair(record: dict[str, Any], field_name: str = "conversations") -> Optional[tuple[str, str]]:
    """``(human, gpt)`` of a single-exchange LLaVA conversation, ``None`` for multi-turn ones.

    Raises :class:`_FieldError` when the field is missing or not a list of
    ``{"from": str, "value": str}`` turns.
    """
    convs = record.get(field_name)
    if not isinstance(convs, list) or not convs:
        raise _FieldError(field_name, f"expected a non-empty list of turns, got {_type(convs)}")
    turns = []
    for i, turn in enumerate(convs):
        if not isinstance(turn, dict):
            raise _FieldError(f"{field_name}[{i}]", f"expected an object, got {_type(turn)}")
        who, value = turn.get("from"), turn.get("value")
        if not isinstance(who, str):
            raise _FieldError(f"{field_name}[{i}].from", f"expected a string, got {_type(who)}")
        if not isinstance(value, str):
            raise _FieldError(f"{field_name}[{i}].value", f"expected a string, got {_type(value)}")
        turns.append((who, value))
    if len(turns) != 2:
        return None
    (who0, human), (who1, gpt) = turns
    if who0 != "human" or who1 != "gpt":
        raise _FieldError(
            field_name, f"expected a human turn then a gpt turn, got {who0!r} then {who1!r}"
        )
    return human, gpt
