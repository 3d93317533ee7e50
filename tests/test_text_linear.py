"""Parsers stay linear on adversarial input, and ``import giqa.text`` stays light."""

from __future__ import annotations

import subprocess
import sys
import time

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


def best_time(fn, text: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - t)
    return best


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", available_formats())
def test_adversarial_input_scales_linearly(name):
    """400 KB inputs take about 10x as long as 40 KB ones (a quadratic parser: ~100x).

    The bound (40x) is loose on purpose: the machine is shared, so this checks the complexity
    class, not the speed (which benchmarks/bench_text.py measures). Times under 5 ms count as
    5 ms: below that, cache effects of copying the input dominate (a quadratic scan of 400 KB
    would take seconds).
    """
    parse = get_format(name).parse
    worst = 0.0
    for pattern in PATTERNS.values():
        small = best_time(parse, build(pattern, 40_000), 2)
        big = best_time(parse, build(pattern, 400_000), 1)
        worst = max(worst, big / max(small, 5e-3))
    assert worst < 40, f"{name}: 400 KB took {worst:.0f}x the 40 KB time"


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
