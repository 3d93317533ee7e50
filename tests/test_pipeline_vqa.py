"""VqaPipeline and balancing with in-memory backends."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipeline_fakes as F
from giqa.models import CallableLLM
from giqa.pipeline import DesConfig, DesPipeline, QAItem, Region, VqaConfig, VqaPipeline, VqaRecord, balance_vqa
from giqa.pipeline.balance import balance_indices, vqa_counts, vqa_label
from giqa.pipeline.stages import run_stages
from giqa.types import Box, Sample, VqaKind, VqaMode

YES_NO = [
    {"question": "Is the dog blurry?", "answer": "Yes, it is.", "object": "dog"},
    {"question": "Is the red car blurry", "answer": "no", "object": "car"},
    {"question": "Is the image noisy?", "answer": "Yes", "object": None},  # no key object -> dropped at ground
    {"question": "Is the weather nice today?", "answer": "No", "object": None},  # unrelated -> filtered
    {"question": "Is the dog blurry?", "answer": "Yes", "object": "dog"},  # duplicate
    {"question": "Is the car fast?", "answer": "Maybe", "object": "car"},  # not yes/no
]
OPEN = [
    {"question": "What is blurry in the image?", "answer": "The dog", "object": "dog"},
    {"question": "How sharp is the red car?", "answer": "very sharp", "object": "car"},
    {"question": "Why is the dog not clear?", "answer": "It moved fast while the shutter was open for long", "object": "dog"},
    {"question": "Describe the car.", "answer": "Red", "object": "car"},  # not an open question
]


def vqa_llm_fn(messages):
    text = messages[-1]["content"]
    assert "- dog: blurry (<" in text and "- car: sharp (<" in text  # names, qualities and boxes
    return json.dumps({"qa": YES_NO if "Yes/No questions" in text else OPEN})


@pytest.fixture()
def des_samples(tmp_path):
    items = F.make_dataset(tmp_path, 1)
    pipe = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=F.make_filter(),
                       config=DesConfig(root=str(tmp_path)))
    return pipe.run(items)


def test_vqa_stages(des_samples):
    pipe = VqaPipeline(llm=CallableLLM(vqa_llm_fn, model_id="fake-vqa"), config=VqaConfig())
    recs = pipe.make_inputs(des_samples)
    assert isinstance(recs[0], VqaRecord) and recs[0].ok
    assert all(isinstance(o, Region) for o in recs[0].objects)
    assert [o.phrase for o in recs[0].objects] == ["the dog on the left", "red car"]
    gen = pipe.stage("generate")(recs)
    assert len(gen[0].qa) == len(YES_NO) + len(OPEN) and all(isinstance(q, QAItem) for q in gen[0].qa)
    filt = pipe.stage("filter")(gen)
    assert filt[0].qa_dropped == {"unrelated": 1, "duplicate": 1, "not_yes_no": 1,
                                  "answer_too_long": 1, "not_open_question": 1}
    kept = [(q.kind, q.question, q.answer) for q in filt[0].qa]
    assert kept == [
        ("yes_no", "Is the dog blurry?", "Yes."),
        ("yes_no", "Is the red car blurry?", "No."),
        ("yes_no", "Is the image noisy?", "Yes."),
        ("what", "What is blurry in the image?", "The dog."),
        ("how", "How sharp is the red car?", "Very sharp."),
    ]
    (rec,) = pipe.stage("ground")(filt)
    grounded = rec.qa
    assert grounded[0].question.startswith("Is the [dog](<") and grounded[0].mode == "referring"
    assert grounded[1].question.startswith("Is the [red car](<")  # the phrase beats the bare name
    assert grounded[2].question.startswith("What is blurry")
    assert grounded[2].answer.startswith("The [dog](<") and grounded[2].mode == "grounding"
    assert all(isinstance(b, Box) for q in grounded for b in q.region.boxes)
    assert len(grounded) == 4 and rec.qa_ungrounded_dropped == 1


def test_vqa_finalize(des_samples):
    pipe = VqaPipeline(llm=CallableLLM(vqa_llm_fn, model_id="fake-vqa"), config=VqaConfig())
    samples, errors = pipe.finalize(run_stages(pipe.stages, pipe.make_inputs(des_samples)))
    assert errors == []
    assert [s.vqa_kind for s in samples] == [VqaKind.yes_no, VqaKind.yes_no, VqaKind.what, VqaKind.how]
    assert [s.meta.get("answer_label") for s in samples] == ["yes", "no", None, None]
    s = samples[0]
    assert s.id == "s0-vqa-00" and s.task.value == "vqa" and s.vqa_mode is VqaMode.referring
    assert s.regions[0].phrase == "dog" and len(s.regions[0].boxes) == 1
    assert s.provenance.models == {"des_llm": "fake-llm", "des_detector": "fake-detector",
                                   "des_quality_filter": "fake-filter", "llm": "fake-vqa"}
    assert s.provenance.prompts["vqa_yes_no"] == "v1"


def test_vqa_bad_inputs_and_failures(des_samples):
    pipe = VqaPipeline(llm=CallableLLM(lambda m: "no json"), config=VqaConfig(max_retries=0))
    recs = pipe.make_inputs([des_samples[0], {"id": "junk"}, "not a sample"])
    assert recs[0].ok
    assert recs[1].error.stage == "input" and recs[2].error.stage == "input"
    samples, errors = pipe.finalize(run_stages(pipe.stages, recs))
    assert samples == [] and [e["stage"] for e in errors] == ["generate", "input", "input"]


def test_vqa_all_filtered_is_an_error(des_samples):
    pipe = VqaPipeline(llm=CallableLLM(lambda m: '{"qa": [{"question": "Is it Monday?", "answer": "No"}]}'))
    samples, errors = pipe.finalize(run_stages(pipe.stages, pipe.make_inputs(des_samples)))
    assert samples == [] and errors[0]["stage"] == "filter" and errors[0]["type"] == "NoQAError"


def _fake(i, kind, answer):
    return Sample(id=f"q{i}", image="a.png", task="vqa", question="Is it?", answer=answer, vqa_kind=kind)


def test_balance_counts_and_seed():
    samples = ([_fake(i, "yes_no", "Yes.") for i in range(10)] + [_fake(100 + i, "yes_no", "No.") for i in range(4)]
               + [_fake(200 + i, "what", "Blur.") for i in range(9)])
    out = balance_vqa(samples, seed=3)
    assert vqa_counts(out) == {"yes": 4, "no": 4, "open": 8, "other": 0}
    assert {s.id for s in balance_vqa(samples[::-1], seed=3)} == {s.id for s in out}  # order-free draw
    assert {s.id for s in balance_vqa(samples, seed=4)} != {s.id for s in out}
    # dicts work too
    assert [s["id"] for s in balance_vqa([s.model_dump(mode="json") for s in samples], seed=3)] == [s.id for s in out]


def test_vqa_label():
    assert vqa_label(_fake(0, "yes_no", "Yes.")) == "yes"
    assert vqa_label(_fake(0, "yes_no", "no")) == "no"
    assert vqa_label(_fake(0, "yes_no", "Perhaps")) is None
    assert vqa_label(_fake(0, "why", "Blur.")) == "open"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["yes", "no", "open", None]), max_size=60), st.integers(0, 2**31))
def test_balance_indices_properties(labels, seed):
    ids = [f"id{i}" for i in range(len(labels))]
    keep = balance_indices(labels, ids, seed=seed)
    c = Counter(labels[i] for i in keep)
    n = Counter(labels)
    assert c["yes"] == c["no"] and c["yes"] + c["no"] == c["open"]
    assert c["open"] == min(2 * min(n["yes"], n["no"]), n["open"]) // 2 * 2
    assert None not in c and keep == sorted(set(keep))
    # order independence: the same ids are chosen whatever the input order
    perm = list(range(len(labels)))[::-1]
    keep2 = balance_indices([labels[i] for i in perm], [ids[i] for i in perm], seed=seed)
    assert {ids[perm[i]] for i in keep2} == {ids[i] for i in keep}


def test_vqa_through_the_runner_writes_groups_and_resumes(des_samples, tmp_path):
    from giqa.data.io import read_jsonl
    from giqa.pipeline import run_local

    llm = CallableLLM(vqa_llm_fn, model_id="fake-vqa")
    pipe = VqaPipeline(llm=llm, config=VqaConfig())
    s = run_local(pipe, des_samples, tmp_path / "out", progress=False)
    assert (s.succeeded, s.samples_written) == (1, 4)
    lines = list(read_jsonl(tmp_path / "out" / "samples.jsonl"))
    assert [x["meta"]["group_size"] for x in lines] == [4, 4, 4, 4]
    # a group cut short by a crash is dropped and redone, never duplicated
    text = (tmp_path / "out" / "samples.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "out" / "samples.jsonl").write_text("".join(text[:2]))
    s2 = run_local(pipe, des_samples, tmp_path / "out", progress=False)
    assert (s2.already_done, s2.processed) == (0, 1)
    ids = [x["id"] for x in read_jsonl(tmp_path / "out" / "samples.jsonl")]
    assert ids == [f"s0-vqa-0{i}" for i in range(4)]
    s3 = run_local(pipe, des_samples, tmp_path / "out", progress=False)
    assert (s3.already_done, s3.processed) == (1, 0)


def test_vqa_answers_lose_control_characters(des_samples):
    qa = [{"question": "Is the dog\u202e blurry?", "answer": "Yes\x07", "object": "dog"}]
    pipe = VqaPipeline(llm=CallableLLM(lambda m: json.dumps({"qa": qa})), config=VqaConfig(open_per_sample=0))
    (s,) = pipe.run(des_samples)
    assert s.answer == "Yes." and "\u202e" not in s.question and s.question.startswith("Is the [dog](<")


def test_vqa_keys_cover_the_des_sample(des_samples):
    pipe = VqaPipeline(llm=CallableLLM(vqa_llm_fn), config=VqaConfig())
    (a,) = pipe.make_inputs(des_samples)
    changed = des_samples[0].model_copy(update={"description": des_samples[0].description + " Also noisy."})
    (b,) = pipe.make_inputs([changed])
    assert a.key != b.key
    meta_only = des_samples[0].model_copy(update={"meta": {**des_samples[0].meta, "group_size": 7}})
    assert pipe.make_inputs([meta_only])[0].key == a.key  # run bookkeeping is not content
