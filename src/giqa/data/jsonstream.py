"""Streaming reader for big JSON list files and JSON Lines, without a full ``json.load``.

The published source files are single JSON lists (Q-Instruct's ``cleaned_labels.json`` is
76.5 MB; DepictQA's metas are ``json.dumps(metas, indent=4)``). :func:`iter_json_records`
yields their elements one at a time with bounded memory: it reads fixed-size chunks, decodes
one element with :meth:`json.JSONDecoder.raw_decode`, and grows the read size geometrically
when an element spans chunks, so the total work stays linear in the file size.

Accepted layouts (detected from the first non-blank character):

* ``[`` - one JSON array (the published format);
* anything else - JSON Lines, one value per line (what ``giqa`` writes for its own shards).
"""

from __future__ import annotations

import json
import os
from typing import IO, Any, Iterator, Union

from giqa.errors import ParseError

__all__ = ["iter_json_records", "JsonSyntaxError"]

PathLike = Union[str, "os.PathLike[str]"]

_WS = " \t\n\r"
_DELIMS = _WS + ",]}"
_DECODER = json.JSONDecoder()


class JsonSyntaxError(ParseError):
    """The file is not valid JSON at ``offset`` (character offset) / ``line`` (1-based)."""

    def __init__(self, message: str, *, path: str, index: int, offset: int, line: int) -> None:
        super().__init__(message)
        self.path, self.index, self.offset, self.line = path, index, offset, line


class _Buffer:
    """A sliding text window over a file; ``base`` is the file offset of ``text[0]``."""

    def __init__(self, fh: IO[str], chunk_size: int) -> None:
        self.fh = fh
        self.chunk_size = chunk_size
        self.text = ""
        self.base = 0
        self.lines_before = 0  # newlines in the discarded prefix
        self.eof = False

    def fill(self, want: int) -> bool:
        """Read about ``want`` more characters; False once the file is exhausted."""
        if self.eof:
            return False
        more = self.fh.read(max(want, self.chunk_size))
        if not more:
            self.eof = True
            return False
        self.text += more
        return True

    def compact(self, pos: int) -> int:
        """Drop ``text[:pos]`` when it is large; returns the new position of ``pos``."""
        if pos > self.chunk_size and pos > len(self.text) // 2:
            self.lines_before += self.text.count("\n", 0, pos)
            self.base += pos
            self.text = self.text[pos:]
            return 0
        return pos

    def skip_ws(self, pos: int) -> int:
        while True:
            n = len(self.text)
            while pos < n and self.text[pos] in _WS:
                pos += 1
            if pos < n or not self.fill(self.chunk_size):
                return pos

    def line_of(self, pos: int) -> int:
        return self.lines_before + self.text.count("\n", 0, pos) + 1


def iter_json_records(
    path: PathLike, *, chunk_size: int = 1 << 20, lenient_lines: bool = False
) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, value)`` for each element of a JSON list file or JSON Lines file.

    Parameters
    ----------
    path:
        A ``.json`` file holding one list, or a JSON Lines file (one value per line).
    chunk_size:
        Characters read at a time (memory use is about the largest record plus this).
    lenient_lines:
        JSON Lines only: a line that is not valid JSON is yielded as
        ``(index, JsonSyntaxError)`` and reading goes on at the next line. In a JSON list
        a syntax error always ends the file (there is no safe place to resume).

    Raises
    ------
    JsonSyntaxError (a :class:`giqa.errors.ParseError`)
        Invalid JSON; the message names the file, the element index, line and offset.
    """
    path_s = os.fspath(path)
    with open(path_s, encoding="utf-8-sig") as fh:
        buf = _Buffer(fh, chunk_size)
        pos = buf.skip_ws(0)
        if pos >= len(buf.text):
            return  # empty file: no records
        if buf.text[pos] == "[":
            yield from _iter_array(buf, pos + 1, path_s)
            return
    yield from _iter_lines(path_s, lenient_lines)


def _error(buf: _Buffer, path: str, index: int, pos: int, what: str) -> JsonSyntaxError:
    line = buf.line_of(pos)
    offset = buf.base + pos
    return JsonSyntaxError(
        f"{path}: record {index}: {what} (line {line}, offset {offset})",
        path=path,
        index=index,
        offset=offset,
        line=line,
    )


def _decode_at(buf: _Buffer, pos: int, path: str, index: int) -> tuple[Any, int]:
    """Decode one value starting at ``pos``, reading more of the file as needed."""
    want = buf.chunk_size
    while True:
        try:
            value, end = _DECODER.raw_decode(buf.text, pos)
        except json.JSONDecodeError as exc:
            if buf.fill(want):
                want *= 2  # geometric growth keeps re-decoding linear overall
                continue
            raise _error(buf, path, index, exc.pos, exc.msg) from None
        # A number or literal cut by the buffer end ("[1" of "[12]", "0." of "0.5") may go on in
        # the file: it is complete only when a delimiter follows it.
        if (not isinstance(value, (dict, list, str))
                and (end == len(buf.text) or buf.text[end] not in _DELIMS) and buf.fill(want)):
            want *= 2
            continue
        return value, end


def _iter_array(buf: _Buffer, pos: int, path: str) -> Iterator[tuple[int, Any]]:
    index = 0
    pos = buf.skip_ws(pos)
    if pos < len(buf.text) and buf.text[pos] == "]":
        pos += 1
    else:
        while True:
            pos = buf.skip_ws(pos)
            if pos >= len(buf.text):
                raise _error(buf, path, index, pos, "file ends inside the JSON list (truncated?)")
            value, pos = _decode_at(buf, pos, path, index)
            yield index, value
            index += 1
            pos = buf.compact(buf.skip_ws(pos))
            if pos >= len(buf.text):
                raise _error(buf, path, index, pos, "file ends inside the JSON list (truncated?)")
            sep = buf.text[pos]
            pos += 1
            if sep == "]":
                break
            if sep != ",":
                raise _error(buf, path, index, pos - 1, f"expected ',' or ']' after a record, got {sep!r}")
    pos = buf.skip_ws(pos)
    if pos < len(buf.text):
        raise _error(buf, path, index, pos, "extra data after the closing ']'")


def _iter_lines(path: str, lenient: bool) -> Iterator[tuple[int, Any]]:
    """JSON Lines through :func:`giqa.data.io.iter_jsonl` (lines are independent, so errors resync)."""
    from giqa.data.io import BadLine, iter_jsonl

    for index, value in enumerate(iter_jsonl(path, on_bad="item", objects=False)):
        if isinstance(value, BadLine):
            err = JsonSyntaxError(f"{path}: record {index}: {value.message} (line {value.line})",
                                  path=path, index=index, offset=value.offset, line=value.line)
            if not lenient:
                raise err
            value = err
        yield index, value
