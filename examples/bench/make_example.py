"""Rebuild the example bench: four scikit-image photos (two degraded on purpose), bench.jsonl
and example prediction files in giqa, Kosmos-2 and Qwen-VL formats.

Run from the repository root: ``.venv/bin/python examples/bench/make_example.py``. The answers
were written by hand for these images; boxes are normalised xyxy read off the pictures.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"


def make_images() -> None:
    from skimage import data

    IMAGES.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)

    def small(a: np.ndarray) -> Image.Image:
        im = Image.fromarray(a).convert("RGB")
        im.thumbnail((256, 256))
        return im

    # astronaut: mild defocus blur over the whole frame
    small(data.astronaut()).filter(ImageFilter.GaussianBlur(1.6)).save(IMAGES / "astronaut.jpg", quality=90)
    # coffee: heavy JPEG compression (blocking, colour banding)
    buf = io.BytesIO()
    small(data.coffee()).save(buf, format="JPEG", quality=5)
    Image.open(buf).convert("RGB").save(IMAGES / "coffee.jpg", quality=95)
    # chelsea: untouched (sharp face, naturally out-of-focus background)
    small(data.chelsea()).save(IMAGES / "chelsea.jpg", quality=90)
    # rocket: darkened and noisy, like a high-ISO night shot
    a = np.asarray(small(data.rocket()), dtype=np.float64) * 0.7
    a = np.clip(a + rng.normal(0, 14, a.shape), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(IMAGES / "rocket.jpg", quality=90)


# phrase -> boxes, normalised xyxy
R = {
    "astronaut": {
        "face": [(0.30, 0.03, 0.58, 0.38)],
        "helmet": [(0.54, 0.67, 0.97, 1.0)],
        "flag": [(0.0, 0.0, 0.17, 0.95)],
        "space shuttle model": [(0.68, 0.0, 0.92, 0.55)],
    },
    "coffee": {
        "cup": [(0.29, 0.03, 0.70, 0.72)],
        "saucer": [(0.12, 0.18, 0.80, 0.98)],
        "spoon": [(0.56, 0.18, 0.72, 0.82)],
    },
    "chelsea": {
        "eyes": [(0.30, 0.28, 0.46, 0.50), (0.64, 0.36, 0.77, 0.55)],
        "nose": [(0.51, 0.72, 0.61, 0.90)],
        "background": [(0.85, 0.0, 1.0, 1.0)],
    },
    "rocket": {
        "rocket": [(0.46, 0.30, 0.54, 0.97)],
        "lights": [(0.10, 0.82, 0.75, 1.0)],
        "sky": [(0.0, 0.0, 1.0, 0.78)],
    },
}

DES_Q = "Explore the quality factors of the image and offer an evaluation based on your insights. Note positions as [label](<x, y>)."

# (image, clean answer with [phrase] marks)
DES = {
    "astronaut": "The overall quality of this image is fair. The whole frame is slightly blurry, so the "
    "[face] of the astronaut lacks fine detail, although it is well lit and its colours are natural. "
    "The [helmet] shows a bright reflection, and the [flag] on the left is soft. The [space shuttle model] "
    "in the background is recognisable but its edges are not sharp.",
    "coffee": "The quality of this image is poor. Strong JPEG compression creates blocky artifacts and "
    "colour banding, especially on the [saucer] and the wooden table. The [cup] keeps its shape, but the "
    "crema's texture is smeared, and the [spoon]'s reflection is broken into blocks.",
    "chelsea": "This is a high-quality close-up. The cat's [eyes] are sharp and well-exposed, and the fur "
    "texture around the [nose] is clear. The [background] on the right is out of focus, which isolates the "
    "subject nicely. Overall, the image is clear and the colours are natural.",
    "rocket": "The quality of this night photo is low. The image is dark and very noisy: grain covers the "
    "[sky] and hides details of the towers. The [rocket] is visible but soft, and the [lights] at the bottom "
    "cause glare and overexposed spots.",
}

# (id suffix, image, kind, question with [phrase] marks, answer with [phrase] marks)
VQA = [
    ("y1", "astronaut", "yes_no", "Is the [face] sharp and full of fine detail?", "No."),
    ("y2", "astronaut", "yes_no", "Is the [face] well lit?", "Yes."),
    ("w1", "astronaut", "what", "What is the main quality problem of the image?", "The whole image is slightly blurry."),
    ("y3", "coffee", "yes_no", "Are there compression artifacts on the [saucer]?", "Yes."),
    ("y4", "coffee", "yes_no", "Is the texture of the [cup] clear and distinguishable?", "No."),
    ("w2", "coffee", "what", "What shows blocky artifacts in the image?", "The [saucer]."),
    ("y5", "chelsea", "yes_no", "Are the cat's [eyes] in focus?", "Yes."),
    ("y6", "chelsea", "yes_no", "Is the [background] sharp?", "No."),
    ("w3", "chelsea", "how", "How clear is the texture of the [nose]?", "Clear."),
    ("y7", "rocket", "yes_no", "Is the [sky] free of noise?", "No."),
    ("w4", "rocket", "why", "Why is the [rocket] hard to see?", "The image is dark and noisy."),
    ("w5", "rocket", "what", "What is overexposed in the image?", "The [lights]."),
]


def grounded(text: str, regions: dict, style: str = "giqa") -> str:
    """Replace ``[phrase]`` marks by grounded text in a model's format."""
    from giqa.geometry import GridCodec

    codec = GridCodec(20, 20)
    out = text
    for phrase, boxes in regions.items():
        mark = f"[{phrase}]"
        if mark not in out:
            continue
        if style == "giqa":
            idx = codec.encode(np.asarray(boxes, dtype=np.float64))
            rep = f"[{phrase}](" + ", ".join(f"<{int(a)}, {int(b)}>" for a, b in idx) + ")"
        elif style == "kosmos2":  # 32 x 32 patches, <phrase>..</phrase><object><patch_index_XXXX>...
            objs = []
            for x1, y1, x2, y2 in boxes:
                ul = min(int(y1 * 32), 31) * 32 + min(int(x1 * 32), 31)
                lr = min(int(np.ceil(y2 * 32)) - 1, 31) * 32 + min(int(np.ceil(x2 * 32)) - 1, 31)
                objs.append(f"<patch_index_{ul:04d}><patch_index_{lr:04d}>")
            rep = f"<phrase>{phrase}</phrase><object>" + "</delimiter_of_multi_objects/>".join(objs) + "</object>"
        elif style == "qwen-vl":  # <ref>..</ref><box>(x1,y1),(x2,y2)</box> in 0..1000
            bx = "".join(
                f"<box>({round(x1 * 1000)},{round(y1 * 1000)}),({round(x2 * 1000)},{round(y2 * 1000)})</box>"
                for x1, y1, x2, y2 in boxes
            )
            rep = f"<ref>{phrase}</ref>{bx}"
        elif style == "plain":
            rep = phrase
        else:
            raise ValueError(style)
        out = out.replace(mark, rep, 1)
    return re.sub(r"\[([^\[\]()]+)\](?!\()", r"\1", out)  # marks without boxes -> plain words


