"""A deterministic differential corpus for the PTB tokeniser: sentences as models write them.

``make_corpus(n_per_slice, seed)`` -> ``[(slice, sentence), ...]``. Every slice is built from
templates of real model output (LLaVA / Q-Instruct / Co-Instruct style quality descriptions,
chat-model markdown, Kosmos-2 / Qwen-VL / Shikra / Ferret / Florence-2 / PaliGemma grounded
answers with their boxes stripped by giqa's own parsers) filled with random words, then
stressed in the slice's own way: hyphens, brackets, colons, numbers, abbreviations, unicode
quotes/dashes/symbols, emoji, invisible characters, and a mix of everything. Sentences come
in pairs from the same template (items ``2k`` and ``2k + 1`` of a slice), so a slice can be
scored as a BLEU corpus of hypotheses against references.

Used by ``tests/test_bench_ptb_differential.py`` and ``benchmarks/bench_ptb.py``.
"""

from __future__ import annotations

import random
from typing import Callable

__all__ = ["SLICES", "make_corpus", "pairs"]

OBJECTS = [
    "sky", "face", "man's face", "woman", "cat's eyes", "dog", "tower", "building", "car", "road",
    "tree", "flowers", "water surface", "background", "foreground", "window", "helmet", "flag",
    "text on the sign", "child", "cup", "saucer", "rocket", "mountain", "clouds", "grass", "bird",
    "person in the red jacket", "street lamp", "bicycle", "table", "horizon", "shadow area",
]
QUALITY = ["good", "fair", "poor", "bad", "excellent", "average", "acceptable", "low", "high", "very poor"]
ADJ = [
    "blurry", "sharp", "noisy", "clear", "dark", "bright", "soft", "overexposed", "underexposed",
    "out of focus", "well-lit", "washed-out", "grainy", "pixelated", "crisp", "hazy", "dull",
    "vivid", "desaturated", "low-contrast", "motion-blurred", "jagged", "smeared", "blocky",
]
FACTORS = ["sharpness", "noise", "exposure", "color", "contrast", "lighting", "focus",
           "composition", "texture", "compression", "clarity", "detail", "white balance"]
VERBS = ["shows", "has", "suffers from", "exhibits", "displays", "lacks", "contains", "reveals"]
DEFECTS = ["motion blur", "JPEG artifacts", "chromatic aberration", "banding", "glare", "vignetting",
           "lens flare", "halos", "ringing", "moire patterns", "color casts", "noise", "over-sharpening"]
LOCS = ["top left", "bottom right", "upper-left corner", "center", "left side", "right edge",
        "lower half", "middle", "background", "far right", "bottom-left"]


def _c(rng: random.Random, xs):
    return rng.choice(xs)


def _plain(rng: random.Random) -> str:
    o1, o2 = _c(rng, OBJECTS), _c(rng, OBJECTS)
    forms = [
        f"The overall quality of this image is {_c(rng, QUALITY)}.",
        f"The {o1} is {_c(rng, ADJ)}, while the {o2} remains {_c(rng, ADJ)}.",
        f"This image {_c(rng, VERBS)} {_c(rng, DEFECTS)}, so the {o1} looks {_c(rng, ADJ)}.",
        f"Overall, the {_c(rng, FACTORS)} is {_c(rng, QUALITY)}; the {o1} isn't {_c(rng, ADJ)}.",
        f"It's a {_c(rng, ADJ)} shot, and there's noticeable {_c(rng, DEFECTS)} near the {o1}.",
        f"The {o1}'s edges aren't {_c(rng, ADJ)}, but the {o2} can't be distinguished clearly.",
        f"Although the composition is pleasant, the {_c(rng, FACTORS)} of the {o1} is {_c(rng, QUALITY)}.",
        f"I'd rate the quality as {_c(rng, QUALITY)}: it's {_c(rng, ADJ)} in the {_c(rng, LOCS)}.",
        f"Yes, the {o1} is {_c(rng, ADJ)}.",
        f"No, there is no visible {_c(rng, DEFECTS)} on the {o1}.",
        f"Don't expect fine details here; the {o1} and the {o2} are {_c(rng, ADJ)}.",
        f"The {o1} we'll see is {_c(rng, ADJ)}, they've said, and you'd notice the {_c(rng, DEFECTS)}.",
    ]
    n = rng.randint(1, 3)
    return " ".join(rng.choice(forms) for _ in range(n))


