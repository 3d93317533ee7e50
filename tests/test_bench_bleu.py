"""BLEU@4: pure-Python PTB tokeniser and COCO BLEU against pycocoevalcap (Java for the parity test)."""

from __future__ import annotations

import importlib
import math
import random
import shutil

import pytest
from hypothesis import given, settings, strategies as st

from giqa.bench.bleu import bleu, bleu_from_totals, coco_bleu_tokens
from giqa.bench.ptb import PUNCTUATIONS, ptb_tokenize

CORPUS = [
    'The overall quality of this image is poor. The sky is overexposed, and the trees on the left are blurry.',
    "Overall, the image's clarity is good: the man's face is sharp, but the background is slightly out-of-focus.",
    'The photo suffers from heavy JPEG compression; blocky artifacts are visible around the "sunset" region.',
    "It's a low-light shot (taken at night), so there's noticeable noise in the shadows, especially near the car.",
    "The texture of the tower isn't clear; the stones, however, are well-defined and crisp.",
    'Colors are vivid and well-saturated -- the red flowers stand out against the dark-green leaves.',
    "The image is about 50% underexposed; details in the dark areas can't be distinguished.",
    "There's motion blur on the cyclist's legs, while the road and the buildings remain sharp.",
    'Lighting is uneven: the left side is bright, the right side is dim... Overall quality: fair.',
    'The water surface shows a slight haze, e.g. a loss of contrast, and the horizon is tilted by 3.5 degrees.',
    "Although the composition is pleasant, the focus is off; the dog's eyes aren't in focus.",
    'The subject (a young woman) is well-lit, but her hair has some chromatic aberration at the edges.',
    'The image was upscaled 2x, which caused jagged edges and a "painted" look on the grass.',
    "Noise level is high at ISO-3200; fine details like the bricks' texture are lost.",
    'The window is overexposed, i.e., the highlights are clipped and show no detail at all.',
    'This AI-generated image has a distorted hand and an unnatural, plastic-like skin texture.',
    "I'd rate the quality as average: it's sharp in the center but soft toward the corners.",
    'The food looks appetizing; however, the white balance is too warm (yellowish tint).',
    'Strong vignetting darkens the four corners; the centre remains bright and clear.',
    'The text on the sign is unreadable due to defocus blur and low resolution (about 320x240).',
    "The kids' faces are underexposed because the sun is behind them -- a classic backlit scene.",
    "The sharpness is excellent! Fine details such as the cat's whiskers are clearly visible.",
    "Is the image clear? Not really: there's camera shake, and the lines are doubled.",
    "The ceiling lights cause glare, and the reflections on the table aren't pleasing.",
    'The aerial view is hazy; buildings 1,000 m away lose contrast and look washed-out.',
    'Overall, the quality is very good. Colors are natural, and the exposure is well-balanced.',
    "The photo's horizon isn't straight; moreover, the sky shows banding from 8-bit compression.",
    'The candles are in focus, whereas the numeric-shaped candles in the background are blurry.',
    "Severe over-sharpening creates halos around the mountains' edges, which look unnatural.",
    "The image is dark and noisy; the person's clothes blend into the background, etc.",
    'The close-up of the flower is crisp, with a pleasing bokeh behind it (f/1.8, 50mm).',
    'A slight tilt and a noisy sky reduce the quality; still, the main building is clear.',
    "Don't expect fine details here: the image is heavily compressed, and edges are smeared.",
    'The "HDR" effect is overdone -- shadows look grey, and the clouds have dark halos.',
    "The statue's texture is clear and distinguishable; its shadow, though, is too deep.",
    "The photo was taken through a dirty window, so there's haze and a few spots in the upper-right corner.",
    'Exposure is accurate, but the image lacks contrast; it looks flat and a bit dull.',
    "The player's jersey number (No. 7) is readable, though the ball is motion-blurred.",
    "The landscape's foreground is sharp, the middle ground is OK, and the far hills are soft.",
    'The quality is bad. The image is blurry, noisy and underexposed; nothing is clear.',
]