def samples() -> list[dict]:
    from giqa.text import parse_grounded
    from giqa.types import Sample

    out = []
    for image, text in DES.items():
        answer = grounded(text, R[image])
        out.append(Sample(id=f"{image}-des", image=f"images/{image}.jpg", task="des", question=DES_Q,
                          answer=answer, regions=tuple(parse_grounded(answer).to_phrases()),
                          meta={"source": "skimage.data." + image}))
    for suffix, image, kind, q, a in VQA:
        question, answer = grounded(q, R[image]), grounded(a, R[image])
        mode = "grounding" if "[" in a else ("referring" if "[" in q else None)
        regions = tuple(parse_grounded(question).to_phrases()) + tuple(parse_grounded(answer).to_phrases())
        out.append(Sample(id=f"{image}-{suffix}", image=f"images/{image}.jpg", task="vqa", question=question,
                          answer=answer, vqa_kind=kind, vqa_mode=mode, regions=regions,
                          meta={"source": "skimage.data." + image}))
    return [json.loads(s.model_dump_json(exclude_defaults=True)) for s in out]


# A plausible model's answers (some right, some wrong), written once, rendered in three formats.
PRED_DES = {
    "astronaut": "The image quality is fair. The [face] is well lit but slightly blurry, and the [helmet] "
    "has a strong highlight. The [flag] is soft.",
    "coffee": "The quality is poor because of heavy compression. Blocky artifacts cover the [saucer] and "
    "the [cup], and the texture is smeared.",
    "chelsea": "The image is sharp and clear. The cat's [eyes] are in focus, and the [background] is blurred.",
    "rocket": "The photo is dark and noisy. The [rocket] is soft, and the [lights] cause glare.",
}
PRED_VQA = {
    "astronaut-y1": "No, it is slightly blurry.",
    "astronaut-y2": "Yes.",
    "astronaut-w1": "The image is blurry.",
    "coffee-y3": "Yes, there are blocky artifacts.",
    "coffee-y4": "Yes.",
    "coffee-w2": "The [saucer].",
    "chelsea-y5": "Yes.",
    "chelsea-y6": "No.",
    "chelsea-w3": "It is clear.",
    "rocket-y7": "I am not sure.",
    "rocket-w4": "Because it is dark.",
    "rocket-w5": "The [lights] at the bottom.",
}
# the example model is a little off on some boxes
PRED_R = {
    "astronaut": {"face": [(0.32, 0.05, 0.60, 0.40)], "helmet": [(0.50, 0.70, 1.0, 1.0)], "flag": [(0.0, 0.10, 0.20, 0.90)]},
    "coffee": {"saucer": [(0.10, 0.20, 0.82, 0.95)], "cup": [(0.30, 0.05, 0.68, 0.70)]},
    "chelsea": {"eyes": [(0.30, 0.30, 0.48, 0.50), (0.62, 0.36, 0.78, 0.56)], "background": [(0.80, 0.0, 1.0, 1.0)]},
    "rocket": {"rocket": [(0.45, 0.25, 0.55, 0.95)], "lights": [(0.05, 0.80, 0.80, 1.0)]},
}


def predictions(style: str) -> list[dict]:
    out = []
    for image, text in PRED_DES.items():
        ans = grounded(text, PRED_R[image], style)
        if style == "kosmos2":
            ans = "<grounding> " + ans
        out.append({"id": f"{image}-des", "answer": ans, "model": f"example-{style}"})
    for sid, text in PRED_VQA.items():
        ans = grounded(text, PRED_R[sid.split("-")[0]], style)
        out.append({"id": sid, "answer": ans, "model": f"example-{style}"})
    return out


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def main() -> None:
    make_images()
    write_jsonl(HERE / "bench.jsonl", samples())
    for style, name in (("giqa", "predictions.giqa.jsonl"), ("kosmos2", "predictions.kosmos2.jsonl"),
                        ("qwen-vl", "predictions.qwen-vl.jsonl"), ("plain", "predictions.plain.jsonl")):
        write_jsonl(HERE / name, predictions(style))
    print(f"wrote {HERE}")


if __name__ == "__main__":
    main()
