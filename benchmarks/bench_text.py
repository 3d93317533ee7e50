"""Grounded-text parsing speed: giqa's linear scanners against regex peers (pytest-benchmark).

Run: ``.venv/bin/python -m pytest benchmarks/bench_text.py`` (about two minutes on 2 cores).
One benchmark group per input: throughput on normal model output, and time on adversarial
input where a backtracking or quadratic regex parser degrades. Peers:

* ``regex (canonical)``: the obvious strict pattern for ``[phrase](<a, b>, ...)``, doing the
  same work as giqa (clean text, spans, ``GridCodec`` decoding, ``Box`` objects); linear, but
  it reads canonical text only;
* ``regex (lenient)``: a pattern written to tolerate spacing and missing ``<``/``>``/``,``,
  the kind a quick fix produces: it backtracks exponentially on comma-separated digit runs;
* transformers' Kosmos-2 ``clean_text_and_extract_entities_with_bboxes`` and Florence-2
  ``parse_phrase_grounding_from_text_and_spans`` (both regex based).

Peers that take seconds on a trap run one round; giqa runs several. MB/s in ``extra_info``.
Results recorded in ``benchmarks/results/text.md``.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from types import SimpleNamespace

from giqa.text import parse_grounded
from giqa.text.formats import get_format

CANONICAL = re.compile(r"\[([^\[\]\n]+)\]\((<\d+, \d+>(?:, <\d+, \d+>)*)\)")
LENIENT = re.compile(r"\[([^\]]*)\]\s*\(\s*((?:<?\s*\d+\s*,\s*\d+\s*>?\s*,?\s*)+)\)")


def regex_parser(pattern):
    """A regex parser doing giqa's work: clean text, spans, decoded ``Box`` objects."""
    from giqa.geometry import GridCodec
    from giqa.types import Box

    codec = GridCodec(20, 20)

    def parse(text: str):
        parts, spans, pos, length = [], [], 0, 0
        for mt in pattern.finditer(text):
            parts.append(text[pos:mt.start()])
            length += mt.start() - pos
            phrase = mt.group(1)
            vals = [int(v) for v in re.findall(r"\d+", mt.group(2))]
            boxes = []
            for a, b in zip(vals[::2], vals[1::2]):
                x1, y1, x2, y2 = codec.decode_pair(a, b)
                boxes.append(Box.model_construct(x1=x1, y1=y1, x2=x2, y2=y2))
            spans.append((phrase, length, length + len(phrase), boxes))
            parts.append(phrase)
            length += len(phrase)
            pos = mt.end()
        parts.append(text[pos:])
        return "".join(parts), spans

    return parse


def _timed(measure, group: str, fn, text: str, rounds: int) -> None:
    measure(group, lambda: fn(text), rounds=rounds, warmup=1 if rounds > 1 else 0)
    measure.info(input=f"{len(text) / 1e3:,.1f} KB", rate=f"{len(text) / 1e6 / measure.seconds:.3g} MB/s")


