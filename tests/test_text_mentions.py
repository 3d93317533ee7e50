"""giqa.text.mentions: the one "is this phrase mentioned?" rule, and the stages that share it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giqa.text import find_mention, fuse, is_mentioned, iter_mentions
from giqa.types import Box, GroundedPhrase

# (phrase, text, the mentioned words or None)
CASES = [
    # underscores join words
    ("cup", "The cup_holder is blurry.", None),
    ("cup", "The cup holder is blurry.", "cup"),
    ("holder", "The cup_holder is blurry.", None),
    ("cup_holder", "The cup_holder is blurry.", "cup_holder"),
    # hyphens between letters join words too; a phrase may contain one
    ("man", "A man-made lake.", None),
    ("shirt", "A white t-shirt.", None),
    ("t-shirt", "Two white T-shirts.", "T-shirts"),
    ("numeric-shaped candles", "The numeric-shaped candles are sharp.", "numeric-shaped candles"),
    ("shaped candles", "The numeric-shaped candles are sharp.", None),
    ("sky", "The sky - bright and clear.", "sky"),
    # plurals of the paper's examples ([buildings], [stones], [candles]) and regular forms
    ("building", "The buildings are blurry.", "buildings"),
    ("stone", "The texture of the stones is clear.", "stones"),
    ("candle", "Is the texture of the candles clear?", "candles"),
    ("box", "Three boxes.", "boxes"),
    ("berry", "Ripe berries.", "berries"),
    ("day", "Sunny days.", "days"),
    ("candles", "One candle.", None),
    ("cat", "A catalogue.", None),
    # apostrophes end words (typographic ones too)
    ("man", "The man's face is sharp.", "man"),
    ("man", "The man\u2019s face is sharp.", "man"),
    ("dog", "The dogs' tails are blurry.", "dogs"),
    ("man's face", "The MAN\u2019S FACE is sharp.", "MAN\u2019S FACE"),
    # case folding, canonical equivalence, whitespace
    ("Tower", "the TOWER is tilted", "TOWER"),
    ("straße", "DIE STRASSE", "STRASSE"),
    ("café", "Un cafe\u0301 noir", "cafe\u0301"),
    ("cafe", "Un café noir", None),
    ("water surface", "the water  surface", "water  surface"),
    ("(left)", "the (left) side", "(left)"),
    # scripts: spaced ones keep word boundaries, unspaced ones cannot have them
    ("кот", "Кот спит.", "Кот"),
    ("кот", "Котёнок спит.", None),
    ("γάτα", "Η ΓΆΤΑ κοιμάται.", "ΓΆΤΑ"),
    ("कुत्ता", "यह कुत्ता धुंधला है", "कुत्ता"),
    ("कुत्ता", "यह कुत्ताघर है", None),
    ("猫", "猫が寝ている。", "猫"),
    ("写真", "この写真はぼやけている", "写真"),
    ("고양이", "고양이가 잔다", "고양이"),
    # no mention
    ("tower", "", None),
    ("", "a tower", None),
    ("   ", "a tower", None),
]


@pytest.mark.parametrize("phrase,text,want", CASES)
def test_find_mention(phrase, text, want):
    span = find_mention(phrase, text)
    assert (text[span[0] : span[1]] if span else None) == want
    assert is_mentioned(phrase, text) is (want is not None)


def test_iter_mentions_gives_every_place_left_to_right():
    text = "Candles, a candle and CANDLES_X and candles."
    assert [text[a:b] for a, b in iter_mentions("candle", text)] == ["Candles", "candle", "candles"]


@settings(max_examples=60, deadline=None)
@given(words=st.lists(st.sampled_from(["cup", "cups", "cup_holder", "cup-holder", "teacup", "man's", "a", "the", "Cup", "CUP."]),
                      max_size=8))
def test_mention_is_a_whole_word_of_the_text(words):
    text = " ".join(words)
    for a, b in iter_mentions("cup", text):
        assert text[a:b].casefold() in ("cup", "cups")
        assert a == 0 or text[a - 1] == " "
    assert is_mentioned("cup", text) == any(w.casefold().rstrip(".").split("'")[0] in ("cup", "cups") for w in words)


# -- the three places that decide "mentioned" agree --------------------------------------------
AGREE = [(p, t) for p, t, _ in CASES if p.strip() and t and "\u2019" not in p]


def _des_grounds(phrase: str, text: str) -> bool:
    """DES RefineStage picks the tag's name when the description mentions it."""
    from giqa.models.protocols import Detection
    from giqa.pipeline.config import DesConfig
    from giqa.pipeline.des import RefineStage
    from giqa.pipeline.records import DesRecord
    from giqa.types import Tag

    record = DesRecord(key="k", id="x", description=text,
                       tags=(Tag(name=phrase, phrase="zzqx", quality="blurry", effect="negative"),),
                       detections=((Detection(box=Box.from_xyxy((0.1, 0.1, 0.2, 0.2)), score=0.9, phrase="zzqx"),),))
    (out,) = RefineStage(None, DesConfig()).process([record])
    return out.regions[0].phrase == phrase


def _vqa_keeps(phrase: str, text: str) -> bool:
    """The VQA filter keeps a pair that mentions a key object (no quality keywords here)."""
    from giqa.pipeline.config import VqaConfig
    from giqa.pipeline.records import QAItem, Region, VqaRecord
    from giqa.pipeline.vqa import FilterStage
    from giqa.types import Tag

    tag = Tag(name=phrase, phrase=phrase, quality="blurry", effect="negative")
    record = VqaRecord(key="k", id="x", objects=(Region(phrase=phrase, boxes=(Box.from_xyxy((0.1, 0.1, 0.2, 0.2)),), tag=tag),),
                       qa=(QAItem(family="open", question=f"What about: {text}?", answer="Blurry."),))
    (out,) = FilterStage(VqaConfig(quality_keywords=())).process([record])
    return out.error is None


def _fuse_places(phrase: str, text: str) -> bool:
    return fuse(text, [GroundedPhrase(phrase=phrase, boxes=(Box.from_xyxy((0.1, 0.1, 0.2, 0.2)),))]) != text


@pytest.mark.parametrize("phrase,text", AGREE)
def test_des_vqa_and_fuse_use_the_same_rule(phrase, text):
    want = is_mentioned(phrase, text)
    assert _des_grounds(phrase, text) is want
    assert _vqa_keeps(phrase, text) is want
    assert _fuse_places(phrase, text) is want
