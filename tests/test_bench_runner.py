"""``giqa bench run`` / ``giqa bench score``: resumable generation, image confinement, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from giqa.bench.runner import load_done, run_bench
from giqa.cli import main
from giqa.errors import ImageError
from giqa.models.callable import CallableVLM

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bench"
BENCH = EXAMPLE / "bench.jsonl"


def _vlm():
    def fn(image, prompt):
        assert image.mode == "RGB" and "<image>" not in prompt
        return "Yes." if prompt.startswith(("Is", "Are")) else f"answer to: {prompt[:20]}"

    return CallableVLM(fn, model_id="toy-vlm")


def test_run_writes_every_item(tmp_path):
    out = run_bench(_vlm(), BENCH, EXAMPLE, tmp_path / "preds.jsonl", batch_size=5, progress=False)
    recs = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(recs) == 16 and {r["model"] for r in recs} == {"toy-vlm"}
    by_id = {r["id"]: r["answer"] for r in recs}
    assert by_id["astronaut-y2"] == "Yes."


def test_run_resumes_and_repairs_a_cut_line(tmp_path):
    out = tmp_path / "preds.jsonl"
    vlm = _vlm()
    run_bench(vlm, BENCH, EXAMPLE, out, batch_size=4, progress=False, limit=6)
    assert vlm.calls == 2
    # simulate a crash mid-write: a half line at the end
    with out.open("a") as f:
        f.write('{"id": "coffee-y4", "ans')
    assert load_done(out) == {json.loads(l)["id"] for l in out.read_text().splitlines()}
    assert out.read_text().endswith("\n")
    vlm2 = _vlm()
    run_bench(vlm2, BENCH, EXAMPLE, out, batch_size=4, progress=False)
    assert vlm2.calls == 3  # only the 10 missing items, in batches of 4
    ids = [json.loads(l)["id"] for l in out.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 16
    vlm3 = _vlm()
    run_bench(vlm3, BENCH, EXAMPLE, out, progress=False)
    assert vlm3.calls == 0


def test_images_must_stay_inside_the_root(tmp_path):
    from giqa.types import Sample

    s = Sample(id="x", image="../../etc/passwd", task="des", question="q", answer="a")
    with pytest.raises(ImageError, match="escapes the dataset root"):
        run_bench(_vlm(), [s], EXAMPLE, tmp_path / "p.jsonl", progress=False)
    s = Sample(id="x", image="images/missing.jpg", task="des", question="q", answer="a")
    with pytest.raises(ImageError, match="not found"):
        run_bench(_vlm(), [s], EXAMPLE, tmp_path / "p.jsonl", progress=False)


def test_cli_score_writes_reports(tmp_path, capsys):
    rc = main(["bench", "score", str(EXAMPLE / "predictions.kosmos2.jsonl"), "--format", "kosmos2",
               "--gt", str(BENCH), "--out", str(tmp_path), "--bootstrap", "50", "--name", "Kosmos-2 (example)"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| Kosmos-2 (example) |" in out
    for name in ("report.md", "report.csv", "report.json", "radar.png"):
        assert (tmp_path / name).is_file()


def test_cli_score_takes_one_format_per_file(tmp_path, capsys):
    files = [EXAMPLE / f"predictions.{f}.jsonl" for f in ("giqa", "kosmos2", "qwen-vl")]
    rc = main(["bench", "score", *map(str, files), "--format", "giqa", "--format", "kosmos2", "--format", "qwen-vl",
               "--gt", str(BENCH), "--out", str(tmp_path), "--bootstrap", "20", "--no-radar"])
    assert rc == 0
    rows = json.loads((tmp_path / "report.json").read_text())
    assert [r["settings"]["format"] for r in rows] == ["giqa", "kosmos2", "qwen-vl"]
    assert all(r["metrics"]["des_miou"] is not None for r in rows)  # every file's boxes were read
    with pytest.raises(SystemExit, match="2 --format for 3"):
        main(["bench", "score", *map(str, files), "--format", "giqa", "--format", "kosmos2", "--gt", str(BENCH)])


def test_cli_score_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    assert main(["bench", "score", str(bad), "--gt", str(BENCH)]) == 1
    assert "needs a string 'id' and a string 'answer'" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_run_end_to_end_with_tiny_llava(tmp_path, tiny_llava_dir, capsys):
    images = tmp_path / "bench"
    shutil.copytree(EXAMPLE / "images", images / "images")
    preds = tmp_path / "preds.jsonl"
    rc = main(["bench", "run", "--bench", str(BENCH), "--images", str(images), "--out", str(preds),
               "--model-id", str(tiny_llava_dir), "--device", "cpu", "--batch-size", "8",
               "--max-new-tokens", "6", "--no-progress"])
    assert rc == 0
    recs = [json.loads(l) for l in preds.read_text().splitlines()]
    assert len(recs) == 16 and all(r["random_weights"] for r in recs)
    assert all(r["image_aspect"] == "pad" for r in recs)  # the VLM's image policy is recorded
    assert all(isinstance(r["answer"], str) for r in recs)
    rc = main(["bench", "score", str(preds), "--gt", str(BENCH), "--bootstrap", "20", "--out", str(tmp_path / "rep")])
    assert rc == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())[0]
    assert 0.0 <= report["metrics"]["acc_y"] <= 1.0
    assert report["counts"]["missing"] == 0
    cropped = tmp_path / "cropped.jsonl"
    rc = main(["bench", "run", "--bench", str(BENCH), "--images", str(images), "--out", str(cropped),
               "--model-id", str(tiny_llava_dir), "--device", "cpu", "--image-aspect", "crop", "--limit", "2",
               "--max-new-tokens", "2", "--no-progress"])
    assert rc == 0
    assert [json.loads(l)["image_aspect"] for l in cropped.read_text().splitlines()] == ["crop", "crop"]


def test_bench_runner_checks_its_vlm(tmp_path):
    from giqa.errors import BackendContractError, ConfigError

    with pytest.raises(ConfigError, match=r"vlm backend function has no method answer\(\).*CallableVLM"):
        run_bench(lambda image, prompt: "Yes.", BENCH, EXAMPLE, tmp_path / "p.jsonl", progress=False)
    short = CallableVLM(lambda i, p: "x")
    short.answer = lambda images, prompts, max_new_tokens=512: ["only one"]
    with pytest.raises(BackendContractError, match="1 answers for 4 prompts"):
        run_bench(short, BENCH, EXAMPLE, tmp_path / "p.jsonl", progress=False)
    assert not (tmp_path / "p.jsonl").exists() or (tmp_path / "p.jsonl").read_text() == ""
