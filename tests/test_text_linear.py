"""Parsers stay linear on adversarial input, and ``import giqa.text`` stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

from giqa.text import parse_grounded, strip_coordinates
from giqa.text.formats import available_formats, get_format

# Each pattern is repeated to the wanted size; all are known regex-backtracking traps or
# scanner edge cases (unclosed brackets, open groups, long digit runs, tag prefixes).
PATTERNS = {
    "brackets": "[",
    "open_groups": "[a](<",
    "open_groups_spaced": "[a] ( < 1 , ",
    "angles": "<",
    "angle_digits": "< 1 ",
    "close_open": "](",
    "digits": "1",
    "kosmos_unclosed": "<phrase>a</phrase><object><patch_index_0001>",
    "qwen_unclosed": "<ref>",
    "florence_partial": "<loc_1>",
    "paligemma_partial": "<loc0001>",
    "shikra_partial": "[0.1,0.2",
    "lt_newline": "<\n",
}


def build(pattern: str, size: int) -> str:
    return (pattern * (size // len(pattern) + 1))[:size]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", available_formats())
def test_adversarial_input_finishes(name):
    """400 KB of every adversarial pattern parses well inside the timeout.

    No timing is asserted (benchmarks/bench_text.py measures speed): a linear scan of 400 KB
    takes well under a second, a quadratic one (1.6e11 character steps) would take hours, so the
    timeout alone tells the complexity classes apart without flaking on a busy machine.
    """
    parse = get_format(name).parse
    for pattern in PATTERNS.values():
        text = build(pattern, 400_000)
        assert len(parse(text).text) <= len(text)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pattern", ["[a](<", "<", "](", "[a] ( < 1 , "])
def test_giqa_one_megabyte_adversarial_finishes(pattern):
    text = build(pattern, 1_000_000)
    assert len(parse_grounded(text).text) <= len(text)


@pytest.mark.timeout(60)
def test_giqa_digit_runs_and_brackets_finish():
    text = "[a](<" + "9" * 1_000_000 + ", 1>)"
    p = parse_grounded(text)
    assert p.text == "a" and p.spans[0].boxes == [] and "out of range" in p.issues[0]
    assert strip_coordinates("[" * 1_000_000) == "[" * 999_999


def test_import_is_light():
    code = (
        "import sys, giqa.text, giqa.text.formats\n"
        "from giqa.text import parse_grounded, format_phrase\n"
        "parse_grounded('[t](<35, 319>)'); format_phrase('t', [(0.1, 0.2, 0.3, 0.4)])\n"
        "heavy = [m for m in ('torch', 'transformers', 'numba') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
