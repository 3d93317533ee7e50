"""LlavaQualityFilter and LlavaVLM through their real code paths on a tiny random LLaVA."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

from giqa.errors import BackendError  # noqa: E402
from giqa.models import QualityFilter, VisionLanguageModel, create  # noqa: E402
from giqa.models.llava_filter import LlavaQualityFilter  # noqa: E402
from giqa.models.llava_vlm import LlavaVLM  # noqa: E402

pytestmark = pytest.mark.slow

QUESTIONS = [
    "Is the image quality blurry?",
    "Is the image quality of the sky overexposed?",
    "Is the image quality of the man wearing a white t-shirt noisy?",
]


def _crops():
    rng = np.random.default_rng(0)
    sizes = [(20, 30), (40, 40), (8, 50)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB") for h, w in sizes]


@pytest.fixture(scope="module")
def qfilter(tiny_llava_dir):
    f = LlavaQualityFilter(model_id=str(tiny_llava_dir), batch_size=3)
    yield f
    f.close()


@pytest.fixture(scope="module")
def vlm(tiny_llava_dir):
    v = LlavaVLM(model_id=str(tiny_llava_dir), batch_size=3)
    yield v
    v.close()


def test_filter_protocol(qfilter):
    assert isinstance(qfilter, QualityFilter) and qfilter.random_weights


def test_filter_p_yes_is_the_yes_no_softmax_of_the_logits(qfilter, tiny_llava_dir):
    crops = _crops()
    p = qfilter.p_yes(crops, QUESTIONS)
    assert len(p) == 3 and all(0.0 <= x <= 1.0 for x in p)
    # By hand, one crop at a time, straight from transformers (no giqa code in between).
    proc = transformers.AutoProcessor.from_pretrained(tiny_llava_dir)
    model = transformers.LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir).eval()
    yes = proc.tokenizer.convert_tokens_to_ids("Yes")
    no = proc.tokenizer.convert_tokens_to_ids("No")
    assert (qfilter.yes_id, qfilter.no_id) == (yes, no)
    for crop, q, got in zip(crops, QUESTIONS, p):
        conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q + qfilter.settings.prompt_suffix}]}]
        prompt = proc.apply_chat_template(conv, add_generation_prompt=True)
        side = max(crop.size)  # LLaVA-1.5's expand2square with the processor's mean colour, by hand
        square = Image.new("RGB", (side, side), tuple(int(m * 255) for m in proc.image_processor.image_mean))
        square.paste(crop, ((side - crop.width) // 2, (side - crop.height) // 2))
        inputs = proc(images=[square], text=[prompt], return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        expected = torch.softmax(torch.stack([logits[yes], logits[no]]), dim=0)[0].item()
        assert got == pytest.approx(expected, abs=1e-5)


def test_filter_batching_matches_unbatched(qfilter):
    crops = _crops()
    batched = qfilter.p_yes(crops, QUESTIONS)
    single = [qfilter.p_yes([c], [q])[0] for c, q in zip(crops, QUESTIONS)]
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_filter_inputs(qfilter):
    assert qfilter.p_yes([], []) == []
    with pytest.raises(ValueError, match="1 images but 2 questions"):
        qfilter.p_yes(_crops()[:1], QUESTIONS[:2])
    with pytest.raises(TypeError):
        qfilter.p_yes(_crops()[:1], "Is it blurry?")
    gray = _crops()[0].convert("L")
    assert 0.0 <= qfilter.p_yes([gray], ["Is it blurry?"])[0] <= 1.0


def test_filter_rejects_multi_token_answers(tiny_llava_dir):
    f = LlavaQualityFilter(model_id=str(tiny_llava_dir), yes_token="Yes indeed")
    with pytest.raises(BackendError, match="single tokens"):
        f.p_yes(_crops()[:1], QUESTIONS[:1])


def test_vlm_answers_deterministic_and_batch_invariant(vlm):
    assert isinstance(vlm, VisionLanguageModel) and vlm.random_weights
    crops = _crops()
    a = vlm.answer(crops, QUESTIONS, max_new_tokens=5)
    assert a == vlm.answer(crops, QUESTIONS, max_new_tokens=5)
    assert all(isinstance(t, str) for t in a)
    assert [vlm.answer([c], [q], max_new_tokens=5)[0] for c, q in zip(crops, QUESTIONS)] == a
    assert vlm.answer([], []) == []


def test_vlm_loads_a_trained_checkpoint_directory(tiny_llava_dir, tmp_path):
    # A "trained" checkpoint: same architecture, weights changed, saved by save_pretrained.
    model = transformers.LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir)
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.0)
    out = tmp_path / "trained"
    model.save_pretrained(out)
    transformers.AutoProcessor.from_pretrained(tiny_llava_dir).save_pretrained(out)
    trained = LlavaVLM(model_id=str(out))
    assert trained.random_weights is False  # no tiny marker: it's someone's checkpoint
    original = LlavaVLM(model_id=str(tiny_llava_dir))
    crops = _crops()[:1]
    a = trained.answer(crops, QUESTIONS[:1], max_new_tokens=4)
    b = original.answer(crops, QUESTIONS[:1], max_new_tokens=4)
    assert a != b
    shutil.rmtree(out)


def test_registry_create_and_defaults(tiny_llava_dir):
    assert isinstance(create("filter", "llava", model_id=str(tiny_llava_dir)), LlavaQualityFilter)
    assert isinstance(create("vlm", "llava.v1", model_id=str(tiny_llava_dir)), LlavaVLM)
    assert LlavaQualityFilter().model_id == "llava-hf/llava-1.5-7b-hf"
    assert LlavaVLM().model_id == "llava-hf/llava-1.5-7b-hf"


# -- image geometry: the red left quarter reaches the vision tower ------------------------------
def _capture_pixels(backend):
    """Register a hook on the vision tower that records the pixel values it is given."""
    seen = []
    tower = next(m for n, m in backend.model.named_modules() if n.endswith("vision_tower"))

    def hook(module, args, kwargs):
        seen.append(kwargs.get("pixel_values", args[0] if args else None))

    return seen, tower.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("role", ["filter", "vlm"])
@pytest.mark.parametrize("aspect, keeps_red", [("pad", True), ("crop", False), ("native", False)])
def test_backends_keep_the_red_left_quarter_when_padded(tiny_llava_dir, role, aspect, keeps_red):
    from image_checks import red_fraction, red_left_quarter

    cls = LlavaQualityFilter if role == "filter" else LlavaVLM
    backend = cls(model_id=str(tiny_llava_dir), image_aspect=aspect)
    try:
        backend.load()
        seen, handle = _capture_pixels(backend)
        if role == "filter":
            backend.p_yes([red_left_quarter()], ["Is the image quality blurry?"])
        else:
            backend.answer([red_left_quarter()], ["Describe."], max_new_tokens=1)
        handle.remove()
        share = red_fraction(seen[0][0], backend.processor.image_processor)
        assert (0.1 < share < 0.15) if keeps_red else share == 0.0
        assert backend.model_info()["image_aspect"] == aspect
    finally:
        backend.close()


def test_default_image_aspect_is_pad_everywhere():
    from giqa.train import TrainConfig

    assert LlavaQualityFilter().settings.image_aspect == "pad" == LlavaVLM().settings.image_aspect
    assert TrainConfig(data=["x.jsonl"], image_root=".", output_dir="o").image_aspect == "pad"


def test_interleave_siglip_processor_pads_too(tiny_llava_interleave_dir):
    from image_checks import red_fraction, red_left_quarter

    vlm = LlavaVLM(model_id=str(tiny_llava_interleave_dir))
    try:
        inputs = vlm.load().encode([red_left_quarter()], ["Describe."])
        assert 0.1 < red_fraction(inputs["pixel_values"][0], vlm.processor.image_processor) < 0.15
        assert vlm.answer([red_left_quarter()], ["Describe."], max_new_tokens=2)[0] is not None
    finally:
        vlm.close()
