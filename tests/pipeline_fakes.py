"""Deterministic in-memory backends and tiny images shared by the pipeline tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from giqa.models import CallableDetector, CallableLLM, CallableQualityFilter

DESC_DOG = "The dog on the left is blurry, while the red car is sharp and well exposed."
DESC_SKY = "The sky is overexposed and the trees are dark. The image is noisy overall."

TAGS = {
    DESC_DOG: [
        {"name": "dog", "phrase": "the dog on the left", "quality": "blurry", "effect": "negative"},
        {"name": "car", "phrase": "red car", "quality": "sharp", "effect": "positive"},
        {"name": "image", "phrase": "image", "quality": "fine", "effect": "no_impact"},
    ],
    DESC_SKY: [
        {"name": "sky", "phrase": "sky", "quality": "overexposed", "effect": "negative"},
        {"name": "trees", "phrase": "the trees", "quality": "dark", "effect": "negative"},
        {"name": "image", "phrase": "image", "quality": "noisy", "effect": "no_impact"},
    ],
}

# phrase -> detections (normalised xyxy, score)
BOXES = {
    "the dog on the left": [((0.05, 0.4, 0.35, 0.9), 0.8)],
    # two candidates: the left (dark) one is the blurry... the filter below keeps the bright one
    "red car": [((0.55, 0.5, 0.95, 0.9), 0.9), ((0.05, 0.05, 0.25, 0.25), 0.6)],
    "sky": [((0.0, 0.0, 1.0, 0.3), 0.7)],
    # two touching small boxes -> merged by Box-Merge
    "the trees": [((0.1, 0.5, 0.3, 0.7), 0.6), ((0.3, 0.5, 0.5, 0.7), 0.5)],
}

_DESC = re.compile(r'"""(.*?)"""', re.S)


def description_of(messages: list[dict[str, str]]) -> str:
    for msg in messages:
        m = _DESC.search(msg["content"])
        if m:
            return m.group(1)
    raise AssertionError("no description in the prompt")


def tag_llm_fn(messages: list[dict[str, str]]) -> str:
    desc = description_of(messages)
    return "Here are the tags:\n```json\n" + json.dumps({"tags": TAGS.get(desc, [])}) + "\n```"


def make_llm(fn=tag_llm_fn, model_id: str = "fake-llm") -> CallableLLM:
    return CallableLLM(fn, model_id=model_id)


def detector_fn(image: Any, phrase: str):
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    return BOXES.get(phrase, [])


def make_detector() -> CallableDetector:
    return CallableDetector(detector_fn, model_id="fake-detector")


def filter_fn(crop: Any, question: str) -> float:
    """P(yes) = mean brightness of the crop (the test images are dark on the top-left)."""
    return float(np.asarray(crop, dtype=np.float64).mean() / 255.0)


def make_filter() -> CallableQualityFilter:
    return CallableQualityFilter(filter_fn, model_id="fake-filter")


def write_image(path: Path, size=(64, 48), mode: str = "RGB") -> Path:
    """An image whose top-left quarter is black and the rest white-ish."""
    arr = np.full((size[1], size[0], 3), 230, dtype=np.uint8)
    arr[: size[1] * 3 // 10, : size[0] * 3 // 10] = 0
    im = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def make_dataset(root: Path, n: int = 2) -> list[dict[str, Any]]:
    """``n`` items alternating the two descriptions, each with its own (distinct) image."""
    items = []
    for i in range(n):
        write_image(root / f"img{i}.png", size=(64 + i, 48))
        items.append({"image": f"img{i}.png", "description": DESC_DOG if i % 2 == 0 else DESC_SKY, "id": f"s{i}"})
    return items
