"""meta.source and the random-weights flag travel from DES samples through VQA, balancing,
every export and ``giqa build stats`` (which warns about random-weight data, PNG included)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import pipeline_fakes as F
from giqa.cli import main
from giqa.data import dataset_stats, export_samples, load_samples, write_jsonl
from giqa.models import CallableLLM
from giqa.pipeline import DesConfig, DesPipeline, VqaConfig, VqaPipeline, balance_vqa
from giqa.pipeline.stages import run_stages
from giqa.types import Task

YES_NO = [{"question": "Is the dog blurry?", "answer": "Yes.", "object": "dog"},
          {"question": "Is the red car blurry?", "answer": "No.", "object": "car"}]
OPEN = [{"question": "What is blurry in the image?", "answer": "The dog", "object": "dog"},
        {"question": "How sharp is the red car?", "answer": "very sharp", "object": "car"}]


def _vqa_llm(messages):
    return json.dumps({"qa": YES_NO if "Yes/No questions" in messages[-1]["content"] else OPEN})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A DES run on items that carry a source, its random-weights flag set, then VQA."""
    root = tmp_path_factory.mktemp("data")
    items = [dict(it, source="koniq", source_id=f"k{i}") for i, it in enumerate(F.make_dataset(root, 2))]
    des = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=F.make_filter(),
                      config=DesConfig(root=str(root)))
    records = [r.replace(random_weights=True) for r in run_stages(des.stages, des.make_inputs(items))]
    des_samples, errors = des.finalize(records)
    assert des_samples and not errors
    vqa = VqaPipeline(llm=CallableLLM(_vqa_llm, model_id="fake-vqa"), config=VqaConfig())
    vqa_samples, errors = vqa.finalize(run_stages(vqa.stages, vqa.make_inputs(des_samples)))
    assert vqa_samples and all(e["stage"] == "ground" for e in errors)  # the sky image has no dog
    return des_samples, vqa_samples


def test_vqa_samples_carry_source_and_random_weights(built):
    des_samples, vqa_samples = built
    assert {s.meta["source"] for s in des_samples} == {"koniq"}
    by_des = {s.id: s.meta["source_id"] for s in des_samples}
    for s in vqa_samples:
        assert s.meta["source"] == "koniq"
        assert s.meta["source_id"] == by_des[s.meta["des_id"]]
        assert s.provenance.random_weights is True


def test_per_source_statistics_count_the_vqa_part(built):
    des_samples, vqa_samples = built
    st = dataset_stats(des_samples + vqa_samples)
    assert st.sources == {"koniq": len(des_samples) + len(vqa_samples)}
    assert st.random_weights == st.total
    assert "random-weight models" in st.warning and st.warning in st.to_markdown()


def test_balancing_keeps_source_and_flag(built):
    _, vqa_samples = built
    balanced = balance_vqa(vqa_samples, seed=0)
    assert balanced
    assert all(s.meta["source"] == "koniq" and s.provenance.random_weights for s in balanced)


@pytest.mark.parametrize("to,name", [("llava", "g.json"), ("jsonl", "g.jsonl"), ("parquet", "g.parquet"), ("hf", "hf")])
def test_every_export_keeps_source_and_random_weights(built, tmp_path, to, name):
    des_samples, vqa_samples = built
    samples = des_samples + vqa_samples
    back = load_samples(export_samples(samples, tmp_path / name, to=to))
    assert [s.meta.get("source") for s in back] == ["koniq"] * len(samples)
    assert all(s.provenance.random_weights for s in back)
    assert dataset_stats(back).sources == {"koniq": len(samples)}


def test_parquet_flat_columns_have_source_and_flag(built, tmp_path):
    import pyarrow.parquet as pq

    des_samples, _ = built
    table = pq.read_table(export_samples(des_samples, tmp_path / "g.parquet", to="parquet"))
    assert set(table.column("source").to_pylist()) == {"koniq"}
    assert table.column("random_weights").to_pylist() == [True] * len(des_samples)


def test_build_stats_warns_on_random_weight_data(built, tmp_path, capsys):
    des_samples, vqa_samples = built
    src = write_jsonl(des_samples + vqa_samples, tmp_path / "samples.jsonl")
    png = tmp_path / "fig6.png"
    assert main(["build", "stats", str(src), "--png", str(png)]) == 0
    out, err = capsys.readouterr()
    assert "random-weight models" in err and "random-weight models" in out
    with Image.open(png) as im:
        assert "random-weight models" in im.text["Description"]
    assert main(["build", "stats", str(src), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["random_weights"] == report["total"] and "random-weight" in report["warning"]
    # real data: no warning anywhere
    clean = [s.model_copy(update={"provenance": s.provenance.model_copy(update={"random_weights": False})})
             for s in des_samples]
    src2 = write_jsonl(clean, tmp_path / "clean.jsonl")
    assert main(["build", "stats", str(src2), "--png", str(png)]) == 0
    out, err = capsys.readouterr()
    assert "random-weight" not in out + err
    with Image.open(png) as im:
        assert "random-weight" not in im.text["Description"]


def test_build_export_balance_keeps_source(built, tmp_path, capsys):
    des_samples, vqa_samples = built
    src = write_jsonl(des_samples + vqa_samples, tmp_path / "samples.jsonl")
    assert main(["build", "export", str(src), "--to", "llava", "--balance", "--out", str(tmp_path / "g.json")]) == 0
    capsys.readouterr()
    back = load_samples(tmp_path / "g.json")
    assert {s.meta.get("source") for s in back if s.task is Task.vqa} == {"koniq"}


def test_build_sources_keep_full_reference_flag(tmp_path, capsys):
    rec = {"id": "x_0", "image_ref": "KADIS700K/ref/x.png", "image_A": "KADIS700K/a/x_0.png", "image_B": None,
           "task_type": "quality_single_A", "conversations": [
               {"from": "human", "value": "Assess the quality."},
               {"from": "gpt", "value": " ".join(["Compared with the reference, the image is blurry."] * 4)}]}
    metas = tmp_path / "metas.json"
    metas.write_text(json.dumps([rec]))
    out = tmp_path / "items.jsonl"
    assert main(["build", "sources", "--dq495k", str(metas), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["items"] == 0 and report["sources"]["DQ-495K"]["skipped_by"] == {"full_reference": 1}
    assert main(["build", "sources", "--dq495k", str(metas), "--keep-full-reference", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 1
