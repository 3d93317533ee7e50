"""mypy (standard mode) on src/giqa, and what a downstream script sees: not ``Any``.

The lazy exports of ``giqa.pipeline`` are imported under ``TYPE_CHECKING``, so a type checker
sees the real classes while ``import giqa.pipeline`` stays light at run time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes_and_public_names_are_typed(tmp_path):
    env = {**os.environ, "MYPYPATH": str(ROOT / "src")}
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary",
         str(ROOT / "src" / "giqa"), str(ROOT / "tests" / "typing" / "downstream.py")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=900,
    )
    errors = [line for line in res.stdout.splitlines() if ": error:" in line]
    assert errors == [], "\n".join(errors)
    revealed = dict(re.findall(r"downstream\.py:(\d+): note: Revealed type is \"(.+)\"", res.stdout))
    assert len(revealed) == 6, res.stdout
    for line, type_ in revealed.items():
        assert type_ != "Any" and not type_.startswith("Any"), (line, type_)
    text = "\n".join(revealed.values())
    assert "giqa.pipeline.des.DesPipeline" in text and "giqa.geometry.grid.GridCodec" in text
    assert "giqa.text.parsed.ParsedText" in text and "giqa.pipeline.runner.RunSummary" in text
    assert "list[giqa.types.Sample]" in text and "list[giqa.pipeline.records.DesRecord]" in text
