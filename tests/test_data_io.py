"""giqa.data.io: the numbered JSONL reader and the directory builder shared by several modules."""

from __future__ import annotations

import pytest

from giqa.data.io import BadLine, atomic_directory, iter_jsonl, iter_jsonl_numbered
from giqa.errors import ParseError


def test_numbered_reader_counts_every_line_and_matches_iter_jsonl(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n  \n{"b": 2}\n[3]\n')
    assert list(iter_jsonl_numbered(path, objects=False)) == [(1, {"a": 1}), (4, {"b": 2}), (5, [3])]
    assert list(iter_jsonl(path, objects=False)) == [{"a": 1}, {"b": 2}, [3]]
    with pytest.raises(ParseError, match=r"a\.jsonl: line 5: not a JSON object"):
        list(iter_jsonl_numbered(path))
    items = list(iter_jsonl_numbered(path, on_bad="item"))
    assert [line for line, _ in items] == [1, 4, 5] and isinstance(items[-1][1], BadLine)
    assert list(iter_jsonl_numbered(tmp_path / "missing.jsonl", missing_ok=True)) == []


def test_atomic_directory_publishes_on_success_only(tmp_path):
    out = tmp_path / "sub" / "model"
    with atomic_directory(out) as tmp:
        assert tmp.parent == out.parent and tmp != out and not out.exists()
        (tmp / "w.bin").write_bytes(b"x")
    assert (out / "w.bin").read_bytes() == b"x"
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]  # no temporary left

    other = tmp_path / "other"
    other.mkdir()  # an empty directory is taken
    with pytest.raises(RuntimeError):
        with atomic_directory(other) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("crash mid-build")
    assert list(other.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["other", "sub"]
    with atomic_directory(other) as tmp:
        (tmp / "w.bin").write_bytes(b"y")
    assert (other / "w.bin").read_bytes() == b"y"


def test_atomic_directory_keeps_what_a_concurrent_build_finished_first(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(FileExistsError, match="not empty"):
        with atomic_directory(out) as mine:
            with atomic_directory(out) as theirs:  # another builder, finishing first
                (theirs / "w.bin").write_bytes(b"first")
            assert mine != theirs
            (mine / "w.bin").write_bytes(b"second")
    assert (out / "w.bin").read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
