"""PTB tokeniser: agreement of giqa's port with the Java PTBTokenizer pycocoevalcap runs, and speed.

Run: ``.venv/bin/python benchmarks/bench_ptb.py`` (``--per-slice 1600 --seeds 0 1 2``). Needs
``java`` and pycocoevalcap's jar for the agreement part. Prints Markdown tables:

1. On the differential corpus (``tests/ptb/corpus.py``, 13 slices of model-style text, 20,800
   sentences per seed): sentences whose tokens differ, the agreement rate, and per slice the
   corpus BLEU-4 computed on Java tokens and on port tokens (pairs of sentences as
   hypothesis / reference) and their difference; the maximum difference over slices.
2. Speed on the same corpus and on the descriptions of the 100,000-item scoring benchmark
   (``bench_scoring.make_bench``): the port (cold chunk cache) against one JVM run.

It is also a pytest-benchmark suite (``make bench``, ``benchmarks/conftest.py``): group ``PTB
differential corpus`` tokenises 200 sentences per slice (2,600, seed 0) with the port from a
cold chunk cache and with the Java PTBTokenizer pycocoevalcap runs (one JVM a round; skipped
without ``java``); the agreement rate and the maximum per-slice BLEU-4 difference are in the
Java benchmark's ``extra_info``. Rounds are bounded (``--bench-rounds``).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests" / "ptb"))
sys.path.insert(0, str(HERE))

from corpus import SLICES, make_corpus, pairs  # noqa: E402

from giqa.bench import _ptb_lexer  # noqa: E402
from giqa.bench.bleu import coco_bleu_tokens  # noqa: E402
from giqa.bench.ptb import ptb_tokenize_batch  # noqa: E402
from giqa.bench.ptb_java import JavaPtbTokenizer, java_available  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def agreement(per_slice: int, seeds: list[int]) -> None:
    print("### Port vs Java PTBTokenizer on the differential corpus\n")
    print("| seed | sentences | differ | agreement | max abs BLEU-4 diff over slices | port s | Java s (one JVM) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    worst: dict[str, float] = {s: 0.0 for s in SLICES}
    bleus: dict[str, tuple[float, float]] = {}
    for seed in seeds:
        corpus = make_corpus(per_slice, seed)
        texts = [t for _, t in corpus]
        _ptb_lexer._caches.clear()
        t_port, port = timed(lambda: ptb_tokenize_batch(texts))
        t_java, java = timed(lambda: JavaPtbTokenizer().tokenize_batch(texts))
        differ = sum(p != j for p, j in zip(port, java))
        by_java, by_port = pairs(corpus, java), pairs(corpus, port)
        for name in SLICES:
            a = coco_bleu_tokens(*by_java[name]).score
            b = coco_bleu_tokens(*by_port[name]).score
            worst[name] = max(worst[name], abs(a - b))
            if seed == seeds[0]:
                bleus[name] = (a, b)
        print(f"| {seed} | {len(texts):,} | {differ} | {1 - differ / len(texts):.5f} | "
              f"{max(worst.values()):.2e} | {t_port:.2f} | {t_java:.2f} |")
    print(f"\nPer slice (seed {seeds[0]}; corpus BLEU-4 of {per_slice // 2} hypothesis/reference pairs, 0..1):\n")
    print("| slice | BLEU-4 on Java tokens | BLEU-4 on port tokens | max abs diff over seeds |")
    print("|---|---:|---:|---:|")
    for name in SLICES:
        a, b = bleus[name]
        print(f"| {name} | {a:.6f} | {b:.6f} | {worst[name]:.2e} |")
    print(f"\n**Maximum BLEU-4 difference over all slices and seeds: {max(worst.values()):.2e}**\n")


def speed() -> None:
    import bench_scoring

    from giqa.bench.scoring import parse_prediction

    gt, preds = bench_scoring.make_bench(100_000)
    des = [(parse_prediction(p["answer"]).text, parse_prediction(s.answer).text)
           for p, s in zip(preds, gt) if s.task.value == "des"]
    batches = [[r for _, r in des], [h for h, _ in des]]
    n = sum(map(len, batches))
    _ptb_lexer._caches.clear()
    t_cold, port = timed(lambda: [ptb_tokenize_batch(b) for b in batches])
    t_warm, _ = timed(lambda: [ptb_tokenize_batch(b) for b in batches])
    print(f"### Tokenising the {n:,} texts (references and predictions) of the 100,000-item bench\n")
    print("| tokeniser | seconds | texts/s |\n|---|---:|---:|")
    print(f"| giqa port, cold chunk cache (includes compiling the rules) | {t_cold:.2f} | {n / t_cold:,.0f} |")
    print(f"| giqa port, warm chunk cache | {t_warm:.2f} | {n / t_warm:,.0f} |")
    if java_available():
        t_java, java = timed(lambda: JavaPtbTokenizer().tokenize_batches(batches))
        same = sum(a == b for pa, ja in zip(port, java) for a, b in zip(pa, ja))
        print(f"| Java PTBTokenizer, one JVM, two input files | {t_java:.2f} | {n / t_java:,.0f} |")
        print(f"\n(identical tokens on {same:,} of {n:,} texts)")
    print()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-slice", type=int, default=1600)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n")
    if java_available():
        agreement(args.per_slice, args.seeds)
    else:
        print("java or pycocoevalcap's jar is missing: no agreement figures\n")
    speed()
    print(f"(load average at the end: {os.getloadavg()[0]:.1f})")


# -- pytest-benchmark suite -----------------------------------------------------------------------
SUITE_PER_SLICE = 200
CORPUS = f"PTB differential corpus, {SUITE_PER_SLICE} sentences per slice"


@functools.cache
def suite_corpus() -> list[tuple[str, str]]:
    return make_corpus(SUITE_PER_SLICE, 0)


def test_ptb_giqa_port(measure):
    texts = [t for _, t in suite_corpus()]

    def cold():  # each round from a cold chunk cache
        _ptb_lexer._caches.clear()
        return (texts,), {}

    measure(CORPUS, ptb_tokenize_batch, rounds=3, warmup=0, setup=cold)
    measure.info(sentences=f"{len(texts):,}", sentences_per_s=f"{len(texts) / measure.seconds:,.0f}", cache="cold")


def test_ptb_java(measure):
    import pytest

    if not java_available():
        pytest.skip("java or pycocoevalcap's jar is missing")
    corpus = suite_corpus()
    texts = [t for _, t in corpus]
    java = measure(CORPUS, lambda: JavaPtbTokenizer().tokenize_batch(texts), rounds=2, warmup=0)
    port = ptb_tokenize_batch(texts)
    differ = sum(p != j for p, j in zip(port, java))
    by_java, by_port = pairs(corpus, java), pairs(corpus, port)
    max_diff = max(abs(coco_bleu_tokens(*by_java[n]).score - coco_bleu_tokens(*by_port[n]).score) for n in SLICES)
    measure.info(sentences=f"{len(texts):,}", sentences_per_s=f"{len(texts) / measure.seconds:,.0f}",
                 agreement=f"{1 - differ / len(texts):.5f}", differ=differ, max_bleu4_diff=f"{max_diff:.2e}")


if __name__ == "__main__":
    main()