# Extra lines with the awkward cases (outputs checked against the Java tokeniser by hand).
EDGE = [
    "The image's quality is \"poor\", isn't it? I can't tell; it's well-lit (mostly) [left] and/or blurry...",
    "Mr. Smith's photo, taken at 3.5 m, shows 50% noise & 1,000 artifacts -- e.g. the sky etc.",
    "He said \u201cgreat\u201d \u2014 but it\u2019s over-exposed\u2026 Don't, won't, cannot, gonna, I'm, we'll, they've, you'd.",
    "See Fig. 3 vs. Fig. 4, approx. 5 cm wide, i.e., small. The U.S. flag. Plan A. It is 5. The end",
    "It's 4K/UHD, 1920x1080px; f/2.8 ISO-800 at 1/250s. JPEG-compressed, 8-bit. 3.5mm lens... 100%.",
    "Hello!!! What?! Wow?? ok.. fine.... ok - fine -- done --- end; a,b x*y a=b 5+5 ~5 {curly}",
]


def _perturb(line: str, seed: int) -> str:
    """A model-like paraphrase: drop, swap and replace a few words (punctuation kept)."""
    rng = random.Random(seed)
    words = line.split()
    out = []
    for w in words:
        r = rng.random()
        if r < 0.1:
            continue
        out.append("very" if r < 0.18 else w)
    if len(out) > 3:
        k = rng.randrange(len(out) - 1)
        out[k], out[k + 1] = out[k + 1], out[k]
    return " ".join(out)


def _pairs(lines):
    """Hypotheses are paraphrases of reference 0; reference 1 is another description."""
    n = len(lines)
    hyps = [_perturb(s, i) for i, s in enumerate(lines)]
    refs = [[lines[i], lines[(i + 7) % n]] for i in range(n)]
    return hyps, refs


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The man's face isn't sharp (left).", "the man 's face is n't sharp -lrb- left -rrb-"),
        ("I can't tell; it's well-lit.", "i ca n't tell it 's well-lit"),
        ('The "sharp" edges, e.g. the roof, etc.', "the sharp edges e.g. the roof etc."),
        ("Noise: 50%, cost $5; 3.5mm lens.", "noise 50 % cost $ 5 3.5 mm lens"),
        ("cannot gonna DON'T", "can not gon na do n't"),
        ("Fig. 3 shows approx. 5 cm", "fig. 3 shows approx 5 cm"),
        ("the x. The end", "the x the end"),
        ("", ""),
    ],
)
def test_ptb_tokenize_hand_checked(text, expected):
    assert " ".join(ptb_tokenize(text)) == expected


def test_brackets_survive_like_pycocoevalcap():
    # pycocoevalcap removes "-LRB-" but the tokeniser lower-cases it first: it stays
    assert "-LRB-" in PUNCTUATIONS
    assert ptb_tokenize("(a)") == ["-lrb-", "a", "-rrb-"]


def test_hand_computed_bleu():
    r = coco_bleu_tokens([["the", "cat", "sat", "on", "the", "mat"]], [[["the", "cat", "is", "on", "the", "mat"]]])
    # p1 = 5/6, p2 = 3/5, p3 = 1/4, p4 = 0/3 (-> tiny), same lengths so no brevity penalty
    assert r.bleus[0] == pytest.approx(5 / 6, abs=1e-9)
    assert r.bleus[1] == pytest.approx(math.sqrt(0.5), abs=1e-9)
    assert r.bleus[2] == pytest.approx(0.5, abs=1e-9)
    assert r.score < 1e-3
    assert bleu(["the sky is blurry ."], ["The sky is blurry."]).score == pytest.approx(1.0, abs=1e-9)


def test_closest_reference_length_prefers_shorter_on_ties():
    hyp = [["a", "b", "c", "d", "e"]]
    tied = coco_bleu_tokens(hyp, [[["a", "b", "c"], ["a", "b", "c", "d", "e", "f", "g"]]])
    assert tied.stats[0, 1] == 3  # |5-3| == |5-7|: the shorter one
    closest = coco_bleu_tokens(hyp, [[["a", "b", "c", "d"], ["a", "b", "c", "d", "e", "f", "g", "h"]]])
    assert closest.stats[0, 1] == 4
    short = coco_bleu_tokens([["a", "b"]], [[["a", "b", "c", "d"]]])
    assert short.ratio == pytest.approx(0.5)
    assert short.bleus[0] == pytest.approx(math.exp(1 - 2), rel=1e-6)  # brevity penalty e^(1 - 1/r)


