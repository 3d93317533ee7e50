"""The planned LLaVA backends against the slow reference (tests/llava_reference.py).

The filter sorts pairs by length, preprocesses each distinct crop once (in prefetch threads),
and runs a crop's shared prefix once for all its questions; the VLM sorts by length and
prefetches. Same tiny random-weight models, same crops: P(Yes) must equal the reference's
(float32, up to rounding) and greedy answers must be identical, for several questions per
crop, crops of mixed sizes and aspect ratios (one 3 px tall), equal crops given as different
objects, and questions of different lengths (left padding), at several batch sizes.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

import llava_reference as ref  # noqa: E402
from giqa.models.llava_filter import LlavaQualityFilter  # noqa: E402
from giqa.models.llava_vlm import LlavaVLM  # noqa: E402

pytestmark = pytest.mark.slow

QUESTIONS = [
    "Is the image quality blurry?",
    "Is the image quality of the sky overexposed?",
    "Is the image quality of the man wearing a white t-shirt on the left noisy and dark?",
    "Is it sharp?",
]
# (crop index, question index) pairs in a scrambled order; crop 5 is a copy of crop 0
PAIRS = [(0, 0), (2, 3), (0, 2), (1, 1), (3, 0), (5, 1), (2, 2), (4, 3), (0, 1), (4, 0), (3, 2)]


def _workload():
    rng = np.random.default_rng(7)
    sizes = [(20, 30), (40, 40), (8, 50), (33, 17), (3, 40)]  # (height, width)
    crops = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB") for h, w in sizes]
    crops.append(crops[0].copy())
    return [crops[c] for c, _ in PAIRS], [QUESTIONS[q] for _, q in PAIRS]


@pytest.fixture(scope="module", params=["llava-1.5", "interleave"])
def model_dir(request, tiny_llava_dir, tiny_llava_interleave_dir):
    return tiny_llava_dir if request.param == "llava-1.5" else tiny_llava_interleave_dir


@pytest.fixture(scope="module")
def reference(model_dir):
    processor, model = ref.load(model_dir)
    return processor, model


def _reference_p_yes(reference, crops, questions, batch_size, aspect="pad"):
    processor, model = reference
    return ref.p_yes(processor, model, crops, questions, suffix=LlavaQualityFilter().settings.prompt_suffix,
                     batch_size=batch_size, aspect=aspect)


@pytest.mark.parametrize("batch_size, prefetch", [(1, 0), (3, 2), (4, 0), (16, 1)])
def test_filter_equals_the_reference(model_dir, reference, batch_size, prefetch):
    crops, questions = _workload()
    expected_one = _reference_p_yes(reference, crops, questions, batch_size=1)
    expected_padded = _reference_p_yes(reference, crops, questions, batch_size=4)  # left padding in the reference
    with LlavaQualityFilter(model_id=str(model_dir), batch_size=batch_size, prefetch=prefetch) as qf:
        got = qf.p_yes(crops, questions)
    np.testing.assert_allclose(got, expected_one, atol=1e-5)
    np.testing.assert_allclose(got, expected_padded, atol=1e-5)
    assert len(set(np.round(got, 6))) > 3  # the pairs really differ (the test can fail)


def test_filter_crop_aspect_equals_the_reference(tiny_llava_dir):
    crops, questions = _workload()
    expected = _reference_p_yes(ref.load(tiny_llava_dir), crops, questions, batch_size=2, aspect="crop")
    with LlavaQualityFilter(model_id=str(tiny_llava_dir), batch_size=8, image_aspect="crop") as qf:
        np.testing.assert_allclose(qf.p_yes(crops, questions), expected, atol=1e-5)


def test_filter_processor_path_equals_the_planned_path(tiny_llava_dir):
    """Where giqa cannot prepare a model's inputs itself, every batch goes through the processor."""
    crops, questions = _workload()
    with LlavaQualityFilter(model_id=str(tiny_llava_dir), batch_size=4) as qf:
        planned = qf.p_yes(crops, questions)
        qf._image_tokens, qf._cache_kwarg = None, None  # as for a processor giqa does not know
        assert all(b.ids is None and b.prefix is None for b in qf._plan(crops, questions))
        np.testing.assert_allclose(qf.p_yes(crops, questions), planned, atol=1e-5)


def _count_work(qf):
    """Images seen by the vision tower and positions run by the language model, per call."""
    seen = {"images": 0, "positions": 0}
    modules = dict(qf.model.named_modules())
    tower = next(m for n, m in modules.items() if n.endswith("vision_tower"))
    lm = next(m for n, m in modules.items() if n.endswith("language_model"))

    def count_images(module, args, kwargs):
        seen["images"] += (kwargs.get("pixel_values", args[0] if args else None)).shape[0]

    def count_positions(module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        seen["positions"] += embeds.shape[0] * embeds.shape[1]

    handles = [tower.register_forward_pre_hook(count_images, with_kwargs=True),
               lm.register_forward_pre_hook(count_positions, with_kwargs=True)]
    return seen, handles


def test_filter_encodes_each_distinct_crop_once(tiny_llava_dir):
    crops, questions = _workload()
    with LlavaQualityFilter(model_id=str(tiny_llava_dir), batch_size=16) as qf:
        qf.load()
        seen, handles = _count_work(qf)
        qf.p_yes(crops, questions)
        for h in handles:
            h.remove()
        n_crops = 5  # six crops, one a copy of another
        assert seen["images"] == n_crops
        ids = qf.prompt_ids([q + qf.settings.prompt_suffix for q in questions])
        image_id, per_image, _ = qf._image_tokens
        prefix = max(k for k, t in enumerate(ids[0]) if t == image_id) + 1
        longest_suffix = max(len(x) for x in ids) - prefix
        assert prefix > per_image and seen["positions"] == n_crops * prefix + len(crops) * longest_suffix
        # one padded pass over all pairs would run len(crops) * the longest prompt
        assert seen["positions"] < len(crops) * max(len(x) for x in ids) - (len(crops) - n_crops) * per_image


def test_filter_batches_are_sorted_and_keep_a_crops_questions_together(tiny_llava_dir):
    crops, questions = _workload()
    with LlavaQualityFilter(model_id=str(tiny_llava_dir), batch_size=4) as qf:
        qf.load()
        plan = qf._plan(crops, [q + qf.settings.prompt_suffix for q in questions])
    assert sorted(r for b in plan for r in b.rows) == list(range(len(crops)))
    assert all(len(b.rows) <= 4 for b in plan)
    where = {r: k for k, b in enumerate(plan) for r in b.rows}
    for c in (0, 2, 3, 4):  # crops with several questions (crop 0 also through its copy)
        assert len({where[r] for r, (cc, _) in enumerate(PAIRS) if cc == c or (c == 0 and cc == 5)}) == 1
    longest = [max(len(x) for x in b.ids) for b in plan]
    assert longest == sorted(longest, reverse=True)


@pytest.mark.parametrize("batch_size, prefetch", [(1, 0), (3, 2), (8, 0)])
def test_vlm_greedy_answers_equal_the_reference(model_dir, reference, batch_size, prefetch):
    crops, questions = _workload()
    processor, model = reference
    expected = ref.answers(processor, model, crops, questions, batch_size=1, max_new_tokens=4)
    assert ref.answers(processor, model, crops, questions, batch_size=3, max_new_tokens=4) == expected
    with LlavaVLM(model_id=str(model_dir), batch_size=batch_size, prefetch=prefetch) as vlm:
        assert vlm.answer(crops, questions, max_new_tokens=4) == expected
