"""run_local: resume (incl. SIGKILL), retry-failed, bad input, output files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pipeline_fakes as F
from giqa.models import CallableLLM
from giqa.pipeline import DesConfig, DesPipeline, run_local
from giqa.pipeline.records import read_jsonl

TESTS = Path(__file__).parent


def _pipe(root, **kw):
    return DesPipeline(llm=kw.pop("llm", F.make_llm()), detector=F.make_detector(), quality_filter=F.make_filter(),
                       config=DesConfig(root=str(root), **kw))


def _ids(path):
    return [s["id"] for s in read_jsonl(path)]


def test_resume_skips_done_records(tmp_path):
    items = F.make_dataset(tmp_path / "img", 6)
    pipe = _pipe(tmp_path / "img")
    s1 = run_local(pipe, pipe.make_inputs(items[:4]), tmp_path / "out", batch_size=3, progress=False)
    assert (s1.succeeded, s1.already_done) == (4, 0)
    llm = F.make_llm()
    pipe2 = _pipe(tmp_path / "img", llm=llm)
    s2 = run_local(pipe2, pipe2.make_inputs(items), tmp_path / "out", batch_size=3, progress=False)
    assert (s2.succeeded, s2.already_done, s2.processed) == (2, 4, 2)
    assert llm.calls == 1  # only the two new records went to the LLM
    assert sorted(_ids(tmp_path / "out" / "samples.jsonl")) == [f"s{i}" for i in range(6)]
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["total_samples"] == 6


def test_duplicate_inputs_run_once(tmp_path):
    items = F.make_dataset(tmp_path / "img", 2)
    pipe = _pipe(tmp_path / "img")
    s = run_local(pipe, pipe.make_inputs(items + items), tmp_path / "out", progress=False)
    assert s.duplicates == 2 and _ids(tmp_path / "out" / "samples.jsonl") == ["s0", "s1"]


def test_bad_inputs_each_give_a_clear_error_record(tmp_path):
    root = tmp_path / "img"
    F.write_image(root / "gray.png", mode="L")
    F.write_image(root / "rgba.png", mode="RGBA")
    F.write_image(root / "cmyk.jpg", mode="CMYK")
    arr16 = np.full((48, 64), 40000, dtype=np.uint16)
    arr16[:14, :19] = 0
    Image.fromarray(arr16).save(root / "deep.png")
    F.write_image(root / "huge.png", size=(400, 300))
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    F.write_image(root / "big.png", size=(128, 96))
    data = (root / "big.png").read_bytes()
    (root / "trunc.png").write_bytes(data[: len(data) * 2 // 3])
    F.write_image(tmp_path / "outside.png")
    os.symlink(tmp_path / "outside.png", root / "link.png")
    d = F.DESC_DOG
    items = [
        {"id": "gray", "image": "gray.png", "description": d},
        {"id": "rgba", "image": "rgba.png", "description": d},
        {"id": "cmyk", "image": "cmyk.jpg", "description": d},
        {"id": "deep", "image": "deep.png", "description": d},
        {"id": "missing", "image": "nope.png", "description": d},
        {"id": "corrupt", "image": "corrupt.jpg", "description": d},
        {"id": "trunc", "image": "trunc.png", "description": d},
        {"id": "huge", "image": "huge.png", "description": d},
        {"id": "empty", "image": "gray.png", "description": "   "},
        {"id": "nodesc", "image": "gray.png"},
        {"id": "dotdot", "image": "../outside.png", "description": d},
        {"id": "abs", "image": str(tmp_path / "outside.png"), "description": d},
        {"id": "link", "image": "link.png", "description": d},
        "not even a dict",
    ]
    pipe = _pipe(root, max_pixels=100_000)
    s = run_local(pipe, pipe.make_inputs(items), tmp_path / "out", progress=False)
    assert sorted(_ids(tmp_path / "out" / "samples.jsonl")) == ["cmyk", "deep", "gray", "rgba"]
    errors = {e["id"]: e for e in read_jsonl(tmp_path / "out" / "errors.jsonl")}
    expect = {
        "missing": ("input", "not found"), "corrupt": ("input", "not a readable image"),
        "trunc": ("detect", "truncated"), "huge": ("input", "decompression-bomb"),
        "empty": ("input", "empty description"), "nodesc": ("input", "empty description"),
        "dotdot": ("input", "escapes"), "abs": ("input", "escapes"), "link": ("input", "escapes"),
        "item-13": ("input", "not an object"),
    }
    assert set(errors) == set(expect)
    for rid, (stage, words) in expect.items():
        assert errors[rid]["stage"] == stage and words in errors[rid]["message"], errors[rid]
        assert errors[rid]["key"] and "input" in errors[rid]
    assert s.succeeded == 4 and s.failed == 10 and s.total_errors == 10
    # a re-run does not retry failures and loses nothing
    s2 = run_local(pipe, pipe.make_inputs(items), tmp_path / "out", progress=False)
    assert (s2.processed, s2.skipped_failed, s2.already_done) == (0, 10, 4)
    assert len(list(read_jsonl(tmp_path / "out" / "errors.jsonl"))) == 10


def test_retry_failed_reruns_only_failures_and_clears_them(tmp_path):
    root = tmp_path / "img"
    items = F.make_dataset(root, 4)
    items.append({"id": "late", "image": "late.png", "description": F.DESC_DOG})
    flaky = {"on": True}

    def llm_fn(messages):
        if flaky["on"] and F.description_of(messages) == F.DESC_SKY:
            return "I refuse to answer in JSON."
        return F.tag_llm_fn(messages)

    llm = CallableLLM(llm_fn)
    pipe = _pipe(root, llm=llm, max_retries=1)
    s = run_local(pipe, pipe.make_inputs(items), tmp_path / "out", progress=False)
    assert s.succeeded == 2 and s.failed == 3
    errors = {e["id"]: e["stage"] for e in read_jsonl(tmp_path / "out" / "errors.jsonl")}
    assert errors == {"s1": "tags", "s3": "tags", "late": "input"}
    # fix the causes: the LLM behaves, the missing image arrives (its key changes, its id does not)
    flaky["on"] = False
    F.write_image(root / "late.png", size=(70, 50))
    calls_before = llm.calls
    s2 = run_local(pipe, pipe.make_inputs(items), tmp_path / "out", progress=False, retry_failed=True)
    assert (s2.processed, s2.succeeded, s2.already_done) == (3, 3, 2)
    assert llm.calls == calls_before + 1
    assert sorted(_ids(tmp_path / "out" / "samples.jsonl")) == ["late", "s0", "s1", "s2", "s3"]
    assert list(read_jsonl(tmp_path / "out" / "errors.jsonl")) == []


def test_retry_failed_keeps_errors_that_fail_again(tmp_path):
    root = tmp_path / "img"
    items = [{"id": "m", "image": "missing.png", "description": F.DESC_DOG}]
    pipe = _pipe(root)
    run_local(pipe, pipe.make_inputs(items), tmp_path / "out", progress=False)
    s = run_local(pipe, pipe.make_inputs(items), tmp_path / "out", progress=False, retry_failed=True)
    assert s.processed == 1 and s.failed == 1
    errs = list(read_jsonl(tmp_path / "out" / "errors.jsonl"))
    assert len(errs) == 1 and errs[0]["id"] == "m"


def test_torn_lines_and_partial_groups_are_repaired(tmp_path):
    items = F.make_dataset(tmp_path / "img", 3)
    pipe = _pipe(tmp_path / "img")
    out = tmp_path / "out"
    run_local(pipe, pipe.make_inputs(items[:2]), out, progress=False)
    lines = (out / "samples.jsonl").read_text().splitlines()
    # simulate a kill: the second sample's line half written, and a group of 2 with one line
    s1 = json.loads(lines[1])
    s1["meta"]["group_size"] = 2
    with open(out / "samples.jsonl", "w") as f:
        f.write(lines[0] + "\n" + json.dumps(s1) + "\n" + lines[1][: len(lines[1]) // 2])
    s = run_local(pipe, pipe.make_inputs(items), out, progress=False)
    assert s.already_done == 1 and s.processed == 2
    ids = _ids(out / "samples.jsonl")
    assert sorted(ids) == ["s0", "s1", "s2"]
    assert (out / "samples.jsonl").read_text().endswith("\n")


def test_a_stage_that_raises_fails_its_batch_not_the_run(tmp_path):
    items = F.make_dataset(tmp_path / "img", 4)
    pipe = _pipe(tmp_path / "img")

    class Boom:
        name, needs, batch_size = "boom", (), 2

        def __init__(self):
            self.n = 0

        def __call__(self, records):
            self.n += 1
            if self.n == 1:
                raise RuntimeError("boom")
            return records

    pipe.stages.insert(1, Boom())
    s = run_local(pipe, pipe.make_inputs(items), tmp_path / "out", progress=False, batch_size=4)
    errs = {e["id"]: e for e in read_jsonl(tmp_path / "out" / "errors.jsonl")}
    assert set(errs) == {"s0", "s1"} and errs["s0"]["stage"] == "boom"
    assert s.succeeded == 2


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time, json
    sys.path.insert(0, {tests!r})
    import pipeline_fakes as F
    from giqa.models import CallableLLM
    from giqa.pipeline import DesConfig, DesPipeline, run_local

    def slow(messages):
        time.sleep(0.02)
        return F.tag_llm_fn(messages)

    items = json.load(open({items!r}))
    pipe = DesPipeline(llm=CallableLLM(slow, model_id="fake-llm"), detector=F.make_detector(), quality_filter=F.make_filter(),
                       config=DesConfig(root={root!r}))
    run_local(pipe, pipe.make_inputs(items), {out!r}, batch_size=2, progress=False)
    """
)


