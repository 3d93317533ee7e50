"""What run_ray builds on a cluster, without starting Ray: the stage options resolved for
simulated clusters (the cluster's resource function is replaced, Ray is not), and the pixel
hand-over from a CPU task to a model stage's actor, called in-process."""

from __future__ import annotations

import pytest

import pipeline_fakes as F
from giqa.errors import ConfigError
from giqa.models import BackendSpec
from giqa.pipeline import DesConfig, DesPipeline, VqaPipeline, run_local
from giqa.pipeline import ray_runner as rr
from giqa.pipeline.records import DesRecord
from giqa.pipeline.stages import run_stages

LLM = BackendSpec(role="llm", name="transformers", settings={"model_id": "meta-llama/Meta-Llama-3-8B-Instruct"})
SERVED_LLM = BackendSpec(role="llm", name="openai", settings={"model_id": "llama-3-8b", "base_url": "http://h:8000/v1"})
DETECTOR = BackendSpec(role="detector", name="grounding-dino", settings={"model_id": "IDEA-Research/grounding-dino-base"})
FILTER = BackendSpec(role="quality_filter", name="llava", settings={"model_id": "llava-hf/llava-1.5-7b-hf"})


def plan(pipeline, cluster, monkeypatch, **options):
    """``(kind, stages, prepares, num_gpus, concurrency)`` of each step on ``cluster``."""
    monkeypatch.setattr(rr, "_cluster_resources", lambda: dict(cluster))
    return [(s.kind, s.stages, s.prepares, s.options.num_gpus, s.options.concurrency)
            for s in rr.ray_plan(pipeline, options)]


def test_eight_gpus_shared_by_three_model_stages(monkeypatch):
    des = DesPipeline(llm=LLM, detector=DETECTOR, quality_filter=FILTER)
    assert plan(des, {"CPU": 96, "GPU": 8}, monkeypatch) == [
        ("tasks", ("input",), None, 0.0, None),
        ("actors", ("tags",), None, 1.0, (1, 6)),  # every pool keeps 1 actor; any one can grow to 6
        ("tasks", (), "detect", 0.0, None),  # decoding for the detector's actors
        ("actors", ("detect",), None, 1.0, (1, 6)),
        ("tasks", (), "refine", 0.0, None),  # decoding and cropping for the filter's actors
        ("actors", ("refine",), None, 1.0, (1, 6)),
        ("tasks", ("fuse",), None, 0.0, None),
    ]
    steps = rr.ray_plan(des, resources={"CPU": 96, "GPU": 8})
    assert steps[-1].finalize and [s.options.batch_size for s in steps if s.kind == "actors"] == [8, 4, 8]
    assert steps[2].describe() == "tasks[] + detect's pixels gpus=0 cpus=1 batch=4"  # in the detector's batches


def test_a_served_llm_takes_no_gpu(monkeypatch):
    des = DesPipeline(llm=SERVED_LLM, detector=DETECTOR, quality_filter=FILTER)
    got = plan(des, {"CPU": 96, "GPU": 8}, monkeypatch)
    assert [(k, n, g, c) for k, n, _, g, c in got if k == "actors"] == [
        ("actors", ("tags",), 0.0, 1), ("actors", ("detect",), 1.0, (1, 7)), ("actors", ("refine",), 1.0, (1, 7))]


def test_one_gpu_stage_gets_one_actor_per_gpu(monkeypatch):
    vqa = VqaPipeline(llm=LLM)
    assert plan(vqa, {"CPU": 96, "GPU": 8}, monkeypatch) == [
        ("actors", ("generate",), None, 1.0, 8), ("tasks", ("filter", "ground"), None, 0.0, None)]
    assert plan(vqa, {"CPU": 8, "GPU": 1}, monkeypatch)[0][3:] == (1.0, 1)


def test_fewer_gpus_than_gpu_stages_share_them(monkeypatch):
    des = DesPipeline(llm=LLM, detector=DETECTOR, quality_filter=FILTER)
    two = plan(des, {"CPU": 16, "GPU": 2}, monkeypatch)
    assert [(g, c) for k, _, _, g, c in two if k == "actors"] == [(0.5, 1)] * 3  # packs: 2 + 1 actors
    one = plan(des, {"CPU": 16, "GPU": 1}, monkeypatch)
    assert [(g, c) for k, _, _, g, c in one if k == "actors"] == [(0.3333, 1)] * 3


