"""GroundingDinoDetector through its real code path on a tiny random-weight Grounding DINO."""

from __future__ import annotations

import functools
import inspect
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

from giqa.errors import BackendError, MissingDependencyError  # noqa: E402
from giqa.models import Detector, create  # noqa: E402
from giqa.models.grounding_dino import (  # noqa: E402
    GroundingDinoDetector,
    _clean_phrase,
    _phrase_spans,
    post_process_kwargs,
)
from gdino_reference import reference_detect  # noqa: E402

pytestmark = pytest.mark.slow


def _image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), "RGB")


@pytest.fixture(scope="module")
def detector(tiny_grounding_dino_dir):
    det = GroundingDinoDetector(model_id=str(tiny_grounding_dino_dir), box_threshold=0.3, text_threshold=0.25)
    yield det
    det.close()


PHRASES = [["a dog", "the blurry sky"], ["a cat"], ["tree", "grass", "the man wearing a white t-shirt"]]


def _flat(out):
    return [[[(d.box.as_tuple(), d.score, d.phrase) for d in dets] for dets in per] for per in out]


@functools.lru_cache(maxsize=None)
def _reference_model(path):
    transformers = pytest.importorskip("transformers")
    processor = transformers.AutoProcessor.from_pretrained(path)
    model = transformers.GroundingDinoForObjectDetection.from_pretrained(path).eval()
    return processor, model


def _assert_close(a, b):
    assert len(a) == len(b)
    for pa, pb in zip(a, b):
        assert len(pa) == len(pb)
        for da, db in zip(pa, pb):
            assert len(da) == len(db)
            for (ba, sa, pha), (bb, sb, phb) in zip(da, db):
                assert pha == phb
                assert sa == pytest.approx(sb, abs=1e-5)
                np.testing.assert_allclose(ba, bb, atol=1e-5)


def test_protocol_and_random_weights(detector):
    assert isinstance(detector, Detector)
    assert detector.random_weights is True
    assert not detector.loaded  # lazy: nothing loaded before the first call


def test_output_structure_and_boxes(detector):
    images = [_image(64, 48, 0), _image(64, 48, 1), _image(64, 48, 2)]
    out = detector.detect(images, PHRASES)
    assert [len(per) for per in out] == [2, 1, 3]
    total = 0
    for per, phrases in zip(out, PHRASES):
        for dets, phrase in zip(per, phrases):
            scores = [d.score for d in dets]
            assert scores == sorted(scores, reverse=True)
            for d in dets:
                total += 1
                assert d.phrase == phrase
                assert 0.3 < d.score <= 1.0
                x1, y1, x2, y2 = d.box.as_tuple()
                assert 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1
    assert total > 0  # random weights score high: there is something to check


@pytest.mark.parametrize("sizes", [[(64, 48)] * 3, [(64, 48), (90, 30), (50, 70)]], ids=["same-size", "mixed-size"])
def test_batching_matches_unbatched(detector, sizes):
    images = [_image(w, h, i) for i, (w, h) in enumerate(sizes)]
    batched = detector.detect(images, PHRASES)
    single = [detector.detect([im], [ph])[0] for im, ph in zip(images, PHRASES)]
    _assert_close(_flat(batched), _flat(single))


def test_pad_batches_runs_mixed_sizes(tiny_grounding_dino_dir):
    det = GroundingDinoDetector(model_id=str(tiny_grounding_dino_dir), pad_batches=True, box_threshold=0.3)
    images = [_image(64, 48, 0), _image(90, 30, 1)]
    out = det.detect(images, [["a dog"], ["a cat", "sky"]])
    assert [len(p) for p in out] == [1, 2]


def test_thresholds_and_max_detections(tiny_grounding_dino_dir, detector):
    images = [_image(64, 48, 3)]
    low = detector.detect(images, [["a dog"]])[0][0]
    strict = GroundingDinoDetector(model_id=str(tiny_grounding_dino_dir), box_threshold=0.9, max_detections=2)
    high = strict.detect(images, [["a dog"]])[0][0]
    assert len(high) <= 2
    assert all(d.score > 0.9 for d in high)
    low_boxes = {(d.box.as_tuple(), round(d.score, 6)) for d in low}
    assert {(d.box.as_tuple(), round(d.score, 6)) for d in high} <= low_boxes


def test_empty_and_punctuation_phrases(detector):
    out = detector.detect([_image(64, 48, 0), _image(64, 48, 1)], [[], ["", "...", "a dog. really?"]])
    assert out[0] == []
    assert out[1][0] == [] and out[1][1] == []
    assert all(d.phrase == "a dog. really?" for d in out[1][2])  # original phrase reported
    assert detector.detect([], []) == []


