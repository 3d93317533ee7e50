"""Writers: LLaVA JSON / JSONL / Parquet / HF datasets round trips, atomic output."""

from __future__ import annotations

import json

import pytest

from giqa.data import export_samples, load_samples, read_llava_json, sample_from_llava, write_llava_json
from giqa.errors import ParseError
from giqa.text import format_phrase, parse_grounded
from giqa.types import Box, Provenance, Sample, Task, VqaKind, VqaMode


def _grounded(text_parts):
    """Text with ``[phrase](<a, b>)`` for (phrase, xyxy) parts; regions parsed back from it."""
    text = "".join(p if isinstance(p, str) else format_phrase(p[0], [Box.from_xyxy(p[1])]) for p in text_parts)
    return text, tuple(parse_grounded(text).to_phrases())


def make_samples():
    des_answer, des_regions = _grounded(["The ", ("dog", (0.1, 0.2, 0.5, 0.9)), " is blurry and the ",
                                         ("sky", (0.0, 0.0, 1.0, 0.3)), " is overexposed."])
    q, q_regions = _grounded(["Is the ", ("dog", (0.1, 0.2, 0.5, 0.9)), " blurry?"])
    a, a_regions = _grounded(["The ", ("sky", (0.0, 0.0, 1.0, 0.3)), "."])
    prov = Provenance(models={"llm": "fake"}, preset="tiny-random", random_weights=True, seed=3)
    return [
        Sample(id="d1", image="q-instruct/spaq_koniq/00003.jpg", task=Task.des, question="Describe the quality.",
               answer=des_answer, regions=des_regions, description="The dog is blurry and the sky is overexposed.",
               provenance=prov, meta={"source": "spaq", "key": "k1"}),
        Sample(id="v1", image="q-instruct/spaq_koniq/00003.jpg", task=Task.vqa, vqa_kind=VqaKind.yes_no,
               vqa_mode=VqaMode.referring, question=q, answer="Yes.", regions=q_regions, meta={"source": "spaq"}),
        Sample(id="v2", image="b.png", task=Task.vqa, vqa_kind=VqaKind.what, vqa_mode=VqaMode.grounding,
               question="What is overexposed in the image?", answer=a, regions=a_regions),
        Sample(id="ünï", image="c.png", task=Task.vqa, vqa_kind=VqaKind.why, question="Why is it dark?",
               answer="Underexposure."),
    ]


def test_llava_json_round_trip(tmp_path):
    samples = make_samples()
    path = write_llava_json(samples, tmp_path / "giqa.json")
    records = json.loads(path.read_text(encoding="utf-8"))
    assert records[0]["conversations"][0]["value"].startswith("<image>\n")
    assert records[1]["task"] == "vqa" and records[1]["vqa_kind"] == "yes_no" and records[1]["vqa_mode"] == "referring"
    back = read_llava_json(path)
    for s, b in zip(samples, back):
        assert (b.id, b.image, b.task, b.vqa_kind, b.vqa_mode, b.question, b.answer) == \
               (s.id, s.image, s.task, s.vqa_kind, s.vqa_mode, s.question, s.answer)
        assert b.regions == s.regions  # boxes read back from the grounded text
    # the plain LLaVA record (no extra fields) goes through sample_from_llava as well
    plain = write_llava_json(samples, tmp_path / "plain.json", extra_fields=False)
    rec = json.loads(plain.read_text(encoding="utf-8"))[0]
    assert set(rec) == {"id", "image", "conversations"}
    assert sample_from_llava(rec).regions == samples[0].regions


@pytest.mark.parametrize("fmt, name", [("jsonl", "giqa.jsonl"), ("parquet", "giqa.parquet"), ("hf", "giqa_hf")])
def test_lossless_formats_round_trip(tmp_path, fmt, name):
    samples = make_samples()
    path = export_samples(iter(samples), tmp_path / name, to=fmt)
    assert load_samples(path) == samples
    assert not list(tmp_path.glob("*.incomplete"))


def test_parquet_and_hf_columns(tmp_path):
    import datasets
    import pyarrow.parquet as pq

    table = pq.read_table(export_samples(make_samples(), tmp_path / "g.parquet", to="parquet"))
    assert table.column("vqa_kind").to_pylist() == [None, "yes_no", "what", "why"]
    assert table.column("source").to_pylist() == ["spaq", "spaq", None, None]
    assert table.column("conversations").to_pylist()[2][1] == {"from": "gpt", "value": make_samples()[2].answer}
    ds = datasets.load_from_disk(str(export_samples(make_samples(), tmp_path / "hf", to="hf")))
    assert ds.num_rows == 4 and ds[1]["task"] == "vqa"


def test_atomic_write_and_overwrite(tmp_path):
    samples = make_samples()
    target = tmp_path / "out.json"
    write_llava_json(samples[:1], target)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_llava_json(samples, target)

    def broken():
        yield samples[0]
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError, match="crash"):
        write_llava_json(broken(), target, overwrite=True)
    assert len(json.loads(target.read_text())) == 1  # the old file is untouched
    assert not (tmp_path / "out.json.incomplete").exists()
    write_llava_json(samples, target, overwrite=True)
    assert len(json.loads(target.read_text())) == 4


def test_bad_input(tmp_path):
    with pytest.raises(TypeError, match="sample 1: expected giqa.types.Sample"):
        write_llava_json([make_samples()[0], {"id": "x"}], tmp_path / "x.json")
    with pytest.raises(ValueError, match="unknown format"):
        export_samples([], tmp_path / "x", to="csv")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "x", "image": "a.png", "conversations": [{"from": "human", "value": "q"}]}]))
    with pytest.raises(ParseError, match="record 0"):
        load_samples(bad)