def test_empty_hypothesis_and_errors():
    r = coco_bleu_tokens([[]], [[["a", "b"]]])
    assert r.score == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        bleu(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        bleu(["a"], ["a"], flavour="nist")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from("a b c d e f".split()), min_size=0, max_size=12),
            st.lists(st.lists(st.sampled_from("a b c d e f".split()), min_size=1, max_size=12), min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_scorer_matches_pycocoevalcap_on_tokens(items):
    from pycocoevalcap.bleu.bleu import Bleu

    gts = {i: [" ".join(r) for r in refs] for i, (_, refs) in enumerate(items)}
    res = {i: [" ".join(h)] for i, (h, _) in enumerate(items)}
    expected, _ = Bleu(4).compute_score(gts, res, verbose=0)
    got = coco_bleu_tokens([h for h, _ in items], [refs for _, refs in items])
    for k in range(4):
        assert got.bleus[k] == pytest.approx(expected[k], rel=1e-9, abs=1e-12)


def test_vectorised_totals_agree_with_scalar():
    hyps, refs = _pairs(CORPUS)
    r = bleu(hyps, refs)
    again = bleu_from_totals(r.stats.sum(axis=0)[None, :])[0]
    assert again[-1] == pytest.approx(r.score, rel=1e-12)


@pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed")
def test_parity_with_pycocoevalcap_java():
    """Same tokens as the Java PTBTokenizer, and corpus BLEU-1..4 equal to 1e-6."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    lines = CORPUS + EDGE
    hyps, refs = _pairs(lines)
    n = len(lines)
    texts = hyps + lines  # ids 0..n-1 hypotheses, n..2n-1 references
    java = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(texts)})
    for i, s in enumerate(texts):
        assert java[i][0] == " ".join(ptb_tokenize(s)), s
    gts = {i: [java[n + i][0], java[n + (i + 7) % n][0]] for i in range(n)}
    res = {i: java[i] for i in range(n)}
    expected, _ = Bleu(4).compute_score(gts, res, verbose=0)
    got = bleu(hyps, refs)
    assert got.flavour == "coco"
    for k in range(4):
        assert abs(got.bleus[k] - expected[k]) < 1e-6
    assert got.score > 0.01  # a real, non-degenerate corpus


def test_sacrebleu_flavour_is_labelled_and_matches_sacrebleu():
    import sacrebleu

    hyps, refs = _pairs(CORPUS[:12])
    got = bleu(hyps, refs, flavour="sacrebleu-13a")
    expected = sacrebleu.corpus_bleu(hyps, [[r[0] for r in refs], [r[1] for r in refs]], tokenize="13a")
    assert got.flavour == "sacrebleu-13a"
    assert got.score == pytest.approx(expected.score / 100, rel=1e-9)
    assert got.score != pytest.approx(bleu(hyps, refs).score, rel=1e-3)


@pytest.mark.parametrize("key_limit", [1 << 62, 1 << 34, 1 << 32])  # none, one, two renumberings
def test_corpus_counting_equals_per_item_counting(monkeypatch, key_limit):
    """The vectorised one-reference statistics equal per-item Counters, also when n-gram codes
    must be renumbered to fit int64 keys (forced here by a small key limit)."""
    import numpy as np

    b = importlib.import_module("giqa.bench.bleu")  # the module (giqa.bench.bleu is also a function)

    rng = random.Random(7)
    words = [f"w{i}" for i in range(300)]
    hyps = [[rng.choice(words[: rng.randint(2, 300)]) for _ in range(rng.randint(0, 30))] for _ in range(400)]
    refs = [[[rng.choice(words) for _ in range(rng.randint(1, 30))]] for _ in range(400)]
    refs[:50] = [[h[: len(h) // 2] + ["x"] + h[len(h) // 2 :]] for h in hyps[:50]]  # long shared n-grams
    expected = b._stats_per_item(hyps, refs, 4)
    monkeypatch.setattr(b, "_KEY_LIMIT", key_limit)
    calls = []
    renumber = b._renumber_codes
    monkeypatch.setattr(b, "_renumber_codes", lambda sides: calls.append(1) or renumber(sides))
    got = b._single_ref_stats(hyps, refs, 4)
    assert got is not None and np.array_equal(got, expected)
    assert len(calls) == {1 << 62: 0, 1 << 34: 1, 1 << 32: 2}[key_limit]
    assert expected[:, 9].sum() > 0  # 4-gram matches exist
