"""Regenerate the tiny synthetic source files in ``examples/sources/`` (already committed).

They follow the published layouts exactly, so the readers and ``examples/build_giqa160k.py``
run offline on them:

* ``q-instruct/cleaned_labels.json`` plus ``q-instruct/spaq_koniq/`` and
  ``q-instruct/livefb_liveitw_aigc/``: Q-Instruct's LLaVA records (``id``, ``image``,
  ``conversations``), with seven Q-Pathway-style quality descriptions (one per sub-dataset
  file-name pattern) and three records the reader must skip (a Yes/No question, a
  multiple-choice question, a multi-turn conversation).
* ``DataDepictQA/KADIS700K/A_sd_detail/metas/train_A_sd_detail_20k.json`` and
  ``.../A_md_detail/metas/train_A_md_detail_8k.json``: DepictQA metas (``image_A``,
  ``task_type``, ``conversations``, ``distortion_*``), distorted images under
  ``KADIS700K/refA_{sd,md}_detail/dist_imgs/``, and one brief record the reader must skip.

Images are small crops of scikit-image's sample photos (public domain / CC0), downscaled; the
degraded ones get real blur, noise and JPEG artefacts. The descriptions were written for these
crops in the style of the sources. ``tags.jsonl`` (hand-written {T_r, T_q, T_e} tags of these
descriptions, keyed by the item image path under ``examples/sources``) is not generated here:
``examples/build_giqa160k.py`` uses it with ``tiny-random``, whose random LLM writes no JSON.
Run: ``.venv/bin/python examples/sources/make_sources.py``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent


def _photo(name: str, size: tuple[int, int]) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    im = Image.fromarray(arr)
    if im.mode != "RGB":
        im = im.convert("RGB")
    im.thumbnail(size, Image.Resampling.LANCZOS)
    return im


def _save(im: Image.Image, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _noise(im: Image.Image, sigma: float, seed: int) -> Image.Image:
    a = np.asarray(im, dtype=np.float32)
    a = a + np.random.default_rng(seed).normal(0.0, sigma, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _llava(rid: str, image: str, human: str, gpt: str) -> dict:
    return {"id": rid, "image": image,
            "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]}


Q_PROMPT = "<image>\nDescribe and evaluate the quality of the image."

Q_RECORDS = [
    ("spaq_koniq/00003.jpg", "coffee", (96, 64),
     "The image shows a cup of coffee on a saucer with a spoon beside it. The cup and the "
     "saucer are sharp and the foam on the coffee keeps fine texture. The lighting is warm "
     "and even, although the table at the bottom is slightly dark. There is little noise. "
     "Overall, the quality of the image is good."),
    ("spaq_koniq/00017.jpg", "rocket", (96, 64),
     "A rocket stands on the launch pad under a pale sky. The rocket is clear, but the "
     "tower next to it loses detail in its thin beams and the sky is a little overexposed. "
     "Colors are natural and there is no visible compression. Overall, the quality of the "
     "image is acceptable."),
    ("spaq_koniq/10004473376.jpg", "chelsea", (96, 64),
     "The photo shows a cat looking to the side. The face of the cat is in focus and its "
     "fur shows fine texture, while the background is blurry, which separates the subject. "
     "The exposure is balanced and colors look natural. Overall, the quality of the image "
     "is good."),
    ("livefb_liveitw_aigc/AVA__149.jpg", "astronaut", (64, 64),
     "The image is a portrait of an astronaut holding a helmet in front of a flag. The face "
     "of the astronaut is clear and well lit, but the flag behind is somewhat soft and the "
     "white suit is slightly overexposed. The colors are vivid. Overall, the quality of "
     "the image is fairly good."),
    ("livefb_liveitw_aigc/1023.JPG", "coins", (96, 72),
     "Several coins lie on a dark surface. The image is grayscale and low in contrast, the "
     "coins in the lower row are blurry and their engravings are hard to read, and the "
     "background shows some noise. The lighting is dim. Overall, the quality of the image "
     "is poor."),
    ("livefb_liveitw_aigc/AttnGAN_normal_000.jpg", "colorwheel", (64, 64),
     "This AI-generated image shows a color wheel on a white background. The colors of the "
     "wheel are saturated and blend smoothly, but the edge of the wheel shows jagged "
     "artifacts and the center is slightly distorted. There is no noise. Overall, the "
     "quality of the image is average."),
    ("livefb_liveitw_aigc/4f1c2a9e-7b3d-4e8a-9c21-5d6e7f8a9b0c.jpg", "hubble_deep_field", (64, 64),
     "The AI-generated image shows a field of galaxies in dark space. The bright galaxies "
     "are clear with visible spiral structure, while the faint galaxies are blurry and "
     "merge with noise in the dark background. The contrast is high. Overall, the quality "
     "of the image is moderate."),
]

Q_SKIPPED = [
    # Yes/No VQA, multiple choice and a multi-turn conversation: not Q-Pathway descriptions.
    _llava("qvqa-0001", "spaq_koniq/00003.jpg", "<image>\nIs the cup of coffee clear?",
           "Yes, the cup of coffee is clear."),
    {"id": "qmcq-0002", "image": "livefb_liveitw_aigc/1023.JPG",
     "conversations": [{"from": "human", "value": "<image>\nHow is the lighting of the image?\nA. dim\nB. bright\nC. balanced"},
                       {"from": "gpt", "value": "A. dim"}]},
    {"id": "qconv-0003", "image": "spaq_koniq/10004473376.jpg",
     "conversations": [{"from": "human", "value": "<image>\nIs the cat in focus?"},
                       {"from": "gpt", "value": "Yes, the face of the cat is in focus."},
                       {"from": "human", "value": "And the background?"},
                       {"from": "gpt", "value": "The background is blurry."}]},
]

DQ_PROMPT = "Could you assess the overall quality of the image and elaborate on your evaluation?"

DQ_SD = [
    ("000123_0", "camera", "blur", "blur_gaussian", 3,
     "The image of a photographer with a camera on a tripod suffers from noticeable "
     "Gaussian blur. The edges of the man and the tripod are soft, and the texture of the "
     "grass is lost. The overall brightness and contrast are acceptable. Because the blur "
     "removes fine details, the quality of the image is poor."),
    ("000456_0", "astronaut", "noise", "noise_gaussian_RGB", 4,
     "Strong Gaussian noise covers the whole image of an astronaut. The face and the suit "
     "are still recognizable, but colored grain hides the texture of the skin and the flag "
     "in the background. The noise is most visible in the flat white areas of the suit. "
     "The quality of the image is low."),
    ("000789_0", "chelsea", "compression", "compression_jpeg", 5,
     "The image of a cat shows severe JPEG compression. Blocking artifacts appear across "
     "the fur and the background, and the edges of the ears show ringing. Fine texture of "
     "the fur is lost and colors are shifted in small blocks. The quality of the image is "
     "very poor."),
]

DQ_MD = [
    ("001024_0", "coffee", ["blur", "noise"], ["blur_motion", "noise_speckle"], [2, 2],
     "The image of a cup of coffee is affected by mild motion blur and speckle noise. The "
     "rim of the cup is doubled slightly in the horizontal direction, and grain is visible "
     "on the saucer and the dark table. The colors are still natural. Overall, the quality "
     "of the image is below average."),
]


def main() -> None:
    q_dir = HERE / "q-instruct"
    records = []
    for n, (rel, photo, size, text) in enumerate(Q_RECORDS):
        im = _photo(photo, size)
        if rel.endswith("1023.JPG"):
            im = im.convert("L").convert("RGB")
        _save(im, q_dir / rel, format="JPEG", quality=88)
        records.append(_llava(f"qpath-{n:04d}", rel, Q_PROMPT, text))
    records[2:2] = Q_SKIPPED  # skipped records sit between descriptions, as in the real file
    (q_dir / "cleaned_labels.json").write_text(json.dumps(records, indent=2) + "\n")

    dq = HERE / "DataDepictQA"
    sd_metas = []
    for name, photo, cls, dname, sev, text in DQ_SD:
        im = _photo(photo, (64, 64))
        if cls == "blur":
            im = im.filter(ImageFilter.GaussianBlur(2.0))
        elif cls == "noise":
            im = _noise(im, 40.0, seed=1)
        else:
            im = _jpeg(im, quality=5)
        rel = f"KADIS700K/refA_sd_detail/dist_imgs/{name}.png"
        _save(im, dq / rel, format="PNG")
        sd_metas.append({
            "distortion_class": cls, "distortion_name": dname, "severity": sev,
            "id": name, "image_ref": None, "image_A": rel, "image_B": None,
            "task_type": "quality_single_A_noref",
            "conversations": [{"from": "human", "value": DQ_PROMPT}, {"from": "gpt", "value": text}],
        })
    # a brief distortion-identification record (one-word answer): skipped by the reader
    sd_metas.append({
        "distortion_class": "blur", "distortion_name": "blur_gaussian", "severity": 3,
        "id": "000123_0", "image_ref": None, "image_A": "KADIS700K/refA_sd_detail/dist_imgs/000123_0.png",
        "image_B": None, "task_type": "quality_single_A_noref",
        "conversations": [{"from": "human", "value": "What is the most severe distortion in this image?"},
                          {"from": "gpt", "value": "blur"}],
    })
    md_metas = []
    for name, photo, classes, names, sevs, text in DQ_MD:
        im = _noise(_photo(photo, (64, 64)).filter(ImageFilter.BoxBlur(1)), 18.0, seed=2)
        rel = f"KADIS700K/refA_md_detail/dist_imgs/{name}.png"
        _save(im, dq / rel, format="PNG")
        md_metas.append({
            "distortion_classes": classes, "distortion_names": names, "severities": sevs,
            "id": name, "image_ref": None, "image_A": rel, "image_B": None,
            "task_type": "quality_single_A_noref",
            "conversations": [{"from": "human", "value": DQ_PROMPT}, {"from": "gpt", "value": text}],
        })
    for sub, metas, fname in (("A_sd_detail", sd_metas, "train_A_sd_detail_20k.json"),
                              ("A_md_detail", md_metas, "train_A_md_detail_8k.json")):
        path = dq / "KADIS700K" / sub / "metas" / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metas, indent=4) + "\n")  # DepictQA writes indent=4
    print(f"wrote {len(records)} Q-Instruct records and {len(sd_metas) + len(md_metas)} DepictQA metas")


if __name__ == "__main__":
    main()