# -- DES text -------------------------------------------------------------------------------------
@cache
def normal_text() -> str:
    sentence = ("The texture of the [tower](<35, 319>) is clear, the [stones](<240, 399>) are sharp, "
                "and the [water surface](<160, 299>, <200, 399>) shows slight noise. ")
    text = (sentence * (1_000_000 // len(sentence) + 1))[:1_000_000]
    return text[: text.rfind(". ") + 1]


NORMAL = "normal DES text, 1 MB"


def test_normal_giqa(measure):
    _timed(measure, NORMAL, parse_grounded, normal_text(), rounds=3)


def test_normal_regex_canonical(measure):
    _timed(measure, NORMAL, regex_parser(CANONICAL), normal_text(), rounds=3)


def unclosed(items: int) -> str:
    """An unclosed group of comma-separated numbers: the lenient regex backtracks exponentially
    in the number of items; giqa reads it once."""
    return "[a](" + "11, " * items + "x"


def test_unclosed_giqa(measure, items):
    _timed(measure, f"unclosed '[a](11, 11, ...' x{items}", parse_grounded, unclosed(items), rounds=5)


def test_unclosed_regex_lenient(measure, items):
    _timed(measure, f"unclosed '[a](11, 11, ...' x{items}", regex_parser(LENIENT), unclosed(items), rounds=1)


def test_unclosed_at_1mb_giqa(measure):
    """The same pattern at 1 MB (the lenient regex is not run: exponential)."""
    _timed(measure, "unclosed '[a](11, 11, ...' at 1 MB (giqa only)", parse_grounded,
           ("[a](" + "11, " * 250_000)[:1_000_000], rounds=1)


REPEATS = {"[a](<": "'[a](<' repeated", "<": "'<' repeated", "](": "'](' repeated"}


def test_repeated_giqa(measure, repeated):
    text = repeated * (1_000_000 // len(repeated))
    _timed(measure, f"1 MB of {REPEATS[repeated]}", parse_grounded, text, rounds=1)


def test_repeated_regex_canonical(measure, repeated):
    text = repeated * (1_000_000 // len(repeated))
    _timed(measure, f"1 MB of {REPEATS[repeated]}", regex_parser(CANONICAL), text, rounds=1)


# -- Kosmos-2 and Florence-2 output ---------------------------------------------------------------
def kosmos_reference():
    from transformers.models.kosmos2 import processing_kosmos2 as kos

    return kos.clean_text_and_extract_entities_with_bboxes


def kosmos_text() -> str:
    piece = (" An image of<phrase> a snowman</phrase><object><patch_index_0044><patch_index_0863></object> warming "
             "himself by<phrase> a fire</phrase><object><patch_index_0005><patch_index_0911></object>.")
    # 50 KB: the reference re-strips the whole prefix for every entity (quadratic)
    return "<grounding>" + piece * (50_000 // len(piece))


def test_kosmos2_normal_giqa(measure):
    _timed(measure, "kosmos2, normal output, 50 KB", get_format("kosmos2").parse, kosmos_text(), rounds=3)


def test_kosmos2_normal_transformers(measure):
    _timed(measure, "kosmos2, normal output, 50 KB", kosmos_reference(), kosmos_text(), rounds=3)


def test_kosmos2_unclosed_giqa(measure, lt_count):
    # no '>': re.sub("<.*?>") rescans to the end of the line from every '<'
    _timed(measure, f"kosmos2, '<' x{lt_count} (no '>')", get_format("kosmos2").parse, "<" * lt_count, rounds=3)


def test_kosmos2_unclosed_transformers(measure, lt_count):
    _timed(measure, f"kosmos2, '<' x{lt_count} (no '>')", kosmos_reference(), "<" * lt_count, rounds=1)


def florence_reference():
    from transformers.models.florence2 import processing_florence2 as flo

    post = flo.Florence2PostProcessor({}, SimpleNamespace(all_special_tokens=[]))
    return lambda s: post.parse_phrase_grounding_from_text_and_spans(s, image_size=(1000, 1000))


def florence_text() -> str:
    piece = "A green car<loc_54><loc_375><loc_906><loc_707>a yellow building<loc_0><loc_0><loc_999><loc_345>"
    return piece * (200_000 // len(piece))


def test_florence2_normal_giqa(measure):
    _timed(measure, "florence2, normal output, 200 KB", get_format("florence2").parse, florence_text(), rounds=3)


def test_florence2_normal_transformers(measure):
    _timed(measure, "florence2, normal output, 200 KB", florence_reference(), florence_text(), rounds=3)


def test_florence2_trap_giqa(measure, a_count):
    # '[^<]+' restarts at every position before failing
    _timed(measure, f"florence2, {a_count} chars + one '<loc_1>'", get_format("florence2").parse,
           "a" * a_count + "<loc_1>", rounds=3)


def test_florence2_trap_transformers(measure, a_count):
    _timed(measure, f"florence2, {a_count} chars + one '<loc_1>'", florence_reference(), "a" * a_count + "<loc_1>",
           rounds=1)


def pytest_generate_tests(metafunc):
    params = {"items": [16, 20, 22], "repeated": list(REPEATS), "lt_count": [10_000, 20_000, 40_000],
              "a_count": [5_000, 10_000, 20_000]}
    for name, values in params.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, values)


if __name__ == "__main__":
    import pytest

    sys.exit(pytest.main([__file__, "-p", "no:cacheprovider", *sys.argv[1:]]))