def test_phrase_helpers():
    assert _clean_phrase(" the st. louis  arch? ") == "the st louis arch"
    ids = [101, 7, 8, 1012, 9, 1012, 102, 0, 0]
    assert _phrase_spans(ids, [1] * 7 + [0, 0]) == [(1, 3), (4, 5)]


def test_bad_input(detector):
    with pytest.raises(ValueError, match="2 images but 1 phrase"):
        detector.detect([_image(8, 8, 0), _image(8, 8, 1)], [["x"]])
    with pytest.raises(TypeError, match="PIL"):
        detector.detect([np.zeros((8, 8, 3))], [["x"]])
    with pytest.raises(TypeError, match="list of strings"):
        detector.detect([_image(8, 8, 0)], ["a dog"])


def test_grayscale_and_rgba_images(detector):
    gray = _image(40, 30, 0).convert("L")
    rgba = _image(40, 30, 1).convert("RGBA")
    out = detector.detect([gray, rgba], [["sky"], ["sky"]])
    assert len(out) == 2


def test_post_process_kwargs_handles_both_signatures():
    def v5(outputs, input_ids=None, threshold=0.25, text_threshold=0.25, target_sizes=None, text_labels=None): ...

    def v4(outputs, input_ids, box_threshold=0.25, text_threshold=0.25, target_sizes=None): ...

    def unknown(outputs, cutoff=0.5): ...

    assert post_process_kwargs(v5, box_threshold=0.4, text_threshold=0.3, input_ids="ids") == {
        "threshold": 0.4, "text_threshold": 0.3, "input_ids": "ids"}
    assert post_process_kwargs(v4, box_threshold=0.4, text_threshold=0.3, input_ids="ids") == {
        "box_threshold": 0.4, "text_threshold": 0.3, "input_ids": "ids"}
    with pytest.raises(BackendError, match="threshold"):
        post_process_kwargs(unknown, box_threshold=0.4, text_threshold=0.3, input_ids=None)


def test_installed_post_processor_signature_is_understood(detector, tiny_grounding_dino_dir):
    transformers = pytest.importorskip("transformers")
    proc = transformers.AutoProcessor.from_pretrained(tiny_grounding_dino_dir)
    fn = proc.post_process_grounded_object_detection
    kwargs = post_process_kwargs(fn, box_threshold=0.1, text_threshold=0.2, input_ids=None)
    assert set(kwargs) <= set(inspect.signature(fn).parameters)


def test_load_failure_is_backend_error(tmp_path):
    det = GroundingDinoDetector(model_id=str(tmp_path / "missing"), local_files_only=True)
    with pytest.raises(BackendError, match="missing") as info:
        det.detect([_image(8, 8, 0)], [["x"]])
    assert info.value.__cause__ is not None


def test_registry_create(tiny_grounding_dino_dir):
    det = create("detector", "grounding-dino", model_id=str(tiny_grounding_dino_dir), box_threshold=0.5)
    assert isinstance(det, GroundingDinoDetector) and det.settings.box_threshold == 0.5
    assert GroundingDinoDetector().model_id == "IDEA-Research/grounding-dino-base"
    with pytest.raises(ValueError):
        create("detector", "grounding-dino", box_threshold=2.0)


def test_missing_dependency_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    det = GroundingDinoDetector(model_id=str(tmp_path))
    with pytest.raises(MissingDependencyError, match=r'giqa\[models\]'):
        det.load()


def test_overlong_phrase_is_a_value_error(detector):
    with pytest.raises(ValueError, match="at most"):
        detector.detect([_image(16, 16, 0)], [["blurry " * 400]])


def test_many_phrases_split_over_passes(detector, tiny_grounding_dino_dir):
    phrases = [f"blurry sky {k}" for k in range(80)]  # > 256 tokens in total
    rows = detector._prompts.rows([phrases])
    assert len(rows) >= 2 and sorted(j for r in rows for j in r.phrases) == list(range(80))
    assert all(len(r.ids) <= detector.max_text_len for r in rows)
    image = _image(32, 32, 0)
    out = detector.detect([image], [phrases])
    assert len(out[0]) == 80
    processor, model = _reference_model(tiny_grounding_dino_dir)
    ref = reference_detect(processor, model, [image], [phrases], box_threshold=0.3, text_threshold=0.25)
    _assert_close(_flat(out), ref)
