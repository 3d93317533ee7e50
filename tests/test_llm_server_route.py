"""The LLM at server speed: with a server URL a preset's LLM is the openai backend asking for the
preset's model; without one it stays in-process transformers (Python API and command line)."""

from __future__ import annotations

import pytest

from giqa.models import Role
from giqa.models.presets import load_preset, preset_entry, server_llm_entry

PAPER_LLM = "meta-llama/Meta-Llama-3-8B-Instruct"


def test_server_llm_entry_keeps_hub_ids_only():
    assert server_llm_entry("transformers", {"model_id": PAPER_LLM}, "http://gpu:8000/v1") == (
        "openai", {"model_id": PAPER_LLM, "base_url": "http://gpu:8000/v1"})
    assert server_llm_entry("transformers.v1", {"model_id": "Qwen/Qwen2.5-0.5B-Instruct", "device": "cuda"}) == (
        "openai", {"model_id": "Qwen/Qwen2.5-0.5B-Instruct"})  # in-process settings do not travel
    assert server_llm_entry("transformers", {"model_id": "{cache}/llama"}) == ("openai", {})  # a local build
    kept = {"model_id": "served-name", "max_concurrency": 64}
    assert server_llm_entry("openai", kept, "http://h/v1") == ("openai", {**kept, "base_url": "http://h/v1"})


def test_server_llm_entry_local_directory_is_not_a_served_name(tmp_path):
    (tmp_path / "org").mkdir()
    assert server_llm_entry("transformers", {"model_id": str(tmp_path / "org")}) == ("openai", {})


@pytest.mark.parametrize("preset", ["paper", "small"])
def test_load_preset_with_a_server_url(preset):
    expected = preset_entry(preset, Role.llm)[1]["model_id"]
    with load_preset(preset, llm_base_url="http://gpu:8000/v1") as b:
        assert type(b.llm).__name__ == "OpenAICompatibleLLM"
        assert b.llm.model_id == expected and b.llm.settings.base_url == "http://gpu:8000/v1"
        assert type(b.filter).__name__ == "LlavaQualityFilter"  # the other roles are untouched
    with load_preset(preset) as b:
        assert type(b.llm).__name__ == "TransformersLLM" and b.llm.model_id == expected  # the fallback


def test_load_preset_llm_override_still_wins():
    with load_preset("paper", llm_base_url="http://gpu:8000/v1", llm={"max_concurrency": 64, "model_id": "m"}) as b:
        assert b.llm.settings.max_concurrency == 64 and b.llm.model_id == "m"


def _resolve(tmp_path, *flags, env=None, monkeypatch=None):
    from giqa.cli import build_parser
    from giqa.cli._run import resolve_config

    if env is not None:
        monkeypatch.setenv("GIQA_LLM_BASE_URL", env)
    args = build_parser().parse_args(["des", "--input", "x", "--root", str(tmp_path), "--out", "o", *flags])
    return resolve_config(args, "des", ("llm", "detector", "quality_filter")).backend(Role.llm)


@pytest.mark.parametrize("preset", ["paper", "small"])
def test_cli_llm_base_url_serves_the_presets_model(tmp_path, preset):
    spec = _resolve(tmp_path, "--preset", preset, "--llm-base-url", "http://gpu:8000/v1")
    assert spec.name == "openai" and spec.settings == {
        "model_id": preset_entry(preset, Role.llm)[1]["model_id"], "base_url": "http://gpu:8000/v1"}
    assert spec.preset == preset
    plain = _resolve(tmp_path, "--preset", preset)
    assert plain.name == "transformers"


def test_cli_reads_the_environment_and_the_flag_wins(tmp_path, monkeypatch):
    spec = _resolve(tmp_path, env="http://env:8000/v1", monkeypatch=monkeypatch)
    assert spec.name == "openai" and spec.settings == {"model_id": PAPER_LLM, "base_url": "http://env:8000/v1"}
    spec = _resolve(tmp_path, "--llm-base-url", "http://flag:1/v1", "--llm-model", "llama3",
                    env="http://env:8000/v1", monkeypatch=monkeypatch)
    assert spec.settings == {"model_id": "llama3", "base_url": "http://flag:1/v1"}
