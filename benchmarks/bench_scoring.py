"""GIQA-Bench scoring speed: 100,000 predictions without a judge, and BLEU against peers.

Run: ``.venv/bin/python benchmarks/bench_scoring.py`` (``--n 100000``). Prints Markdown tables.

1. ``giqa.bench.score`` on a synthetic bench of ``n`` items in the GIQA-Bench mixture
   (40% DES, 36% Yes/No, 24% What/Why/How) with its defaults: box format detected per answer,
   COCO BLEU@4 (PTB tokenisation by the Java tokeniser when it can run, the port otherwise),
   Acc(Y), mIoU, Tag-Recall (exact names), box precision / recall / F1, breakdowns, provenance
   and 1,000 bootstrap resamples; no judge. The first call of the process is timed cold.
2. Corpus BLEU-4 on the *same tokens*: giqa vs ``nltk.translate.bleu_score.corpus_bleu`` and
   vs pycocoevalcap's ``Bleu`` scorer; tokenisation: giqa's port vs the Java PTBTokenizer
   pycocoevalcap runs (when ``java`` is on PATH).

It is also a pytest-benchmark suite (``make bench``, ``benchmarks/conftest.py``) on a
10,000-item bench (``SUITE_ITEMS``): group ``score`` (``score()`` with its defaults, items/s
and the load in ``extra_info``), group ``corpus BLEU-4`` (giqa, nltk, pycocoevalcap on the
same tokens; each peer's BLEU and its difference from giqa's in ``extra_info``) and group
``PTB tokenisation`` (the port from a cold chunk cache vs pycocoevalcap's Java
``PTBTokenizer``, skipped without ``java``). Rounds are bounded (``--bench-rounds``).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import random
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from giqa.bench import score  # noqa: E402
from giqa.bench.bleu import coco_bleu_tokens  # noqa: E402
from giqa.bench.ptb import ptb_tokenize_batch  # noqa: E402
from giqa.models.callable import CallableEmbedder  # noqa: E402
from giqa.text import format_phrase  # noqa: E402
from giqa.types import Box, Sample  # noqa: E402

SENTENCES = [
    "The overall quality of this image is poor.",
    "The sky is overexposed, and the trees on the left are blurry.",
    "Overall, the image's clarity is good: the man's face is sharp, but the background is out-of-focus.",
    "The photo suffers from heavy JPEG compression; blocky artifacts are visible around the sunset.",
    "It's a low-light shot (taken at night), so there's noticeable noise in the shadows.",
    "Colors are vivid and well-saturated -- the red flowers stand out against the dark-green leaves.",
    "The image is about 50% underexposed; details in the dark areas can't be distinguished.",
    "There's motion blur on the cyclist's legs, while the road remains sharp.",
    "Lighting is uneven: the left side is bright, the right side is dim.",
    "The water surface shows a slight haze, e.g. a loss of contrast.",
]
OBJECTS = ["sky", "tree", "face", "man", "car", "building", "water surface", "flowers", "road", "window", "dog"]
WORDS = "the a image quality is very slightly blurry sharp noisy clear dark bright soft good poor".split()


def _box(rng: random.Random) -> tuple[float, float, float, float]:
    x1, y1 = rng.uniform(0, 0.7), rng.uniform(0, 0.7)
    return (x1, y1, min(1.0, x1 + rng.uniform(0.1, 0.3)), min(1.0, y1 + rng.uniform(0.1, 0.3)))


def _jitter(b, rng):
    x1, y1, x2, y2 = (min(1.0, max(0.0, v + rng.uniform(-0.04, 0.04))) for v in b)
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def _grounded(text: str, objs, boxes) -> str:
    for o, b in zip(objs, boxes):
        text += f" The {format_phrase(o, [Box.from_xyxy(b)])} is {random.choice(WORDS)}."
    return text


def make_bench(n: int, seed: int = 0):
    rng = random.Random(seed)
    random.seed(seed)
    gt, preds = [], []
    n_des, n_y = int(n * 0.4), int(n * 0.36)
    for i in range(n):
        if i < n_des:
            objs = rng.sample(OBJECTS, 3)
            boxes = [_box(rng) for _ in objs]
            ref = " ".join(rng.sample(SENTENCES, 3))
            hyp_words = ref.split()
            for _ in range(4):
                hyp_words[rng.randrange(len(hyp_words))] = rng.choice(WORDS)
            gt.append(Sample(id=f"d{i}", image="x.jpg", task="des", question="Describe.", answer=_grounded(ref, objs, boxes)))
            keep = rng.randint(1, 3)
            pobjs = objs[:keep] if rng.random() < 0.8 else rng.sample(OBJECTS, keep)
            preds.append({"id": f"d{i}", "answer": _grounded(" ".join(hyp_words), pobjs, [_jitter(b, rng) for b in boxes[:keep]])})
        elif i < n_des + n_y:
            a = rng.choice(["Yes.", "No."])
            gt.append(Sample(id=f"y{i}", image="x.jpg", task="vqa", vqa_kind="yes_no", question="Is it blurry?", answer=a))
            preds.append({"id": f"y{i}", "answer": rng.choice(["Yes, it is.", "No.", "Not sure.", a])})
        else:
            o = rng.choice(OBJECTS)
            b = _box(rng)
            gt.append(Sample(id=f"w{i}", image="x.jpg", task="vqa", vqa_kind="what", question="What is blurry?",
                             answer=f"The {format_phrase(o, [Box.from_xyxy(b)])}."))
            preds.append({"id": f"w{i}", "answer": f"The {format_phrase(rng.choice([o, o, 'car']), [Box.from_xyxy(_jitter(b, rng))])}."})
    return gt, preds


def timed(fn, repeat: int = 1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    gt, preds = make_bench(args.n)
    print(f"(built a synthetic bench of {args.n} items in {time.perf_counter() - t0:.1f} s, not timed below; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n")

    def hash_vec(text: str) -> np.ndarray:  # a cheap deterministic "embedder"
        v = np.zeros(16, dtype=np.float32)
        for ch in text:
            v[ord(ch) % 16] += 1
        return v

    def scored(**kw):
        # score() pauses the cyclic GC; the one young-generation pass over the report's objects
        # that follows when it is back on belongs to the cost of scoring, so it is timed too.
        out = score(preds, gt, **kw)
        gc.collect(0)
        return out

    rows = []

    def run(label, **kw):
        if kw.pop("cold_port", False):
            from giqa.bench import _ptb_lexer

            _ptb_lexer._caches.clear()
        c0, p0 = _children_cpu(), time.process_time()
        t, r = timed(lambda: scored(**kw))
        rows.append((label, t, time.process_time() - p0, _children_cpu() - c0, os.getloadavg()[0], r))
        return r

    r = run("score() with its defaults (1,000 bootstrap resamples), first call of the process")
    run("the same again (warm)")
    run("defaults, PTB tokenizer = Python port (cold chunk cache)", tokenizer="python", cold_port=True)
    run("defaults, no bootstrap (n_boot=0)", n_boot=0)
    run("defaults, Tag-Recall with a callable embedder", embedder=CallableEmbedder(hash_vec, model_id="hash"))
    print(f"### Scoring {args.n:,} predictions without a judge (2-core shared CPU)\n")
    print("| what | tokenizer | seconds | items/s | CPU s (this process) | CPU s (JVM) | load |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, t, cpu, child, load, rep in rows:
        tok = "Java" if "java" in (rep.settings["tokenizer"] or "") else "Python port"
        print(f"| {label} | {tok} | {t:.2f} | {args.n / t:,.0f} | {cpu:.2f} | {child:.2f} | {load:.1f} |")
    m = r.metrics
    print(f"\nmetrics: BLEU@4 {m['bleu4']:.2f}, Acc(Y) {m['acc_y']:.4f}, DES mIoU {m['des_miou']:.4f}, "
          f"DES Tag-Recall {m['des_tag_recall']:.4f}, DES box precision {m['des_box_precision']:.4f}, "
          f"VQA mIoU {m['vqa_miou']:.4f}; formats read {r.counts['formats']}\n")

    # BLEU on the same tokens
    from giqa.bench.scoring import parse_prediction

    des = [(p["answer"], s.answer) for p, s in zip(preds, gt) if s.task.value == "des"]
    hyps = ptb_tokenize_batch([parse_prediction(h).text for h, _ in des])
    refs = [[r] for r in ptb_tokenize_batch([parse_prediction(r).text for _, r in des])]
    t_giqa, ours = timed(lambda: coco_bleu_tokens(hyps, refs), 3)
    from nltk.translate.bleu_score import corpus_bleu

    t_nltk, theirs = timed(lambda: corpus_bleu(refs, hyps), 3)
    from pycocoevalcap.bleu.bleu import Bleu

    gts = {i: [" ".join(r[0])] for i, r in enumerate(refs)}
    res = {i: [" ".join(h)] for i, h in enumerate(hyps)}
    t_coco, (coco, _) = timed(lambda: Bleu(4).compute_score(gts, res, verbose=0), 1)
    print(f"### Corpus BLEU-4 on the same tokens ({len(hyps):,} descriptions, {sum(map(len, hyps)):,} tokens)\n")
    print("| implementation | seconds | BLEU-4 | time / giqa |\n|---|---:|---:|---:|")
    print(f"| giqa `coco_bleu_tokens` | {t_giqa:.3f} | {ours.score:.6f} | 1.00 |")
    print(f"| nltk `corpus_bleu` | {t_nltk:.3f} | {theirs:.6f} | {t_nltk / t_giqa:.2f} |")
    print(f"| pycocoevalcap `Bleu(4)` | {t_coco:.3f} | {coco[3]:.6f} | {t_coco / t_giqa:.2f} |")
    print("\n(nltk differs in the last digits: it has no 1e-15/1e-9 smoothing terms.)\n")

    texts = [parse_prediction(h).text for h, _ in des]
    from giqa.bench import _ptb_lexer

    _ptb_lexer._caches.clear()
    t_tok, _ = timed(lambda: ptb_tokenize_batch(texts), 1)
    print(f"### PTB tokenisation of {len(texts):,} descriptions\n")
    print("| implementation | seconds | time / giqa |\n|---|---:|---:|")
    print(f"| giqa port `ptb_tokenize_batch` (pure Python, cold chunk cache) | {t_tok:.2f} | 1.00 |")
    if shutil.which("java"):
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        t_java, _ = timed(lambda: PTBTokenizer().tokenize({i: [{"caption": x}] for i, x in enumerate(texts)}), 1)
        print(f"| pycocoevalcap `PTBTokenizer` (Java subprocess) | {t_java:.2f} | {t_java / t_tok:.2f} |")
    print(f"\n(load average at the end: {os.getloadavg()[0]:.1f})")


# -- pytest-benchmark suite -----------------------------------------------------------------------
SUITE_ITEMS = 10_000
SCORE, BLEU, TOKENS = f"score {SUITE_ITEMS:,} predictions, no judge", "corpus BLEU-4, same tokens", "PTB tokenisation"


@functools.cache
def suite_bench() -> tuple[list, list]:
    return make_bench(SUITE_ITEMS)


@functools.cache
def suite_texts() -> tuple[list[str], list[str]]:
    """``(hypotheses, references)``: the clean text of the suite bench's DES items."""
    from giqa.bench.scoring import parse_prediction

    gt, preds = suite_bench()
    des = [(p["answer"], s.answer) for p, s in zip(preds, gt) if s.task.value == "des"]
    return [parse_prediction(h).text for h, _ in des], [parse_prediction(r).text for _, r in des]


