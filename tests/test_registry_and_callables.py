"""Backend registry (names, versions, entry points) and the in-memory callable backends."""

import numpy as np
import pytest

from giqa.errors import BackendError, RegistryError
from giqa.models import (
    CallableDetector,
    CallableEmbedder,
    CallableLLM,
    CallableQualityFilter,
    CallableVLM,
    Detection,
    Detector,
    Embedder,
    LLM,
    QualityFilter,
    VisionLanguageModel,
    registry,
)
from giqa.models.callable import scripted


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_registry", {k: dict(v) for k, v in registry._BUILTIN.items()})
    monkeypatch.setattr(registry, "_entry_points_loaded", True)
    return registry


def test_builtin_names_listed(clean_registry):
    assert "grounding-dino.v1" in registry.available("detector")
    assert "openai.v1" in registry.available("llm")


def test_bare_name_resolves_to_highest_version(clean_registry):
    registry.register("llm", "mine.v1", lambda **kw: ("v1", kw))
    registry.register("llm", "mine.v2", lambda **kw: ("v2", kw))
    assert registry.resolve("llm", "mine") == "mine.v2"
    assert registry.create("llm", "mine", a=1) == ("v2", {"a": 1})
    assert registry.create("llm", "mine.v1")[0] == "v1"


def test_taken_name_raises_unless_replace(clean_registry):
    registry.register("embedder", "e.v1", lambda: 1)
    with pytest.raises(RegistryError, match="already registered"):
        registry.register("embedder", "e.v1", lambda: 2)
    registry.register("embedder", "e.v1", lambda: 3, replace=True)
    assert registry.create("embedder", "e") == 3


def test_unknown_name_lists_what_exists(clean_registry):
    with pytest.raises(RegistryError, match="available: .*grounding-dino.v1"):
        registry.create("detector", "yolo")
    with pytest.raises(RegistryError, match="kinds are"):
        registry.available("segmenter")


def test_entry_points_are_read(monkeypatch, clean_registry):
    class EP:
        name, value = "detector:plugin-det.v1", "collections:OrderedDict"

    import importlib.metadata as md

    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(md, "entry_points", lambda group: [EP()] if group == registry.ENTRY_POINT_GROUP else [])
    assert "plugin-det.v1" in registry.available("detector")
    assert registry.create("detector", "plugin-det") == {}


def test_lazy_string_factories_do_not_import_heavy_modules():
    import subprocess
    import sys

    code = "import sys, giqa.models; giqa.models.available('detector'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_callables_satisfy_protocols():
    assert isinstance(CallableDetector(lambda i, p: []), Detector)
    assert isinstance(CallableLLM(lambda m: ""), LLM)
    assert isinstance(CallableQualityFilter(lambda c, q: 0.5), QualityFilter)
    assert isinstance(CallableEmbedder(lambda t: [1.0]), Embedder)
    assert isinstance(CallableVLM(lambda i, p: ""), VisionLanguageModel)


def test_callable_detector_sorts_and_validates():
    det = CallableDetector(lambda img, phrase: [((0.1, 0.1, 0.2, 0.2), 0.3), ((0.0, 0.0, 1.0, 1.0), 0.9)])
    out = det.detect(["img1", "img2"], [["a", "b"], []])
    assert [len(x) for x in out] == [2, 0]
    assert [d.score for d in out[0][0]] == [0.9, 0.3]
    assert isinstance(out[0][1][0], Detection) and out[0][1][0].phrase == "b"
    with pytest.raises(ValueError, match="2 images but 1"):
        det.detect(["a", "b"], [["x"]])
    bad = CallableDetector(lambda img, phrase: [((0.5, 0.1, 0.2, 0.2), 0.3)])
    with pytest.raises(ValueError, match="inverted"):
        bad.detect(["i"], [["p"]])


def test_callable_filter_rejects_bad_probability():
    with pytest.raises(BackendError, match="outside"):
        CallableQualityFilter(lambda c, q: 1.5).p_yes(["c"], ["q"])


def test_callable_embedder_normalises():
    emb = CallableEmbedder(lambda t: [float(len(t)), 1.0, 0.0])
    v = emb.embed(["a", "abc", ""])
    assert v.shape == (3, 3) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0)


def test_scripted_llm_runs_out_clearly():
    llm = CallableLLM(scripted(["one"]))
    assert llm.generate([[{"role": "user", "content": "x"}]]) == ["one"]
    with pytest.raises(BackendError, match="ran out"):
        llm.generate([[{"role": "user", "content": "x"}]])


def test_callable_llm_requires_text():
    with pytest.raises(BackendError, match="expected str"):
        CallableLLM(lambda m: 3).generate([[{"role": "user", "content": "x"}]])