def test_given_options_win_and_the_rest_fill_the_gpus(monkeypatch):
    des = DesPipeline(llm=LLM, detector=DETECTOR, quality_filter=FILTER)
    got = plan(des, {"CPU": 96, "GPU": 8}, monkeypatch,
               tags={"num_gpus": 0}, detect={"concurrency": 2}, refine={"num_gpus": 0.5, "prepare": False})
    actors = {n[0]: (g, c) for k, n, _, g, c in got if k == "actors"}
    # detect holds 2 GPUs: refine at half a GPU each grows to (8 - 2) / 0.5 = 12 actors
    assert actors == {"tags": (0.0, 1), "detect": (1.0, 2), "refine": (0.5, (1, 12))}
    assert [p for k, _, p, _, _ in got if k == "tasks"] == [None, "detect", None]
    with pytest.raises(ConfigError, match="no pixel work"):
        plan(des, {"CPU": 8}, monkeypatch, tags={"prepare": True})


def test_backends_without_a_device_and_cpu_clusters_take_no_gpu(monkeypatch):
    fakes = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=F.make_filter())
    assert all(g == 0.0 for *_, g, _ in plan(fakes, {"CPU": 96, "GPU": 8}, monkeypatch))
    on_cpu = DesPipeline(llm=LLM, detector=BackendSpec(role="detector", name="grounding-dino",
                                                       settings={"model_id": "x", "device": "cpu"}))
    assert [g for k, n, _, g, _ in plan(on_cpu, {"CPU": 8, "GPU": 8}, monkeypatch) if k == "actors"] == [1.0, 0.0]
    des = DesPipeline(llm=LLM, detector=DETECTOR, quality_filter=FILTER)
    small = rr._resolve_options(des.stages, {"detect": {"concurrency": [1, 3], "batch_size": 2}}, {"CPU": 2})
    assert [(o.num_gpus, o.num_cpus, o.prepare, actor) for o, actor in small] == [
        (0.0, 1.0, False, False), (0.0, 0.25, False, True), (0.0, 0.25, False, True), (0.0, 0.25, False, True),
        (0.0, 1.0, False, False)]  # no GPU, so no pixel hand-over by default
    assert small[2][0].concurrency == (1, 3) and small[2][0].batch_size == 2
    no_filter = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=None)
    assert [actor for _, actor in rr._resolve_options(no_filter.stages, {}, {"CPU": 2})] == [False, True, True, False, False]


def test_pixels_prepared_in_a_task_serve_the_actor_without_the_images(tmp_path):
    """The CPU task decodes and crops; the actor, whose process could not read the images (they
    are gone), gives the same records as the in-process run."""
    pytest.importorskip("pyarrow")
    items = F.make_dataset(tmp_path / "img", 4)
    des = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=F.make_filter(),
                      config=DesConfig(root=str(tmp_path / "img")))
    inputs = des.make_inputs(items)
    expected = run_stages(des.stages[:4], list(inputs))
    assert any(len(d) > 1 for r in expected for d in r.detections)  # refine crops something

    from giqa.pipeline.des import clear_image_cache

    table = rr._encode(run_stages(des.stages[:2], list(inputs)))
    for name in ("detect", "refine"):
        clear_image_cache()
        table = rr._apply_stages(table, [], DesRecord, prepare=des.stage(name))  # the task before the actor
        assert table.column("pixels").null_count == 0
        (tmp_path / "img").rename(tmp_path / "away")  # the actor cannot read the images
        table = rr._StageActor(des.stage(name), DesRecord)(table)
        (tmp_path / "away").rename(tmp_path / "img")
        assert "pixels" not in table.column_names
    got = rr._decode(table, DesRecord)
    assert [r.error for r in got] == [None] * 4
    assert [(r.detections, r.regions) for r in got] == [(r.detections, r.regions) for r in expected]


def test_prepared_pixels_are_what_the_stage_would_read(tmp_path):
    items = F.make_dataset(tmp_path / "img", 4)
    des = DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=F.make_filter(),
                      config=DesConfig(root=str(tmp_path / "img")))
    tagged = run_stages(des.stages[:2], des.make_inputs(items))
    (tmp_path / "img" / "img3.png").unlink()  # gone after the input check
    detect = des.stage("detect")
    pixels = detect.prepare_pixels(tagged)
    assert pixels[-1] is None  # left to the stage, which fails the record itself
    assert [(p[0].dtype.name, p[0].shape) for p in pixels[:-1]] == [("uint8", (48, 64 + i, 3)) for i in range(3)]
    with detect.using_pixels({r.key: p for r, p in zip(tagged, pixels) if p is not None}):
        given = detect(tagged)
    assert detect._given == {}
    assert given == detect(tagged) and given[-1].error.stage == "detect"
    refine = des.stage("refine")
    crops = refine.prepare_pixels(given)
    assert [len(c) if c else 0 for c in crops] == [2, 2, 2, 0]  # "red car", "the trees": two boxes each
    assert crops[0][1].shape == (int(0.25 * 48) - int(0.05 * 48), int(0.25 * 64) - int(0.05 * 64), 3)
