"""DesPipeline stage by stage with in-memory backends (deterministic)."""

from __future__ import annotations

import json
import pickle

import pytest

import pipeline_fakes as F
from giqa.models import CallableLLM
from giqa.pipeline import BackendSpec, DesConfig, DesPipeline
from giqa.pipeline.records import read_jsonl
from giqa.pipeline.runner import run_stages
from giqa.types import Sample


@pytest.fixture()
def setup(tmp_path):
    items = F.make_dataset(tmp_path, 2)
    pipe = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=F.make_filter(),
                       config=DesConfig(root=str(tmp_path)))
    return pipe, items, tmp_path


def test_make_inputs_keys_and_ids(setup):
    pipe, items, _ = setup
    recs = pipe.make_inputs(items)
    assert [r["id"] for r in recs] == ["s0", "s1"]
    assert all(r["error"] is None and len(r["key"]) == 64 for r in recs)
    assert recs[0]["key"] != recs[1]["key"]
    # same input, same config -> same key; another seed -> another key
    assert pipe.make_inputs(items)[0]["key"] == recs[0]["key"]
    other = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=F.make_filter(),
                        config=DesConfig(root=pipe.config.root, seed=1))
    assert other.make_inputs(items)[0]["key"] != recs[0]["key"]


def test_tag_stage_drops_no_impact_and_records_provenance(setup):
    pipe, items, _ = setup
    out = pipe.stage("tags")(pipe.make_inputs(items))
    assert [t["name"] for t in out[0]["tags"]] == ["dog", "car"]
    assert out[0]["tags_dropped"] == 1 and out[0]["tags_source"] == "llm"
    assert out[0]["models"] == {"llm": "fake-llm"}
    assert out[0]["prompts"] == {"tag_extraction": "v1"}
    assert pipe.stage("tags").llm.get().calls == 1  # both records in one LLM call


def test_tag_stage_retries_malformed_then_succeeds():
    answers = iter(["not json at all", '{"tags": [{"name": "dog"}]}',
                    json.dumps({"tags": F.TAGS[F.DESC_DOG]})])
    seen = []

    def fn(messages):
        seen.append(messages)
        return next(answers)

    stage = DesPipeline(llm=CallableLLM(fn), config=DesConfig(max_retries=2)).stage("tags")
    out = stage([{"key": "k" * 64, "id": "a", "description": F.DESC_DOG, "error": None}])
    assert out[0]["error"] is None and len(out[0]["tags"]) == 2
    assert len(seen) == 3
    # the retry shows the model its own answer and the error
    assert seen[1][-2]["role"] == "assistant" and "not valid" in seen[1][-1]["content"]


def test_tag_stage_gives_up_after_bounded_retries():
    calls = []

    def fn(messages):
        calls.append(1)
        return "{broken"

    stage = DesPipeline(llm=CallableLLM(fn), config=DesConfig(max_retries=1)).stage("tags")
    out = stage([{"key": "k" * 64, "id": "a", "description": F.DESC_DOG, "error": None}])
    assert out[0]["error"]["stage"] == "tags" and "malformed" in out[0]["error"]["message"]
    assert len(calls) == 2


def test_tags_given_with_the_input_skip_the_llm(setup):
    pipe, items, _ = setup
    items[0]["tags"] = [{"name": "dog", "phrase": "the dog on the left", "quality": "blurry", "effect": "negative"}]
    out = pipe.stage("tags")(pipe.make_inputs(items[:1]))
    assert out[0]["tags_source"] == "input" and "llm" not in out[0].get("models", {})
    assert pipe.stage("tags").llm.get().calls == 0