def test_sigkill_midway_then_rerun_gives_every_record_exactly_once(tmp_path):
    root, out = tmp_path / "img", tmp_path / "out"
    items = F.make_dataset(root, 40)
    (tmp_path / "items.json").write_text(json.dumps(items))
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(TESTS), items=str(tmp_path / "items.json"), root=str(root), out=str(out)))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    samples = out / "samples.jsonl"
    while time.monotonic() < deadline:
        if samples.exists() and samples.read_text().count("\n") >= 6:
            break
        if proc.poll() is not None:
            pytest.fail(f"runner exited early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = samples.read_text().count("\n")
    assert 6 <= n_before < 40
    pipe = _pipe(root)
    s = run_local(pipe, pipe.make_inputs(items), out, progress=False)
    assert s.already_done >= 6 and s.already_done + s.processed == 40
    ids = _ids(samples)
    assert Counter(ids) == Counter(f"s{i}" for i in range(40))
    assert list(read_jsonl(out / "errors.jsonl")) == []


def test_import_giqa_pipeline_pulls_in_no_torch():
    code = (
        "import sys, giqa.pipeline, giqa.images, giqa.render, giqa.prompts\n"
        "from giqa.pipeline import DesPipeline, VqaPipeline, run_local, balance_vqa\n"
        "import giqa.pipeline.des, giqa.pipeline.vqa, giqa.pipeline.runner, giqa.cli.des, giqa.cli.vqa, giqa.cli.show\n"
        "bad = [m for m in ('torch', 'transformers', 'ray', 'sentence_transformers') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == ""


def test_an_unknown_backend_stops_the_run_with_a_clear_error(tmp_path):
    from giqa.errors import RegistryError
    from giqa.pipeline import BackendSpec

    items = F.make_dataset(tmp_path / "img", 2)
    pipe = DesPipeline(llm=BackendSpec(kind="llm", name="no-such-llm"), detector=F.make_detector(),
                       config=DesConfig(root=str(tmp_path / "img")))
    with pytest.raises(RegistryError, match="no-such-llm"):
        run_local(pipe, pipe.make_inputs(items), tmp_path / "out", progress=False)
    assert list(read_jsonl(tmp_path / "out" / "errors.jsonl")) == []  # nothing recorded as bad input


def test_output_does_not_depend_on_batching_or_order(tmp_path):
    items = F.make_dataset(tmp_path / "img", 7)
    pipe = _pipe(tmp_path / "img")
    run_local(pipe, pipe.make_inputs(items), tmp_path / "a", batch_size=1, progress=False)
    pipe2 = _pipe(tmp_path / "img")
    for stage in pipe2.stages:
        stage.batch_size = 3
    run_local(pipe2, pipe2.make_inputs(items[::-1]), tmp_path / "b", batch_size=5, progress=False)
    a = sorted((tmp_path / "a" / "samples.jsonl").read_text().splitlines())
    b = sorted((tmp_path / "b" / "samples.jsonl").read_text().splitlines())
    assert len(a) == 7 and a == b