def _markdown(rng: random.Random) -> str:
    f1, f2 = _c(rng, FACTORS), _c(rng, FACTORS)
    forms = [
        f"**{f1.capitalize()}:** {_c(rng, QUALITY)}",
        f"**{f1.capitalize()}**: The {_c(rng, OBJECTS)} is {_c(rng, ADJ)}.",
        f"### Overall Quality\nThe image is **{_c(rng, QUALITY)}** overall.",
        f"*{f1.capitalize()}* - the {_c(rng, OBJECTS)} looks _{_c(rng, ADJ)}_.",
        f"__{f1}__ is {_c(rng, QUALITY)} and ***{f2}*** is {_c(rng, QUALITY)}.",
        f"> Note: the {_c(rng, OBJECTS)} shows `{_c(rng, DEFECTS)}`.",
        f"| {f1} | {_c(rng, QUALITY)} |\n|---|---|\n| {f2} | {_c(rng, QUALITY)} |",
        f"See [the {_c(rng, OBJECTS)}](https://example.com/img_{rng.randint(1, 99)}.jpg) for details.",
        f"## {f1.title()} Analysis\n- **Rating**: {rng.randint(1, 5)}/5",
        f"**Final verdict:** {_c(rng, QUALITY)} ({rng.randint(1, 10)}/10).",
        f"~~{_c(rng, ADJ)}~~ {_c(rng, ADJ)}; ==highlight== on the {_c(rng, OBJECTS)}.",
        f"---\n**Summary**: {_c(rng, QUALITY)}\n***",
    ]
    return " ".join(rng.choice(forms) for _ in range(rng.randint(1, 3)))


def _lists(rng: random.Random) -> str:
    items = [f"The {_c(rng, OBJECTS)} is {_c(rng, ADJ)}" for _ in range(rng.randint(2, 4))]
    style = rng.randrange(7)
    if style == 0:
        body = "\n".join(f"- {x}." for x in items)
    elif style == 1:
        body = "\n".join(f"{k + 1}. {x}." for k, x in enumerate(items))
    elif style == 2:
        body = "\n".join(f"{k + 1}) {x};" for k, x in enumerate(items))
    elif style == 3:
        body = "\n".join(f"* {x}" for x in items)
    elif style == 4:
        body = "\n".join(f"\u2022 {x}" for x in items)
    elif style == 5:
        body = "\n".join(f"{chr(97 + k)}) {x}" for k, x in enumerate(items))
    else:
        body = "\n".join(f"  - **{_c(rng, FACTORS)}**: {x}" for x in items)
    head = rng.choice(["Key observations:", "The image has the following issues:", "Quality factors:", ""])
    return (head + "\n" + body).strip()


def _boxes(rng: random.Random, k: int) -> list[tuple[float, float, float, float]]:
    out = []
    for _ in range(k):
        x1, y1 = rng.uniform(0, 0.7), rng.uniform(0, 0.7)
        out.append((round(x1, 3), round(y1, 3), round(min(1.0, x1 + rng.uniform(0.05, 0.3)), 3),
                    round(min(1.0, y1 + rng.uniform(0.05, 0.3)), 3)))
    return out


FORMATS = ("giqa", "giqa-norm", "kosmos2", "qwen-vl", "shikra", "ferret", "florence2", "paligemma")


def _formats(rng: random.Random) -> str:
    """A grounded answer in one of the eight formats, stripped by giqa's parser for it."""
    from giqa.text.formats import get_format

    name = FORMATS[rng.randrange(len(FORMATS))]
    fmt = get_format(name)
    parts = []
    for _ in range(rng.randint(1, 3)):
        obj = _c(rng, OBJECTS).replace("'", "")
        grounded = fmt.format_phrase(obj, _boxes(rng, rng.randint(1, 2)))
        parts.append(rng.choice([
            f"The {grounded} is {_c(rng, ADJ)}.",
            f"There is {_c(rng, DEFECTS)} on the {grounded}, especially at the {_c(rng, LOCS)}.",
            f"the {grounded} ({_c(rng, ADJ)})",
        ]))
    text = " ".join(parts)
    if name == "kosmos2":
        text = "<grounding> " + text
    return fmt.parse(text).text