def test_detect_stage_uses_description_phrase_in_one_call(setup):
    pipe, items, _ = setup
    seen = []

    def fn(image, phrase):
        seen.append(phrase)
        return F.detector_fn(image, phrase)

    from giqa.models import CallableDetector

    det = CallableDetector(fn, model_id="d")
    pipe.replace_stage("detect", type(pipe.stage("detect"))(det, pipe.config))
    recs = pipe.stage("detect")(pipe.stage("tags")(pipe.make_inputs(items)))
    assert "the dog on the left" in seen and "dog" not in seen  # T_r, not the bare name
    assert det.calls == 1  # two images, all phrases, one call
    assert recs[0]["detections"][1][0] == {"box": [0.55, 0.5, 0.95, 0.9], "score": 0.9}


def test_refine_filters_multi_box_phrases_and_merges(setup):
    pipe, items, _ = setup
    recs = run_stages(pipe.stages[:3], pipe.make_inputs(items))
    dog, car = recs[0]["regions"]
    assert dog["p_yes"] is None  # one box: not filtered
    assert len(car["p_yes"]) == 2 and car["p_yes"][0] > 0.5 > car["p_yes"][1]
    assert car["boxes"] == [[0.55, 0.5, 0.95, 0.9]]  # the dark candidate was rejected
    sky, trees = recs[1]["regions"]
    # the two touching small tree boxes survive the filter and merge into one
    assert trees["boxes"] == [[0.1, 0.5, 0.5, 0.7]]


@pytest.mark.parametrize("policy,expected", [("keep_best", 1), ("drop", 0)])
def test_refine_when_every_box_is_rejected(tmp_path, policy, expected):
    items = F.make_dataset(tmp_path, 1)
    pipe = DesPipeline(llm=F.make_llm(), detector=F.make_detector(),
                       quality_filter=F.CallableQualityFilter(lambda c, q: 0.1),
                       config=DesConfig(root=str(tmp_path), filter_all_rejected=policy))
    recs = run_stages(pipe.stages[:3], pipe.make_inputs(items))
    car = [g for g in recs[0]["regions"] if g["tag"]["name"] == "car"]
    assert len(car) == expected
    if expected:
        assert car[0]["boxes"] == [[0.55, 0.5, 0.95, 0.9]]  # ties -> the first (best-scored) box


def test_without_quality_filter_only_merge_runs(tmp_path):
    items = F.make_dataset(tmp_path, 1)
    pipe = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=None,
                       config=DesConfig(root=str(tmp_path)))
    recs = run_stages(pipe.stages[:3], pipe.make_inputs(items))
    car = [g for g in recs[0]["regions"] if g["tag"]["name"] == "car"][0]
    assert len(car["boxes"]) == 2


def test_fuse_writes_grid_boxes_and_seeded_question(setup):
    pipe, items, _ = setup
    recs = run_stages(pipe.stages, pipe.make_inputs(items))
    ans = recs[0]["answer"]
    assert ans.startswith("[The dog on the left](<")
    assert "[red car](<" in ans and ans.endswith("well exposed.")
    from giqa import prompts

    assert recs[0]["question"] in prompts.question_pool()
    # the draw depends on the key only, not on batch order
    again = run_stages(pipe.stages, pipe.make_inputs(items[::-1]))
    assert {r["id"]: r["question"] for r in again} == {r["id"]: r["question"] for r in recs}


def test_question_draw_covers_the_pool(tmp_path):
    pipe = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), config=DesConfig(root=str(tmp_path)))
    fuse = pipe.stage("fuse")
    recs = [{"key": f"{i:064x}", "id": str(i), "description": "The sky is blue.", "error": None,
             "regions": [{"phrase": "sky", "boxes": [[0, 0, 1, 0.5]], "tag": None, "p_yes": None}]}
            for i in range(0, 3000, 7)]
    qs = {r["question"] for r in fuse(recs)}
    assert len(qs) == 15


