"""Source readers (Q-Pathway, DQ-495K) and the streaming JSON reader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giqa.data import DQ495KReader, QPathwayReader, RecordParseError, iter_json_records, read_qpathway
from giqa.data.jsonstream import JsonSyntaxError
from giqa.data.qpathway import is_description, source_of
from giqa.errors import ParseError

SOURCES = Path(__file__).resolve().parents[1] / "examples" / "sources"
QI = SOURCES / "q-instruct"
DQ = SOURCES / "DataDepictQA"
DQ_METAS = sorted(DQ.glob("KADIS700K/*/metas/*.json"))

DESC = ("The photo shows a dog on a lawn. The dog is sharp and its fur keeps fine texture, but the "
        "sky in the upper part is overexposed and the grass is slightly noisy. Overall, the quality is fair.")


def _rec(rid="r0", image="spaq_koniq/00001.jpg", human="<image>\nDescribe the quality of the image.", gpt=DESC):
    return {"id": rid, "image": image,
            "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]}


def _dq(rid="000001_0", image="KADIS700K/refA_sd_detail/dist_imgs/000001_0.png", gpt=DESC, **extra):
    rec = {"distortion_class": "blur", "distortion_name": "blur_gaussian", "severity": 2, "id": rid,
           "image_ref": None, "image_A": image, "image_B": None, "task_type": "quality_single_A_noref",
           "conversations": [{"from": "human", "value": "Assess the quality of the image with detailed reasons."},
                             {"from": "gpt", "value": gpt}]}
    rec.update(extra)
    return rec


def _write(path: Path, records, indent=4) -> Path:
    path.write_text(json.dumps(records, indent=indent))
    return path


# -- the example files, in the published layouts -------------------------------------------
def test_qpathway_example_file():
    reader = QPathwayReader(QI / "cleaned_labels.json", image_root=QI, check_images=True)
    items = reader.read()
    assert [(it["source"], it["image"]) for it in items] == [
        ("spaq", "spaq_koniq/00003.jpg"),
        ("spaq", "spaq_koniq/00017.jpg"),
        ("koniq", "spaq_koniq/10004473376.jpg"),
        ("livefb", "livefb_liveitw_aigc/AVA__149.jpg"),
        ("liveitw", "livefb_liveitw_aigc/1023.JPG"),
        ("agiqa3k", "livefb_liveitw_aigc/AttnGAN_normal_000.jpg"),
        ("imagerewarddb", "livefb_liveitw_aigc/4f1c2a9e-7b3d-4e8a-9c21-5d6e7f8a9b0c.jpg"),
    ]
    assert set(items[0]) == {"image", "description", "source", "source_id"}
    assert items[0]["source_id"] == "qpath-0000" and items[0]["description"].startswith("The image shows a cup")
    # the Yes/No, multiple-choice and multi-turn records are skipped, not errors
    assert (reader.stats.records, reader.stats.items, reader.stats.skipped, reader.stats.errors) == (10, 7, 3, 0)


def test_dq495k_example_files():
    reader = DQ495KReader(DQ_METAS, image_root=DQ, check_images=True, image_prefix="DataDepictQA")
    items = reader.read()
    assert [it["source_id"] for it in items] == ["001024_0", "000123_0", "000456_0", "000789_0"]
    assert {it["source"] for it in items} == {"kadis700k"}
    assert items[1]["image"] == "DataDepictQA/KADIS700K/refA_sd_detail/dist_imgs/000123_0.png"
    assert (SOURCES / items[1]["image"]).is_file()
    assert reader.stats.skipped == 1  # the one-word distortion-identification answer


def test_streaming_reads_the_same_records_with_tiny_chunks():
    whole = json.loads((QI / "cleaned_labels.json").read_text())
    assert [r for _, r in iter_json_records(QI / "cleaned_labels.json", chunk_size=7)] == whole


def test_limit_and_prefix():
    items = read_qpathway(QI / "cleaned_labels.json", limit=2, image_prefix="q-instruct")
    assert [it["image"] for it in items] == ["q-instruct/spaq_koniq/00003.jpg", "q-instruct/spaq_koniq/00017.jpg"]


@pytest.mark.parametrize("path, expected", [
    ("spaq_koniq/00003.jpg", "spaq"),
    ("spaq_koniq/11125.jpg", "spaq"),
    ("spaq_koniq/826373.jpg", "koniq"),
    ("spaq_koniq/10004473376.jpg", "koniq"),
    ("spaq_koniq/abc.jpg", "unknown"),
    ("livefb_liveitw_aigc/AVA__149.jpg", "livefb"),
    ("livefb_liveitw_aigc/voc_emotic_ava/VOC2012__2008_000008.jpg", "livefb"),
    ("livefb_liveitw_aigc/EE371R/cm1_0001.jpg", "livefb"),
    ("livefb_liveitw_aigc/1023.JPG", "liveitw"),
    ("livefb_liveitw_aigc/t7.bmp", "liveitw"),
    ("livefb_liveitw_aigc/AttnGAN_normal_000.jpg", "agiqa3k"),
    ("livefb_liveitw_aigc/sd1.5_highcorr_123.png", "agiqa3k"),
    ("livefb_liveitw_aigc/midjourney_lowstep_007.png", "agiqa3k"),
    ("livefb_liveitw_aigc/4f1c2a9e-7b3d-4e8a-9c21-5d6e7f8a9b0c.webp", "imagerewarddb"),
    ("livefb_liveitw_aigc/" + "a" * 40 + ".jpg", "imagerewarddb"),
    ("koniq10k/1024x768/826373.jpg", "koniq"),
    ("livefb_liveitw_aigc/holiday photo.jpg", "unknown"),
])
def test_source_of(path, expected):
    assert source_of(path) == expected


def test_description_rule():
    assert is_description("<image>\nDescribe the quality.", DESC)
    assert not is_description("<image>\nIs it clear?", "Yes, " + DESC)  # a Yes/No answer, however long
    assert not is_description("Which is right?\nA. blurry\nB. clear", DESC)  # multiple choice
    assert not is_description("Describe.", "The image is clear and sharp.")  # too short
    assert is_description("Describe.", "The image is clear and sharp.", min_words=5)


# -- malformed records ---------------------------------------------------------------------
@pytest.mark.parametrize("record, field, words", [
    ("just a string", "<record>", "JSON object"),
    ({"id": "x", "image": "spaq_koniq/1.jpg"}, "conversations", "non-empty list"),
    (_rec() | {"image": 7}, "image", "path string"),
    ({k: v for k, v in _rec().items() if k != "image"}, "image", "missing"),
    (_rec(image="/etc/passwd"), "image", "absolute"),
    (_rec(image="../../secret.jpg"), "image", "leaves the image root"),
    (_rec(image="C:\\data\\x.jpg"), "image", "absolute"),
    (_rec() | {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": 3}]},
     "conversations[1].value", "string"),
    (_rec() | {"conversations": [{"from": "gpt", "value": "q"}, {"from": "human", "value": DESC}]},
     "conversations", "human turn then a gpt turn"),
    (_rec(rid=["x"]), "id", "string or integer"),
])
def test_qpathway_malformed_record_raises_with_file_index_field(tmp_path, record, field, words):
    path = _write(tmp_path / "cleaned_labels.json", [_rec("ok"), record, _rec("ok2")])
    with pytest.raises(RecordParseError) as info:
        read_qpathway(path)
    err = info.value.error
    assert (err.path, err.index, err.field) == (str(path), 1, field)
    assert words in err.message and str(path) in str(info.value) and "record 1" in str(info.value)
    assert isinstance(info.value, ParseError)


def test_lenient_mode_collects_errors_and_keeps_the_rest(tmp_path):
    path = _write(tmp_path / "c.json", [_rec("a"), {"id": "b", "image": "x.jpg"}, _rec("c", image="../x.jpg"), _rec("d")])
    reader = QPathwayReader(path, strict=False)
    assert [it["source_id"] for it in reader] == ["a", "d"]
    assert [(e.index, e.field) for e in reader.errors] == [(1, "conversations"), (2, "image")]
    assert (reader.stats.records, reader.stats.items, reader.stats.errors) == (4, 2, 2)


def test_truncated_json_list(tmp_path):
    text = json.dumps([_rec("a"), _rec("b")], indent=2)
    path = tmp_path / "c.json"
    path.write_text(text[: len(text) // 2 + 40])
    with pytest.raises(JsonSyntaxError) as info:
        read_qpathway(path)
    assert info.value.index == 1 and "record 1" in str(info.value) and str(path) in str(info.value)
    reader = QPathwayReader(path, strict=False)
    assert [it["source_id"] for it in reader] == ["a"] and reader.errors[0].field == "<json>"


def test_jsonl_input_with_a_bad_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(_rec("a")) + "\n{not json\n" + json.dumps(_rec("c")) + "\n")
    with pytest.raises(JsonSyntaxError, match="record 1.*line 2"):
        read_qpathway(path)
    reader = QPathwayReader(path, strict=False)
    assert [it["source_id"] for it in reader] == ["a", "c"] and reader.errors[0].index == 1


def test_check_images_and_symlink_escape(tmp_path):
    root = tmp_path / "root"
    (root / "spaq_koniq").mkdir(parents=True)
    (root / "spaq_koniq" / "00001.jpg").write_bytes(b"x")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "spaq_koniq" / "00002.jpg")
    path = _write(tmp_path / "c.json", [_rec("a"), _rec("b", image="spaq_koniq/00002.jpg"),
                                        _rec("c", image="spaq_koniq/00009.jpg")])
    reader = QPathwayReader(path, image_root=root, check_images=True, strict=False)
    assert [it["source_id"] for it in reader] == ["a"]
    assert ["outside the image root" in e.message for e in reader.errors] == [True, False]
    assert "not found" in reader.errors[1].message
    with pytest.raises(ValueError, match="needs image_root"):
        QPathwayReader(path, check_images=True)
    with pytest.raises(FileNotFoundError):
        read_qpathway(tmp_path / "nope.json")


@pytest.mark.parametrize("record, field", [
    (_dq(task_type=3), "task_type"),
    (_dq(image_A=None), "image_A"),
    (_dq(severity="high"), "severity"),
    (_dq(distortion_class=["blur"]), "distortion_class"),
    (_dq(distortion_classes="blur"), "distortion_classes"),
    ({k: v for k, v in _dq().items() if k != "image_A"}, "image_A"),
])
def test_dq495k_malformed(tmp_path, record, field):
    path = _write(tmp_path / "train_A_sd_detail_20k.json", [_dq(), record])
    with pytest.raises(RecordParseError) as info:
        DQ495KReader(path).read()
    assert (info.value.error.index, info.value.error.field) == (1, field)


def test_dq495k_selection(tmp_path):
    path = _write(tmp_path / "m.json", [
        _dq("keep"),
        _dq("brief", gpt="blur"),
        _dq("pair", task_type="quality_compare_noref", image_B="KADIS700K/x/b.png"),
        _dq("b-set", image_B="KADIS700K/x/b.png"),
        _dq("md", distortion_class=None, distortion_name=None, severity=0,
            distortion_classes=["blur", "noise"], severities=[1, 2], image_A="other/x.png"),
    ])
    reader = DQ495KReader(path)
    items = reader.read()
    assert [(it["source_id"], it["source"]) for it in items] == [("keep", "kadis700k"), ("md", "unknown")]
    assert reader.stats.skipped == 3


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
        max_leaves=12), max_size=8),
    chunk=st.integers(min_value=1, max_value=64),
    indent=st.sampled_from([None, 0, 2]),
    jsonl=st.booleans(),
)
def test_iter_json_records_roundtrip(tmp_path_factory, records, chunk, indent, jsonl):
    path = tmp_path_factory.mktemp("j") / "x.json"
    if jsonl:
        records = [r for r in records if not isinstance(r, list)] or [{}]  # a list line would read as a JSON list
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    else:
        path.write_text(json.dumps(records, indent=indent))
    assert [v for _, v in iter_json_records(path, chunk_size=chunk)] == records


# -- the sources' own fields -----------------------------------------------------------------
SHORT_DESC = "The dog is sharp, the sky is overexposed and the grass is slightly noisy."  # 14 words
LONG_VQA = "Yes. " + DESC  # a long answer to a question


@pytest.mark.parametrize("field", ["type", "qtype"])
def test_qpathway_selects_by_the_records_own_type(tmp_path, field):
    records = [
        _rec("short-pathway", gpt=SHORT_DESC) | {field: "pathway"},
        _rec("long-vqa", human="<image>\nWhat is the quality?", gpt=DESC) | {field: "what"},
        _rec("yes-no", gpt=LONG_VQA) | {field: "Yes-or-No"},
        _rec("int-coded", gpt=DESC) | {field: 1},
        _rec("described", gpt=SHORT_DESC) | {field: "Pathway_Reasoning"},
        _rec("no-field", gpt=DESC),
        _rec("unknown-value", gpt=DESC) | {field: "zzz"},
        _rec("unknown-short", gpt=SHORT_DESC) | {field: "zzz"},
    ]
    reader = QPathwayReader(_write(tmp_path / "labels.json", records))
    assert [it["source_id"] for it in reader] == ["short-pathway", "described", "no-field", "unknown-value"]
    assert reader.stats.selected_by == {"type": 2, "word_count": 2}
    assert reader.stats.skipped_by == {"question_type": 3, "not_a_description": 1}
    assert reader.stats.unknown_types == {"zzz": 2}


def test_qpathway_question_type_wins_and_value_lists_can_be_replaced(tmp_path):
    path = _write(tmp_path / "labels.json", [
        _rec("both", gpt=DESC) | {"type": "pathway", "qtype": "how"},
        _rec("custom", gpt=SHORT_DESC) | {"type": "long-form"},
    ])
    assert [it["source_id"] for it in QPathwayReader(path)] == []
    reader = QPathwayReader(path, description_types=["long form"])
    assert [it["source_id"] for it in reader] == ["custom"]


def test_qpathway_bad_type_value_is_a_record_error(tmp_path):
    path = _write(tmp_path / "labels.json", [_rec() | {"type": ["pathway"]}])
    with pytest.raises(RecordParseError, match="field 'type': expected a string or an integer"):
        QPathwayReader(path).read()


def test_dq495k_skips_full_reference_records_unless_asked(tmp_path):
    records = [
        _dq("noref_0"),
        _dq("ref_0", task_type="quality_single_A", image_ref="KADIS700K/ref_imgs/000001.png"),
        _dq("ref_1", image_ref="KADIS700K/ref_imgs/000002.png"),  # noref label, but a reference given
        _dq("cmp_0", task_type="quality_compare", image_B="KADIS700K/x.png"),
        _dq("cmp_1", task_type="quality_compare_noref", image_B="KADIS700K/x.png"),
    ]
    path = _write(tmp_path / "metas.json", records)
    reader = DQ495KReader(path)
    assert [it["source_id"] for it in reader] == ["noref_0"]
    assert reader.stats.skipped_by == {"full_reference": 2, "not_single_image": 2}
    assert reader.stats.selected_by == {"quality_single_A_noref": 1}
    kept = DQ495KReader(path, keep_full_reference=True)
    assert [it["source_id"] for it in kept] == ["noref_0", "ref_0", "ref_1"]
    assert kept.stats.selected_by == {"quality_single_A_noref": 2, "quality_single_A": 1}