def _hyphens(rng: random.Random) -> str:
    forms = [
        "The shadows are over- and under-exposed at once.",
        f"A {rng.randint(2, 64)}-bit, {rng.choice(['well-lit', 'low-light', 'high-contrast'])} scene with {_c(rng, DEFECTS)}.",
        f"The {_c(rng, OBJECTS)} is out-of-focus - a {_c(rng, ADJ)}-looking, semi-transparent blur.",
        f"State-of-the-art denoising leaves a plastic-like, water-color texture on the {_c(rng, OBJECTS)}.",
        f"The {_c(rng, OBJECTS)} looks x-ray-like; pre- and post-processing are visible.",
        f"Edges are re-sharpened -- too much -- and the {_c(rng, OBJECTS)} has a halo---a wide one.",
        f"A so-called 'HDR' look: mid-tones are flat, co-ed, non-linear and anti-aliased.",
        f"The {_c(rng, OBJECTS)} has a dark-green, blue-ish cast (ISO-{rng.choice([800, 1600, 3200])}).",
        f"It's a well-composed, yet - overall - a {_c(rng, QUALITY)}-quality image_of_the_day.",
        f"Self-portrait; top-left to bottom-right gradient; {rng.randint(1, 9)}-{rng.randint(1, 9)} split.",
        f"The {_c(rng, OBJECTS)}-like shape is pro-cyclical and anti-natural, don't-care quality.",
    ]
    return " ".join(rng.choice(forms) for _ in range(rng.randint(1, 2)))


def _brackets(rng: random.Random) -> str:
    o, loc = _c(rng, OBJECTS), _c(rng, LOCS)
    forms = [
        f"The {o}(bottom right) is {_c(rng, ADJ)}.",
        f"The {o} ({loc}) is {_c(rng, ADJ)} [see region {rng.randint(1, 9)}].",
        f"Issues: (a) {_c(rng, DEFECTS)}; (b) {_c(rng, DEFECTS)}; (c) {_c(rng, ADJ)} {o}.",
        f"The {o} {{{loc}}} looks {_c(rng, ADJ)} [{rng.randint(1, 99)}].",
        f"(({_c(rng, ADJ)})) [[{o}]] {{{{x}}}} ({loc}.)",
        f"The {o} (i.e. the {_c(rng, OBJECTS)}) is {_c(rng, ADJ)} (mostly).",
        f"Score(s): [{rng.randint(0, 100)}%] (approx.)",
        f"f(x)=blur; the {o}[{loc}] and the {_c(rng, OBJECTS)}({loc})",
        f"<{o}> is {_c(rng, ADJ)}; <b>{loc}</b> <br> <img src=\"a.png\"/> < 5 > 3",
    ]
    return " ".join(rng.choice(forms) for _ in range(rng.randint(1, 2)))


def _colons(rng: random.Random) -> str:
    forms = [
        f"quality:{_c(rng, QUALITY)}",
        f"Sharpness: {_c(rng, QUALITY)}; Noise:{_c(rng, QUALITY)}; Exposure : {_c(rng, QUALITY)}",
        f"Taken at {rng.randint(0, 23)}:{rng.randint(10, 59)} with a {rng.choice(['16:9', '4:3', '3:2'])} ratio.",
        f"Rating: {rng.randint(1, 5)}:{rng.randint(0, 9)}; contrast ratio {rng.randint(2, 20)}:1.",
        f"Answer: Yes. Reason: the {_c(rng, OBJECTS)} is {_c(rng, ADJ)}.",
        f"Note:: the {_c(rng, OBJECTS)}:the {_c(rng, OBJECTS)}: {_c(rng, ADJ)}",
        f"Time 00:0{rng.randint(0, 9)}:3{rng.randint(0, 9)}.{rng.randint(0, 99)}; scale 1:{rng.randint(2, 500)}",
    ]
    return " ".join(rng.choice(forms) for _ in range(rng.randint(1, 2)))


SIZES = ["1920\u00d71080", "1280x720", "3840 x 2160", "640\u00d7480"]


