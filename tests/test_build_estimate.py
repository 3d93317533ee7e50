"""examples/build_giqa160k.py --estimate: GPU-hours from the paper-scale benchmark's JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "build_giqa160k.py"


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("build_giqa160k", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def write_figures(path: Path, scale: str, des: float, llm: float) -> Path:
    """A file in bench_paper_scale.py's --json layout."""
    rows = [
        {"section": "detector", "what": "model alone, float32, preprocessed passes of 8", "rate": 20.0, "unit": "images/s"},
        {"section": "detector", "what": "giqa detect(), float32, batch 8", "rate": 18.5, "unit": "images/s"},
        {"section": "filter", "what": "p_yes, torch.bfloat16, batch 16", "rate": 61.0, "unit": "crops/s"},
        {"section": "llm", "what": "generate, torch.bfloat16, batch 32", "rate": llm, "unit": "new tokens/s"},
        {"section": "des", "what": "run_local, batch 16, detector float32", "rate": des, "unit": "samples/s"},
        {"section": "des", "what": "  detect stage (detect() calls)", "rate": 30.0, "unit": "images/s"},
    ]
    env = {"scale": scale, "device": "NVIDIA H200" if scale == "paper" else "x86_64", "torch": "2.11",
           "transformers": "5.17", "cpus": 2, "torch_threads": 1}
    path.write_text(json.dumps({"env": env, "rows": rows, "notes": []}))
    return path


def test_gpu_figures_give_the_estimate(build, tmp_path, capsys):
    figures = write_figures(tmp_path / "paper_scale.json", "paper", des=4.0, llm=1000.0)
    rates = build.rates_from_benchmark(figures)
    assert (rates.gpu, rates.des_samples_s, rates.llm_tokens_s, rates.detector_images_s, rates.filter_crops_s) == (
        True, 4.0, 1000.0, 18.5, 61.0)
    w = build.Workload()
    hours = [h for _, _, h in build.estimate(rates, w)]
    assert hours == pytest.approx([80_000 * 1.15 * 120 / 1000 / 3600, 80_000 / 4.0 / 3600,
                                   66_689 * 2 * 1.15 * 350 / 1000 / 3600])
    assert build.main(["--estimate", "--figures", str(figures)]) == 0
    out = capsys.readouterr().out
    total = sum(hours)
    assert "NVIDIA H200" in out and "issue 13" not in out
    assert f"**{total:,.1f} h on 1 GPU, {total / 8:,.1f} h on 8 GPUs**" in out


def test_cpu_figures_are_labelled_and_the_issue_table_leads(build, tmp_path):
    figures = write_figures(tmp_path / "paper_scale.json", "cpu", des=0.2, llm=40.0)
    out = build.estimate_markdown(figures)
    issue, cpu = out.index("### From issue 13's measured table"), out.index("### From paper_scale.json")
    assert issue < cpu and "CPU figures only" in out
    assert "NOT GPU-hours" in out[cpu:] and "CPU-hours (reduced models), 1 device" in out[cpu:]
    assert "GPU-hours, 1 device" in out[issue:cpu]
    # the issue's own reading: DES at 1.73 samples/s takes ~13 GPU-hours
    des = [h for step, _, h in build.estimate(build.ISSUE_13) if step.startswith("DES")]
    assert des == [pytest.approx(12.85, abs=0.01)]


def test_missing_or_incomplete_figures_fall_back_to_the_issue_table(build, tmp_path):
    assert build.rates_from_benchmark(tmp_path / "none.json") is None
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"env": {"scale": "paper"}, "rows": [
        {"section": "detector", "what": "giqa detect(), float32, batch 8", "rate": 18.0, "unit": "images/s"}]}))
    assert build.rates_from_benchmark(partial) is None
    out = build.estimate_markdown(partial)
    assert out.startswith("No benchmark figures with a DES and an LLM row") and "### From issue 13's measured table" in out