@functools.cache
def suite_tokens() -> tuple[list[list[str]], list[list[list[str]]]]:
    hyps, refs = suite_texts()
    return ptb_tokenize_batch(hyps), [[r] for r in ptb_tokenize_batch(refs)]


def test_score_giqa(measure):
    gt, preds = suite_bench()

    def run():
        out = score(preds, gt)
        gc.collect(0)  # the young-generation pass over the report's objects (see main())
        return out

    rep = measure(SCORE, run, rounds=3)
    assert rep.metrics["bleu4"] is not None and rep.metrics["des_miou"] is not None
    measure.info(items_per_s=f"{SUITE_ITEMS / measure.seconds:,.0f}", tokenizer=rep.settings["tokenizer"],
                 load=f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def test_bleu_giqa(measure):
    hyps, refs = suite_tokens()
    out = measure(BLEU, lambda: coco_bleu_tokens(hyps, refs), rounds=5)
    measure.info(bleu4=f"{out.score:.6f}", tokens=f"{sum(map(len, hyps)):,}")


def test_bleu_nltk(measure):
    from nltk.translate.bleu_score import corpus_bleu

    hyps, refs = suite_tokens()
    theirs = measure(BLEU, lambda: corpus_bleu(refs, hyps), rounds=3)
    measure.info(bleu4=f"{theirs:.6f}", diff_from_giqa=f"{theirs - coco_bleu_tokens(hyps, refs).score:.1e}")


def test_bleu_pycocoevalcap(measure):
    from pycocoevalcap.bleu.bleu import Bleu

    hyps, refs = suite_tokens()
    gts = {i: [" ".join(r[0])] for i, r in enumerate(refs)}
    res = {i: [" ".join(h)] for i, h in enumerate(hyps)}
    coco, _ = measure(BLEU, lambda: Bleu(4).compute_score(gts, res, verbose=0), rounds=2, warmup=0)
    measure.info(bleu4=f"{coco[3]:.6f}", diff_from_giqa=f"{coco[3] - coco_bleu_tokens(hyps, refs).score:.1e}")


def test_tokenize_giqa_port(measure):
    from giqa.bench import _ptb_lexer

    hyps, _ = suite_texts()

    def cold():  # each round from a cold chunk cache, as the first scoring run of a process
        _ptb_lexer._caches.clear()
        return (hyps,), {}

    measure(TOKENS, ptb_tokenize_batch, rounds=3, warmup=0, setup=cold)
    measure.info(texts=f"{len(hyps):,}", texts_per_s=f"{len(hyps) / measure.seconds:,.0f}", cache="cold")


def test_tokenize_java_pycocoevalcap(measure):
    import pytest

    if not shutil.which("java"):
        pytest.skip("java is not on PATH")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    hyps, _ = suite_texts()
    captions = {i: [{"caption": x}] for i, x in enumerate(hyps)}
    out = measure(TOKENS, lambda: PTBTokenizer().tokenize(captions), rounds=2, warmup=0)
    port = ptb_tokenize_batch(hyps)
    same = sum(out[i][0].split() == port[i] for i in range(len(hyps)))
    measure.info(texts=f"{len(hyps):,}", texts_per_s=f"{len(hyps) / measure.seconds:,.0f}",
                 same_tokens_as_port=f"{same / len(hyps):.5f}")


if __name__ == "__main__":
    main()
