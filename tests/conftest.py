"""Shared fixtures: tiny random-weight models built once per test session (offline).

Every tiny model carries a real checkpoint's chat template, special tokens and processor
settings (``src/giqa/models/reference``, sources in its ``SOURCES.md``): LLaVA-1.5,
LLaVA-interleave (Qwen), Llama-3-Instruct, Qwen2.5-Instruct, Grounding DINO.

Each fixture builds its model into a session temp dir the first time it is requested
(a second or so each) and returns the directory, loadable with ``from_pretrained``.
Set ``GIQA_TINY_CACHE`` to a directory to reuse the builds across sessions.

Tiny models run fastest single-threaded: on a shared 2-core machine, torch's intra-op thread
pool spends far longer synchronising than computing. So the first tiny-model fixture sets
``torch.set_num_threads(1)`` (override with ``GIQA_TEST_TORCH_THREADS``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# CI runs property tests derandomised (the same examples every run, so a submission is judged
# on its code, not on a lucky draw); local runs keep exploring new examples.
from hypothesis import settings as _hypothesis_settings

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.set_num_threads(int(os.environ.get("GIQA_TEST_TORCH_THREADS", "1")))
    cache = os.environ.get("GIQA_TINY_CACHE")
    if cache:
        path = Path(cache)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_llava_dir(tiny_models_dir: Path) -> Path:
    """A saved tiny ``LlavaForConditionalGeneration`` + ``LlavaProcessor`` (see giqa.models.tiny)."""
    pytest.importorskip("torch")
    from giqa.models.tiny import build_tiny_llava

    return build_tiny_llava(tiny_models_dir / "llava")


@pytest.fixture(scope="session")
def tiny_llava_interleave_dir(tiny_models_dir: Path) -> Path:
    """A tiny LLaVA with llava-interleave-qwen-0.5b's template, special tokens and SigLIP settings."""
    pytest.importorskip("torch")
    from giqa.models.tiny import build_tiny_llava_interleave

    return build_tiny_llava_interleave(tiny_models_dir / "llava_interleave")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tiny_models_dir: Path) -> Path:
    """A saved tiny ``Qwen2ForCausalLM`` with Qwen2.5-0.5B-Instruct's template and special tokens."""
    pytest.importorskip("torch")
    from giqa.models.tiny import build_tiny_qwen2

    return build_tiny_qwen2(tiny_models_dir / "qwen2")


@pytest.fixture(scope="session")
def tiny_llama_dir(tiny_models_dir: Path) -> Path:
    """A saved tiny ``LlamaForCausalLM`` + chat tokenizer."""
    pytest.importorskip("torch")
    from giqa.models.tiny import build_tiny_llama

    return build_tiny_llama(tiny_models_dir / "llama")


@pytest.fixture(scope="session")
def tiny_grounding_dino_dir(tiny_models_dir: Path) -> Path:
    """A saved tiny ``GroundingDinoForObjectDetection`` + ``GroundingDinoProcessor``."""
    pytest.importorskip("torch")
    from giqa.models.tiny import build_tiny_grounding_dino

    return build_tiny_grounding_dino(tiny_models_dir / "grounding_dino")


@pytest.fixture(scope="session")
def tiny_embedder_dir(tiny_models_dir: Path) -> Path:
    """A saved tiny random sentence-transformers model (BERT + mean pooling + normalize)."""
    pytest.importorskip("sentence_transformers")
    from giqa.models.tiny import build_tiny_sentence_embedder

    return build_tiny_sentence_embedder(tiny_models_dir / "embedder")