def test_finalize_builds_valid_samples(setup):
    pipe, items, _ = setup
    samples, errors = pipe.finalize(run_stages(pipe.stages, pipe.make_inputs(items)))
    assert errors == []
    s = samples[0]
    assert isinstance(s, Sample) and s.task.value == "des" and s.image == "img0.png"
    assert [g.phrase for g in s.regions] == ["the dog on the left", "red car"]
    assert s.regions[0].span == (0, len("The dog on the left"))
    assert [t.name for t in s.tags] == ["dog", "car"]
    assert s.provenance.models == {"llm": "fake-llm", "detector": "fake-detector", "quality_filter": "fake-filter"}
    assert s.provenance.thresholds == {"area_thr": 0.256, "cover_thr": 0.95, "filter_threshold": 0.5}
    assert s.provenance.prompts == {"tag_extraction": "v1", "iqa_filter": "v1", "des_questions": "v1"}
    assert s.provenance.random_weights is False
    # the answer round-trips through the text codec to the same boxes on the grid
    from giqa.text import parse_grounded

    parsed = parse_grounded(s.answer)
    assert parsed.text == F.DESC_DOG
    assert [sp.phrase.casefold() for sp in parsed.spans] == ["the dog on the left", "red car"]


def test_ungrounded_description_is_an_error_unless_kept(tmp_path):
    items = [{"image": "a.png", "description": "Nothing here is named.", "id": "x"}]
    F.write_image(tmp_path / "a.png")
    pipe = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), config=DesConfig(root=str(tmp_path)))
    samples, errors = pipe.finalize(run_stages(pipe.stages, pipe.make_inputs(items)))
    assert samples == [] and errors[0]["stage"] == "fuse" and errors[0]["type"] == "NoGroundingError"
    keep = DesPipeline(llm=F.make_llm(), detector=F.make_detector(),
                       config=DesConfig(root=str(tmp_path), keep_ungrounded=True))
    samples, errors = keep.finalize(run_stages(keep.stages, keep.make_inputs(items)))
    assert errors == [] and samples[0].answer == "Nothing here is named." and samples[0].regions == ()


def test_a_backend_exception_fails_only_its_record(setup):
    pipe, items, _ = setup

    def det(image, phrase):
        if phrase == "sky":
            raise RuntimeError("detector exploded")
        return F.detector_fn(image, phrase)

    from giqa.models import CallableDetector

    pipe.replace_stage("detect", type(pipe.stage("detect"))(CallableDetector(det), pipe.config))
    samples, errors = pipe.finalize(run_stages(pipe.stages, pipe.make_inputs(items)))
    assert [s.id for s in samples] == ["s0"]
    assert errors[0]["id"] == "s1" and errors[0]["stage"] == "detect" and "exploded" in errors[0]["message"]


def test_stages_pickle_with_specs_and_build_lazily():
    spec = BackendSpec(kind="llm", name="transformers", settings={"model_id": "x"})
    pipe = DesPipeline(llm=spec, detector=BackendSpec.from_preset("tiny-random", "detector"), config=DesConfig())
    for stage in pipe.stages:
        clone = pickle.loads(pickle.dumps(stage))
        assert clone.name == stage.name and clone.needs == stage.needs and clone.batch_size == stage.batch_size
    assert pipe.stage("tags").llm._instance is None  # nothing built yet


def test_end_to_end_through_the_runner(setup):
    from giqa.pipeline import run_local

    pipe, items, tmp = setup
    summary = run_local(pipe, pipe.make_inputs(items), tmp / "out", progress=False)
    assert summary.succeeded == 2 and summary.failed == 0
    lines = list(read_jsonl(tmp / "out" / "samples.jsonl"))
    assert [Sample.model_validate({**x, "meta": {}}).id for x in lines] == ["s0", "s1"]


@pytest.mark.parametrize("text", ["{" * 200_000, "[" * 200_000 + "]", '{"a": ' * 50_000, "} ] " * 100_000])
def test_json_extraction_fails_cleanly_on_hostile_output(text):
    from giqa.errors import ParseError
    from giqa.pipeline.stages import _extract_json

    with pytest.raises(ParseError):
        _extract_json(text)


def test_json_extraction_finds_the_object_after_chatter():
    from giqa.pipeline.stages import _extract_json

    assert _extract_json('Sure! {not json} here: ```json\n{"tags": []}\n```') == {"tags": []}