def _numbers(rng: random.Random) -> str:
    r = rng.randint
    forms = [
        f"A {r(1, 9)},{r(100, 999)}-pixel-wide image at {r(1, 4)}.{r(0, 9)} MP.",
        f"Encoded as H.{rng.choice([264, 265])} at {r(1, 50)}.{r(0, 9)} Mbps; No.{r(1, 9)} in the list.",
        f"The sun sits at {r(10, 90)}\u00b0 and the frame is {rng.choice(SIZES)}.",
        f"About {r(1, 99)}% of pixels are clipped; {r(1, 9)}/{r(2, 9)} of the frame is dark.",
        f"Shot at f/{r(1, 9)}.{r(0, 9)}, 1/{r(30, 4000)}s, ISO {r(100, 6400)}, {r(12, 200)}mm, -{r(0, 3)}.{r(0, 9)} EV.",
        f"Costs ${r(1, 999)}.{r(10, 99)} or \u20ac{r(1, 99)}; {r(1, 3)} {r(1, 3)}/{r(2, 4)} stops brighter.",
        f"Version v{r(1, 3)}.{r(0, 9)}.{r(0, 9)}, {r(2, 8)}x upscaled, {r(4, 8)}K, {r(8, 16)}-bit, {r(1, 5)}.5x zoom.",
        f"Resolution {r(100, 999)}x{r(100, 999)}px; score {r(0, 100)}/100 (+{r(1, 9)}.{r(0, 9)}); {r(1, 12)}/{r(1, 28)}/20{r(10, 30)}.",
        f"{r(1, 9)}.{r(0, 9)}.{r(0, 9)} and {r(10, 99)},{r(100, 999)},{r(100, 999)} and .{r(1, 9)} and {r(1, 9)}. {r(1, 9)}",
        f"Call +1 {r(100, 999)} {r(100, 999)} {r(1000, 9999)} or ({r(10, 99)}) {r(100, 999)}-{r(1000, 9999)}.",
        f"Temperature {r(2000, 9000)}K; gamma 2.2; \u00bd stop; {r(1, 9)}\u00bc in; {r(1, 9)}\u00b2 px\u00b2; H\u2082O.",
        f"It ranks #{r(1, 99)} with {r(1, 5)}+ artifacts and {r(1, 9)}-{r(10, 20)} blocks, ~{r(1, 9)} dB.",
    ]
    return " ".join(rng.choice(forms) for _ in range(rng.randint(1, 2)))


def _abbrev(rng: random.Random) -> str:
    o = _c(rng, OBJECTS)
    forms = [
        f"The {o} is {_c(rng, ADJ)}, e.g. the edges, i.e. the outline, etc.",
        f"See Fig. {rng.randint(1, 9)} vs. Fig. {rng.randint(1, 9)}, approx. {rng.randint(1, 9)} cm wide.",
        f"Mr. Smith's photo, taken by Dr. Lee at {rng.randint(1, 12)} p.m., shows the U.S. flag.",
        f"The {o} looks sharp etc. The {_c(rng, OBJECTS)} is {_c(rng, ADJ)}.",
        f"Plan A. It is {_c(rng, ADJ)}. The end",
        f"This is Fig. {rng.randint(1, 9)}; cf. the No. {rng.randint(1, 9)} item and Jan. {rng.randint(1, 28)} shots.",
        f"A photo of St. Louis, Mt. Fuji and Washington D.C. at {rng.randint(1, 12)} a.m. Inc. and Co. Ltd. etc",
        f"Vol. {rng.randint(1, 9)}, ca. {rng.randint(1900, 2024)}, pp. {rng.randint(1, 99)}, op. cit.; est. {rng.randint(1, 9)}.",
        f"The photo is {_c(rng, ADJ)} (e.g., noise), I. e. unusable. I. The {o} is fine.",
        f"Prof. X. Y. Zhang et al. used a Sony A7 III w/ a 50mm lens, approx.",
    ]
    return " ".join(rng.choice(forms) for _ in range(rng.randint(1, 2)))


def _unicode(rng: random.Random) -> str:
    o, a = _c(rng, OBJECTS), _c(rng, ADJ)
    forms = [
        f"The \u201c{o}\u201d is \u2018{a}\u2019 \u2014 it\u2019s {_c(rng, QUALITY)}\u2026",
        f"He said \u201egreat\u201c \u2013 but the {o} isn\u2019t {a}.",
        f"\u00ab{o}\u00bb looks {a} \u2192 {_c(rng, QUALITY)} \u2713 \u2605\u2605\u2605\u2606\u2606",
        f"Caf\u00e9 na\u00efve r\u00e9sum\u00e9: the {o} is {a} \u00b1 {rng.randint(1, 9)}% \u00d7 {rng.randint(2, 9)}.",
        f"\u00a9 2024 \u2122 \u00ae; {rng.randint(1, 9)}\u2009\u00b0C; \u00a3{rng.randint(1, 99)} \u00a5{rng.randint(1, 99)} \u00a7{rng.randint(1, 9)}",
        f"Quality\u2012{_c(rng, QUALITY)}; \u2015 {o} \u2016 {a} \u2022 \u00b7 \u2026 \u2039x\u203a",
        f"\uff21\uff22\uff23 full-width: \uff08{o}\uff09\uff1a{a}\u3002 \u753b\u8d28\u5f88\u597d\u3002",
        f"\u0391\u03bb\u03c6\u03b1 \u0442\u0435\u043a\u0441\u0442 \u2018quoted\u2019 \u201bodd\u201f {o}'s \u2032prime\u2033",
        f"Math: \u2211 \u221a2 \u2248 1.41, \u2264 \u2265 \u2260 \u221e \u2207 \u2202x",
    ]
    return " ".join(rng.choice(forms) for _ in range(rng.randint(1, 2)))


