"""run_ray on a local 2-CPU Ray: same records as run_local, resume after an interruption,
stage failures kept in errors.jsonl and retried. One Ray session for the whole module.
The options for clusters with GPUs: tests/test_ray_plan.py."""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from pathlib import Path

import pytest

import pipeline_fakes as F
from giqa.data.io import read_jsonl
from giqa.models import CallableDetector, CallableLLM
from giqa.pipeline import DesConfig, DesPipeline, VqaConfig, VqaPipeline, run_local

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")
from giqa.pipeline.ray_runner import StageOptions, read_run_samples, run_ray  # noqa: E402

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent
_OBJ = re.compile(r"^- (.+?): (.+)$", re.M)


@pytest.fixture(scope="module")
def ray_session():
    # Workers import the test helpers (pipeline_fakes, this module) by name.
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}})
    yield
    ray.shutdown()


def vqa_llm_fn(messages):
    """Two Yes/No pairs (one Yes, one No) and one open pair about the first key object."""
    text = messages[-1]["content"]
    name, quality = _OBJ.findall(text)[0]
    if "Yes/No questions" in text:
        qa = [{"question": f"Is the {name} {quality}?", "answer": "Yes", "object": name},
              {"question": f"Is the {name} pixelated?", "answer": "No", "object": name}]
    else:
        qa = [{"question": f"What is {quality} in the image?", "answer": f"The {name}", "object": name}]
    return json.dumps({"qa": qa})


def flaky_detector_fn(image, phrase):
    if phrase == "sky":
        raise RuntimeError("injected detector failure")
    return F.detector_fn(image, phrase)


def _des(root, detector=None):
    return DesPipeline(llm=F.make_llm(), detector=detector or F.make_detector(), quality_filter=F.make_filter(),
                       config=DesConfig(root=str(root)))


def _by_key(samples):
    return sorted((json.loads(s) if isinstance(s, str) else s for s in samples),
                  key=lambda s: (s["meta"]["key"], s["id"]))


def _keys(out_dir):
    return Counter(s["meta"]["key"] for s in read_run_samples(out_dir))


def test_ray_and_local_give_the_same_records(ray_session, tmp_path, caplog):
    items = F.make_dataset(tmp_path / "img", 5) + [{"image": "missing.png", "description": "x", "id": "bad"}]
    des = _des(tmp_path / "img")
    inputs = des.make_inputs(items)
    run_local(des, inputs, tmp_path / "local", progress=False)
    # raw items: make_inputs runs in Ray tasks and must give the same keys. detect and refine in
    # actor pools with their pixels decoded and cropped in the CPU tasks before them (the GPU
    # default), tags as tasks (actors are slow to start on 2 cores; the VQA run below has one)
    with caplog.at_level(logging.INFO, logger="giqa.pipeline.ray_runner"):
        s = run_ray(des, items, tmp_path / "ray", batch_size=2, progress=False,
                    stage_options={"tags": {"actors": False}, "detect": {"prepare": True}, "refine": {"prepare": True}})
    assert "tasks[input, tags] + detect's pixels" in caplog.text and "tasks[] + refine's pixels" in caplog.text
    assert (s.succeeded, s.failed) == (5, 1)
    local = list(read_jsonl(tmp_path / "local" / "samples.jsonl"))
    assert _by_key(read_jsonl(tmp_path / "ray" / "samples.jsonl")) == _by_key(local)
    errs = [{k: e[k] for k in ("key", "id", "stage", "type")} for e in read_jsonl(tmp_path / "ray" / "errors.jsonl")]
    assert errs == [{k: e[k] for k in ("key", "id", "stage", "type")} for e in read_jsonl(tmp_path / "local" / "errors.jsonl")]
    assert errs[0]["id"] == "bad" and errs[0]["stage"] == "input"

    # VQA: several samples per record (group_size), Parquet shards as output
    vqa = VqaPipeline(llm=CallableLLM(vqa_llm_fn, model_id="fake-vqa"), config=VqaConfig())
    vin = vqa.make_inputs(local)
    run_local(vqa, vin, tmp_path / "vqa_local", progress=False)
    sv = run_ray(vqa, vin, tmp_path / "vqa_ray", batch_size=2, progress=False, output_format="parquet",
                 stage_options={"generate": {"concurrency": 1, "batch_size": 2}})
    vqa_local = list(read_jsonl(tmp_path / "vqa_local" / "samples.jsonl"))
    assert len(vqa_local) == 15 and sv.samples_written == 15
    assert _by_key(read_run_samples(tmp_path / "vqa_ray")) == _by_key(vqa_local)
    assert list((tmp_path / "vqa_ray" / "samples").glob("part-*.parquet"))


def test_interrupted_run_resumes_without_loss_or_duplicates(ray_session, tmp_path):
    items = F.make_dataset(tmp_path / "img", 8)
    des = _des(tmp_path / "img")
    inputs = des.make_inputs(items)
    # tasks instead of actor pools: starting actors is the slow part on 2 cores (the actor path
    # is covered by the test above); blocks of 2 records so that the run has 4 of them
    small = {n: StageOptions(batch_size=2, actors=False) for n in ("input", "tags", "detect", "refine", "fuse")}

    class Stop(Exception):
        pass

    def stop_after_first(blocks, records):
        raise Stop

    for fmt in ("jsonl", "parquet"):
        out = tmp_path / fmt
        with pytest.raises(Stop):
            run_ray(des, inputs, out, batch_size=2, progress=False, output_format=fmt,
                    stage_options=small, on_block=stop_after_first)
        written = _keys(out)
        assert 0 < sum(written.values()) < 8 and set(written.values()) == {1}
        s = run_ray(des, inputs, out, batch_size=2, progress=False, output_format=fmt, stage_options=small)
        assert s.already_done == len(written) and s.processed == 8 - len(written)
        keys = _keys(out)
        assert keys == Counter({r.key: 1 for r in inputs})  # every record exactly once
        assert s.total_samples == 8


