"""Grounded-text parsing speed: giqa's linear scanners against regex peers, same process.

Run: ``.venv/bin/python benchmarks/bench_text.py`` (about a minute on 2 cores). Prints a
Markdown table: throughput on normal model output, and time on adversarial input where a
backtracking or quadratic regex parser degrades. Peers:

* ``regex (canonical)``: the obvious strict pattern for ``[phrase](<a, b>, ...)``, doing the
  same work as giqa (clean text, spans, ``GridCodec`` decoding, ``Box`` objects); linear, but
  it reads canonical text only;
* ``regex (lenient)``: a pattern written to tolerate spacing and missing ``<``/``>``/``,``,
  the kind a quick fix produces: it backtracks exponentially on comma-separated digit runs;
* transformers' Kosmos-2 ``clean_text_and_extract_entities_with_bboxes`` and Florence-2
  ``parse_phrase_grounding_from_text_and_spans`` (both regex based).
"""

from __future__ import annotations

import re
import sys
import time
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


def best(fn, text, repeat=3, budget=20.0):
    times = []
    start = time.perf_counter()
    for _ in range(repeat):
        t = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > budget:
            break
    return min(times)


def fmt_time(t: float) -> str:
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def row(case, size, t_giqa, peer, t_peer):
    mbs = size / 1e6 / t_giqa
    return f"| {case} | {size / 1e3:,.0f} KB | {fmt_time(t_giqa)} ({mbs:.1f} MB/s) | {peer} | {fmt_time(t_peer)} | {t_peer / t_giqa:.2f}x |"


def main() -> None:
    rows = []
    sentence = (
        "The texture of the [tower](<35, 319>) is clear, the [stones](<240, 399>) are sharp, "
        "and the [water surface](<160, 299>, <200, 399>) shows slight noise. "
    )
    normal = (sentence * (1_000_000 // len(sentence) + 1))[:1_000_000]
    normal = normal[: normal.rfind(". ") + 1]
    canonical = regex_parser(CANONICAL)
    t_g = best(parse_grounded, normal)
    rows.append(row("giqa, normal DES text", len(normal), t_g, "regex (canonical)", best(canonical, normal)))

    # Adversarial: an unclosed group of comma-separated numbers. The lenient regex backtracks
    # exponentially in the number of items; giqa reads it once.
    for items in (16, 20, 22):
        adv = "[a](" + "11, " * items + "x"
        t_g = best(parse_grounded, adv, repeat=5)
        t_p = best(regex_parser(LENIENT), adv, repeat=1)
        rows.append(row(f"giqa, unclosed '[a](11, 11, ...' x{items}", len(adv), t_g, "regex (lenient)", t_p))
    big = ("[a](" + "11, " * 250_000)[:1_000_000]
    t_g = best(parse_grounded, big, repeat=1)
    rows.append(f"| giqa, same pattern at 1 MB | 1,000 KB | {fmt_time(t_g)} ({1 / t_g:.1f} MB/s) | regex (lenient) | not run (exponential) | - |")
    for name, pat in [("'[a](<' repeated", "[a](<"), ("'<' repeated", "<"), ("'](' repeated", "](")]:
        adv = (pat * (1_000_000 // len(pat)))
        rows.append(row(f"giqa, {name}", len(adv), best(parse_grounded, adv, repeat=1), "regex (canonical)", best(canonical, adv, repeat=1)))

    try:
        from transformers.models.florence2 import processing_florence2 as flo
        from transformers.models.kosmos2 import processing_kosmos2 as kos
    except ImportError:  # pragma: no cover - transformers is in the [models] extra
        kos = flo = None
    if kos is not None:
        k = get_format("kosmos2")
        piece = (
            " An image of<phrase> a snowman</phrase><object><patch_index_0044><patch_index_0863></object> warming "
            "himself by<phrase> a fire</phrase><object><patch_index_0005><patch_index_0911></object>."
        )
        # 50 KB: the reference re-strips the whole prefix for every entity (quadratic).
        text = "<grounding>" + piece * (50_000 // len(piece))
        ref = lambda s: kos.clean_text_and_extract_entities_with_bboxes(s)  # noqa: E731
        rows.append(row("kosmos2, normal output", len(text), best(k.parse, text), "transformers clean_text_and_extract_entities_with_bboxes", best(ref, text)))
        for n in (10_000, 20_000, 40_000):
            adv = "<" * n  # no '>': re.sub("<.*?>") rescans to the end of the line from every '<'
            rows.append(row("kosmos2, '<' repeated (no '>')", n, best(k.parse, adv), "transformers clean_text_and_extract_entities_with_bboxes", best(ref, adv, repeat=1)))
    if flo is not None:
        post = flo.Florence2PostProcessor({}, SimpleNamespace(all_special_tokens=[]))
        f = get_format("florence2")
        piece = "A green car<loc_54><loc_375><loc_906><loc_707>a yellow building<loc_0><loc_0><loc_999><loc_345>"
        text = piece * (200_000 // len(piece))
        ref = lambda s: post.parse_phrase_grounding_from_text_and_spans(s, image_size=(1000, 1000))  # noqa: E731
        rows.append(row("florence2, normal output", len(text), best(f.parse, text), "transformers parse_phrase_grounding", best(ref, text)))
        for n in (5_000, 10_000, 20_000):
            adv = "a" * n + "<loc_1>"  # '[^<]+' restarts at every position before failing
            rows.append(row("florence2, text + one '<loc_1>'", n, best(f.parse, adv), "transformers parse_phrase_grounding", best(ref, adv, repeat=1)))

    print(f"Python {sys.version.split()[0]}; times are the best of up to 3 runs; ratio = peer / giqa.\n")
    print("| case | input | giqa | peer | peer time | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