EMOJI = ["\U0001f600", "\U0001f44d", "\U0001f44d\U0001f3fd", "\u2764\ufe0f", "\u2600\ufe0f", "\U0001f4f7",
         "\u2728", "\U0001f525", "\u2705", "\u274c", "\u26a0\ufe0f", "\U0001f468\u200d\U0001f4bb", "\U0001f1fa\U0001f1f8",
         "\u263a", "\u2b50", "\U0001f31f", "\U0001f3a8", "\U0001f50d"]


def _emoji(rng: random.Random) -> str:
    o, a, e = _c(rng, OBJECTS), _c(rng, ADJ), _c(rng, EMOJI)
    forms = [
        f"The {o} is {a} {e}",
        f"{e} Great shot! The {o}{e} is {a}.",
        f"Quality: {_c(rng, QUALITY)}{e}{_c(rng, EMOJI)} - the {o} looks {a}.",
        f"**{_c(rng, FACTORS).title()}** {e}: {a}",
        f"{e}{e} {o}-{a}{e}word",
    ]
    return " ".join(rng.choice(forms) for _ in range(rng.randint(1, 2)))


INVISIBLE = ["\u200b", "\u200c", "\u200d", "\ufeff", "\u00ad", "\u00a0", "\u2009", "\u2060", "\u200e",
             "\u200f", "\ufe0f", "\u202f", "\u3000", "\t", "\u2002", "\x7f", "\u061c", "\u180e"]


def _invisible(rng: random.Random) -> str:
    words = _plain(rng).split(" ")
    out = []
    for w in words:
        if rng.random() < 0.3 and len(w) > 2:
            k = rng.randrange(1, len(w))
            w = w[:k] + _c(rng, INVISIBLE) + w[k:]
        out.append(w)
        out.append(_c(rng, INVISIBLE) if rng.random() < 0.2 else " ")
    return "".join(out).strip(" ")


_GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "plain": _plain,
    "markdown": _markdown,
    "lists": _lists,
    "formats": _formats,
    "hyphens": _hyphens,
    "brackets": _brackets,
    "colons": _colons,
    "numbers": _numbers,
    "abbreviations": _abbrev,
    "unicode": _unicode,
    "emoji": _emoji,
    "invisible": _invisible,
}


def _mix(rng: random.Random) -> str:
    names = [k for k in _GENERATORS if k != "formats"]
    return " ".join(_GENERATORS[rng.choice(names)](rng) for _ in range(rng.randint(2, 3)))


_GENERATORS["mix"] = _mix

#: Slice names, in corpus order.
SLICES = tuple(_GENERATORS)


def _perturb(text: str, rng: random.Random) -> str:
    """A model-like paraphrase: drop, swap and replace a few words (their characters kept)."""
    words = text.split(" ")
    out = []
    for w in words:
        r = rng.random()
        if r < 0.08:
            continue
        out.append(rng.choice(ADJ) if r < 0.16 else w)
    if len(out) > 3:
        k = rng.randrange(len(out) - 1)
        out[k], out[k + 1] = out[k + 1], out[k]
    return " ".join(out)


def make_corpus(n_per_slice: int = 1600, seed: int = 0) -> list[tuple[str, str]]:
    """``(slice, sentence)`` pairs, ``n_per_slice`` per slice (rounded up to even), in slice
    order. Item ``2k + 1`` of a slice is a paraphrase of item ``2k`` (a BLEU pair)."""
    out: list[tuple[str, str]] = []
    for name in SLICES:
        gen = _GENERATORS[name]
        for i in range(0, n_per_slice, 2):
            rng = random.Random(f"{seed}/{name}/{i}")
            text = gen(rng)
            out += [(name, text), (name, _perturb(text, rng))]
    return out


def pairs(corpus: list[tuple[str, str]], tokens: list[list[str]]) -> dict[str, tuple[list, list]]:
    """Per slice: (hypothesis token lists, reference token-list sets) from the pairs."""
    out: dict[str, tuple[list, list]] = {}
    for k in range(0, len(corpus) - 1, 2):
        name = corpus[k][0]
        hyps, refs = out.setdefault(name, ([], []))
        hyps.append(tokens[k])
        refs.append([tokens[k + 1]])
    return out