def test_stage_failures_are_kept_and_retried(ray_session, tmp_path):
    items = F.make_dataset(tmp_path / "img", 4)  # s1, s3 describe a sky: the detector fails on them
    flaky = _des(tmp_path / "img", detector=CallableDetector(flaky_detector_fn, model_id="fake-detector"))
    tasks = {n: StageOptions(actors=False) for n in ("tags", "detect", "refine")}
    s = run_ray(flaky, flaky.make_inputs(items), tmp_path / "out", batch_size=4, progress=False, stage_options=tasks)
    assert (s.succeeded, s.failed, s.errors_by_stage) == (2, 2, {"detect": 2})
    errors = list(read_jsonl(tmp_path / "out" / "errors.jsonl"))
    assert sorted(e["id"] for e in errors) == ["s1", "s3"]
    assert all("injected detector failure" in e["message"] for e in errors)

    healthy = _des(tmp_path / "img")  # same model ids -> same keys
    s2 = run_ray(healthy, healthy.make_inputs(items), tmp_path / "out", batch_size=4, progress=False)
    assert (s2.processed, s2.skipped_failed, s2.already_done) == (0, 2, 2)  # failures are not retried by default
    s3 = run_ray(healthy, healthy.make_inputs(items), tmp_path / "out", batch_size=4, progress=False,
                 retry_failed=True, stage_options=tasks)
    assert (s3.processed, s3.succeeded, s3.total_errors) == (2, 2, 0)
    assert sorted(x["id"] for x in read_jsonl(tmp_path / "out" / "samples.jsonl")) == ["s0", "s1", "s2", "s3"]
    assert list(read_jsonl(tmp_path / "out" / "errors.jsonl")) == []


def test_bad_options_fail_before_running(ray_session, tmp_path):
    des = _des(tmp_path)
    with pytest.raises(ValueError, match="unknown stage"):
        run_ray(des, [], tmp_path / "o", stage_options={"nope": {}}, progress=False)
    with pytest.raises(ValueError, match="unknown stage option"):
        run_ray(des, [], tmp_path / "o", stage_options={"tags": {"gpus": 1}}, progress=False)
    with pytest.raises(ValueError, match="output_format"):
        run_ray(des, [], tmp_path / "o", output_format="csv", progress=False)


def test_inputs_from_sharded_jsonl_and_parquet(ray_session, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    items = F.make_dataset(tmp_path / "img", 4)
    shards = tmp_path / "items"
    shards.mkdir()
    (shards / "part-0.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items[:2]))
    pq.write_table(pa.Table.from_pylist(items[2:]), shards / "part-1.parquet")
    des = _des(tmp_path / "img")
    tasks = {n: StageOptions(actors=False) for n in ("tags", "detect", "refine")}
    s = run_ray(des, shards, tmp_path / "out", batch_size=2, progress=False, stage_options=tasks,
                output_format="jsonl-shards")
    assert (s.inputs, s.succeeded) == (4, 4)
    assert sorted(x["id"] for x in read_run_samples(tmp_path / "out")) == ["s0", "s1", "s2", "s3"]
    assert _keys(tmp_path / "out") == Counter({r.key: 1 for r in des.make_inputs(items)})


_DRIVER = """
import os, sys, time
sys.path.insert(0, {tests!r})
import pipeline_fakes as F
from giqa.models import CallableLLM
from giqa.pipeline import DesConfig, DesPipeline
from giqa.pipeline.ray_runner import run_ray

def slow(messages):
    time.sleep(0.5)
    return F.tag_llm_fn(messages)

def report(blocks, records):
    from giqa.pipeline._reaper import descendants
    print("PIDS", " ".join(map(str, descendants([os.getpid()])[1:])), flush=True)
    time.sleep(600)  # hold the driver here until the test kills it

items = F.make_dataset(__import__("pathlib").Path({root!r}), 4)
pipe = DesPipeline(llm=CallableLLM(slow), detector=F.make_detector(), config=DesConfig(root={root!r}))
run_ray(pipe, items, {out!r}, batch_size=2, progress=False, on_block=report,
        init_kwargs={{"num_cpus": 1}}, stage_options={{n: {{"actors": False}} for n in ("tags", "detect")}})
"""


def test_a_killed_driver_leaves_no_ray_processes(tmp_path):
    """The Ray processes a driver starts end when the driver is SIGKILLed (the watcher in
    giqa.pipeline._reaper), instead of running on forever."""
    import signal
    import subprocess
    import sys
    import time

    from giqa.pipeline._reaper import _alive

    script = tmp_path / "driver.py"
    script.write_text(_DRIVER.format(tests=str(TESTS), root=str(tmp_path / "img"), out=str(tmp_path / "out")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    try:
        line = ""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not line.startswith("PIDS"):
            line = proc.stdout.readline() or line
            if proc.poll() is not None:
                pytest.fail("the driver exited before its first block")
        pids = [int(x) for x in line.split()[1:]]
        assert len(pids) >= 3  # gcs_server, raylet, workers, agents, the watcher
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.5)
    left = [p for p in pids if _alive(p)]
    for p in left:  # never leave processes behind, even when the test fails
        os.kill(p, signal.SIGKILL)
    assert left == []
