"""DesPipeline stage by stage with in-memory backends (deterministic), on typed records."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

import pipeline_fakes as F
from giqa.models import BackendSpec, CallableDetector, CallableLLM, Detection
from giqa.pipeline import DesConfig, DesPipeline, DesRecord, Region, StageError
from giqa.pipeline.stages import run_stages
from giqa.types import Box, Effect, Sample, Tag


@pytest.fixture()
def setup(tmp_path):
    items = F.make_dataset(tmp_path, 2)
    pipe = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=F.make_filter(),
                       config=DesConfig(root=str(tmp_path)))
    return pipe, items, tmp_path


def _through(pipe, items, *names):
    """Input records run through the named stages (all when none are named)."""
    stages = [pipe.stage(n) for n in names] if names else pipe.stages
    return run_stages(stages, pipe.make_inputs(items))


def test_make_inputs_gives_typed_records_with_content_keys(setup):
    pipe, items, _ = setup
    recs = pipe.make_inputs(items)
    assert all(isinstance(r, DesRecord) and r.ok for r in recs)
    assert [r.id for r in recs] == ["s0", "s1"] and [r.description for r in recs] == [F.DESC_DOG, F.DESC_SKY]
    assert len({r.key for r in recs}) == 2 and all(len(r.key) == 64 for r in recs)
    # same input, same config -> same key; another seed -> another key
    assert pipe.make_inputs(items)[0].key == recs[0].key
    other = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=F.make_filter(),
                        config=DesConfig(root=pipe.config.root, seed=1))
    assert other.make_inputs(items)[0].key != recs[0].key


def test_keys_cover_given_tags_meta_and_backend_settings(setup):
    pipe, items, _ = setup
    base = pipe.make_inputs(items[:1])[0].key
    tagged = pipe.make_inputs([{**items[0], "tags": F.TAGS[F.DESC_DOG][:1]}])[0].key
    retagged = pipe.make_inputs([{**items[0], "tags": F.TAGS[F.DESC_DOG][1:2]}])[0].key
    assert len({base, tagged, retagged}) == 3  # fixed tags never resume into old results
    assert pipe.make_inputs([{**items[0], "source": "spaq"}])[0].key != base
    # two openai specs that differ only in model_id give different keys; timeouts do not matter
    def key_with(**settings):
        llm = BackendSpec(role="llm", name="openai", settings=settings)
        return DesPipeline(llm=llm, detector=F.make_detector(), config=pipe.config).make_inputs(items[:1])[0].key

    assert key_with(model_id="a") != key_with(model_id="b")
    assert key_with(model_id="a", timeout_s=5, base_url="http://x:1/v1") == key_with(model_id="a")


def test_tag_stage_drops_no_impact_and_records_provenance(setup):
    pipe, items, _ = setup
    out = _through(pipe, items, "tags")
    assert all(isinstance(t, Tag) for t in out[0].tags)
    assert [t.name for t in out[0].tags] == ["dog", "car"] and Effect.no_impact not in {t.effect for t in out[0].tags}
    assert out[0].tags_dropped == 1 and out[0].tags_source == "llm"
    assert out[0].models == {"llm": "fake-llm"} and out[0].prompts == {"tag_extraction": "v1"}
    assert pipe.stage("tags").llm.get().calls == 1  # both records in one LLM call


def _record(description=F.DESC_DOG):
    return DesRecord(key="k" * 64, id="a", description=description)


def test_tag_stage_retries_malformed_then_succeeds():
    answers = iter(["not json at all", '{"tags": [{"name": "dog"}]}', json.dumps({"tags": F.TAGS[F.DESC_DOG]})])
    seen = []

    def fn(messages):
        seen.append(messages)
        return next(answers)

    stage = DesPipeline(llm=CallableLLM(fn), config=DesConfig(max_retries=2)).stage("tags")
    (out,) = stage([_record()])
    assert out.ok and len(out.tags) == 2 and len(seen) == 3
    # the retry shows the model its own answer and the error
    assert seen[1][-2]["role"] == "assistant" and "not valid" in seen[1][-1]["content"]


def test_tag_stage_gives_up_after_bounded_retries():
    calls = []
    stage = DesPipeline(llm=CallableLLM(lambda m: calls.append(1) or "{broken"), config=DesConfig(max_retries=1)).stage("tags")
    (out,) = stage([_record()])
    assert isinstance(out.error, StageError) and out.error.stage == "tags" and "malformed" in out.error.message
    assert len(calls) == 2


def test_llm_output_with_control_characters_is_cleaned():
    tags = [{"name": "dog\x07", "phrase": "the dog\u202e on the left", "quality": "blur\x00ry", "effect": "negative"}]
    stage = DesPipeline(llm=CallableLLM(lambda m: json.dumps({"tags": tags}))).stage("tags")
    (out,) = stage([_record()])
    assert (out.tags[0].name, out.tags[0].phrase, out.tags[0].quality) == ("dog", "the dog on the left", "blurry")


def test_tags_given_with_the_input_skip_the_llm(setup):
    pipe, items, _ = setup
    items[0]["tags"] = [{"name": "dog", "phrase": "the dog on the left", "quality": "blurry", "effect": "negative"}]
    (out,) = _through(pipe, items[:1], "tags")
    assert out.tags_source == "input" and "llm" not in out.models and out.tags[0].quality == "blurry"
    assert pipe.stage("tags").llm.get().calls == 0


def test_invalid_given_tags_fail_at_input(setup):
    pipe, items, _ = setup
    (rec,) = pipe.make_inputs([{**items[0], "tags": [{"name": "dog", "effect": "sideways"}]}])
    assert rec.error.stage == "input" and "input tags are invalid" in rec.error.message


def test_detect_stage_uses_description_phrase_in_one_call(setup):
    pipe, items, _ = setup
    seen = []

    def fn(image, phrase):
        seen.append(phrase)
        return F.detector_fn(image, phrase)

    det = CallableDetector(fn, model_id="d")
    pipe.replace_stage("detect", type(pipe.stage("detect"))(det, pipe.config))
    recs = _through(pipe, items, "tags", "detect")
    assert "the dog on the left" in seen and "dog" not in seen  # T_r, not the bare name
    assert det.calls == 1  # two images, all phrases, one call
    car = recs[0].detections[1][0]
    assert isinstance(car, Detection) and isinstance(car.box, Box)
    assert car.box.as_tuple() == (0.55, 0.5, 0.95, 0.9) and car.score == 0.9


def test_refine_filters_multi_box_phrases_and_merges(setup):
    pipe, items, _ = setup
    recs = _through(pipe, items, "input", "tags", "detect", "refine")
    dog, car = recs[0].regions
    assert isinstance(dog, Region) and dog.p_yes is None  # one box: not filtered
    assert car.p_yes is not None and len(car.p_yes) == 2 and car.p_yes[0] > 0.5 > car.p_yes[1]
    assert [b.as_tuple() for b in car.boxes] == [(0.55, 0.5, 0.95, 0.9)]  # the dark candidate was rejected
    sky, trees = recs[1].regions
    # the two touching small tree boxes survive the filter and merge into one
    assert [b.as_tuple() for b in trees.boxes] == [(0.1, 0.5, 0.5, 0.7)]


@pytest.mark.parametrize("policy,expected", [("keep_best", 1), ("drop", 0)])
def test_refine_when_every_box_is_rejected(tmp_path, policy, expected):
    items = F.make_dataset(tmp_path, 1)
    pipe = DesPipeline(llm=F.make_llm(), detector=F.make_detector(),
                       quality_filter=F.CallableQualityFilter(lambda c, q: 0.1),
                       config=DesConfig(root=str(tmp_path), filter_all_rejected=policy))
    (rec,) = _through(pipe, items, "tags", "detect", "refine")
    car = [g for g in rec.regions if g.tag.name == "car"]
    assert len(car) == expected
    if expected:
        assert car[0].boxes[0].as_tuple() == (0.55, 0.5, 0.95, 0.9)  # ties -> the first (best-scored) box


def test_without_quality_filter_only_merge_runs(tmp_path):
    items = F.make_dataset(tmp_path, 1)
    pipe = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=None,
                       config=DesConfig(root=str(tmp_path)))
    (rec,) = _through(pipe, items, "tags", "detect", "refine")
    car = [g for g in rec.regions if g.tag.name == "car"][0]
    assert len(car.boxes) == 2 and car.p_yes is None


def test_fuse_writes_grid_boxes_and_seeded_question(setup):
    pipe, items, _ = setup
    recs = _through(pipe, items)
    ans = recs[0].answer
    assert ans.startswith("[The dog on the left](<")
    assert "[red car](<" in ans and ans.endswith("well exposed.")
    from giqa import prompts

    assert recs[0].question in prompts.question_pool()
    assert [g.span for g in recs[0].regions] == [(0, 19), (41, 48)]
    # the draw depends on the key only, not on batch order
    again = _through(pipe, items[::-1])
    assert {r.id: r.question for r in again} == {r.id: r.question for r in recs}


def test_question_draw_covers_the_pool(tmp_path):
    pipe = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), config=DesConfig(root=str(tmp_path)))
    region = Region(phrase="sky", boxes=(Box.from_xyxy((0, 0, 1, 0.5)),))
    recs = [DesRecord(key=f"{i:064x}", id=str(i), description="The sky is blue.", regions=(region,))
            for i in range(0, 3000, 7)]
    assert len({r.question for r in pipe.stage("fuse")(recs)}) == 15


def test_existing_markup_and_control_characters_are_removed_before_fusion(setup):
    pipe, items, _ = setup
    dirty = "The [dog on the left](<10, 50>) is\x00 blurry\x07, while the red car\u202e is sharp and well exposed."
    (rec,) = pipe.make_inputs([{**items[0], "description": dirty}])
    assert rec.description == "The dog on the left is blurry, while the red car is sharp and well exposed."
    (s,) = pipe.run([{**items[0], "description": dirty}])
    assert s.answer.count("[") == 2 and "[[" not in s.answer and "](<" in s.answer  # no nested markup


def test_too_long_description_is_refused(setup):
    pipe, items, _ = setup
    small = DesPipeline(llm=F.make_llm(), detector=F.make_detector(),
                        config=DesConfig(root=pipe.config.root, max_description_chars=50))
    (rec,) = small.make_inputs([{**items[0], "description": "word " * 20}])
    assert rec.error.stage == "input" and "above the limit of 50" in rec.error.message


def test_finalize_builds_valid_samples(setup):
    pipe, items, _ = setup
    samples, errors = pipe.finalize(_through(pipe, items))
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
    assert s.provenance.extra["run"]["fingerprint"] == pipe.fingerprint()
    # the answer round-trips through the text codec to the same boxes on the grid
    from giqa.text import parse_grounded

    parsed = parse_grounded(s.answer)
    assert parsed.text == F.DESC_DOG
    assert [sp.phrase.casefold() for sp in parsed.spans] == ["the dog on the left", "red car"]


def test_run_in_memory(setup):
    pipe, items, _ = setup
    samples = pipe.run(items)
    assert [s.id for s in samples] == ["s0", "s1"] and all(isinstance(s, Sample) for s in samples)
    from giqa.pipeline import RecordErrors

    with pytest.raises(RecordErrors, match="missing.png") as info:
        pipe.run(items + [{"id": "m", "image": "missing.png", "description": F.DESC_DOG}])
    assert [s.id for s in info.value.outputs] == ["s0", "s1"] and info.value.errors[0]["stage"] == "input"
    assert len(pipe.run(items + [{"id": "m", "image": "missing.png", "description": "x"}], errors="skip")) == 2


def test_ungrounded_description_is_an_error_unless_kept(tmp_path):
    items = [{"image": "a.png", "description": "Nothing here is named.", "id": "x"}]
    F.write_image(tmp_path / "a.png")
    pipe = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), config=DesConfig(root=str(tmp_path)))
    samples, errors = pipe.finalize(_through(pipe, items))
    assert samples == [] and errors[0]["stage"] == "fuse" and errors[0]["type"] == "NoGroundingError"
    keep = DesPipeline(llm=F.make_llm(), detector=F.make_detector(),
                       config=DesConfig(root=str(tmp_path), keep_ungrounded=True))
    (s,) = keep.run(items)
    assert s.answer == "Nothing here is named." and s.regions == ()


def test_a_backend_exception_fails_only_its_record(setup):
    pipe, items, _ = setup

    def det(image, phrase):
        if phrase == "sky":
            raise RuntimeError("detector exploded")
        return F.detector_fn(image, phrase)

    pipe.replace_stage("detect", type(pipe.stage("detect"))(CallableDetector(det), pipe.config))
    samples, errors = pipe.finalize(_through(pipe, items))
    assert [s.id for s in samples] == ["s0"]
    assert errors[0]["id"] == "s1" and errors[0]["stage"] == "detect" and "exploded" in errors[0]["message"]


def test_stages_pickle_with_specs_and_build_lazily():
    spec = BackendSpec(role="llm", name="transformers", settings={"model_id": "x"})
    pipe = DesPipeline(llm=spec, detector=BackendSpec.from_preset("tiny-random", "detector"), config=DesConfig())
    for stage in pipe.stages:
        clone = pickle.loads(pickle.dumps(stage))
        assert clone.name == stage.name and clone.needs == stage.needs and clone.batch_size == stage.batch_size
    assert not pipe.stage("tags").llm.built  # nothing built yet


def test_records_are_frozen_and_cross_processes_as_json(setup):
    from giqa.pipeline.records import from_json, to_json

    pipe, items, _ = setup
    recs = _through(pipe, items)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recs[0].answer = "changed"  # type: ignore[misc]
    back = [from_json(DesRecord, json.loads(json.dumps(to_json(r)))) for r in recs]
    assert back == recs
    assert isinstance(back[0].regions[0].boxes[0], Box) and isinstance(back[0].detections[0][0], Detection)


def test_end_to_end_through_the_runner(setup):
    from giqa.data.io import read_jsonl
    from giqa.pipeline import run_local

    pipe, items, tmp = setup
    summary = run_local(pipe, items, tmp / "out", progress=False)
    assert summary.succeeded == 2 and summary.failed == 0
    assert [Sample.model_validate(x).id for x in read_jsonl(tmp / "out" / "samples.jsonl")] == ["s0", "s1"]


@pytest.mark.parametrize("text", ["{" * 200_000, "[" * 200_000 + "]", '{"a": ' * 50_000, "} ] " * 100_000])
def test_json_extraction_fails_cleanly_on_hostile_output(text):
    from giqa.errors import ParseError
    from giqa.pipeline.stages import _extract_json

    with pytest.raises(ParseError):
        _extract_json(text)


def test_json_extraction_finds_the_object_after_chatter():
    from giqa.pipeline.stages import _extract_json

    assert _extract_json('Sure! {not json} here: ```json\n{"tags": []}\n```') == {"tags": []}
