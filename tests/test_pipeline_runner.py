"""run_local: resume (incl. SIGKILL and corrupt files), retry-failed, bad input, fail-fast,
checked backends, the output-directory lock and configuration."""

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
from giqa.data.io import read_jsonl
from giqa.errors import BackendContractError, ConfigError, OutputLockedError, RunAborted
from giqa.models import CallableLLM
from giqa.pipeline import DesConfig, DesPipeline, run_local

TESTS = Path(__file__).parent


def _pipe(root, **kw):
    return DesPipeline(llm=kw.pop("llm", F.make_llm()), detector=kw.pop("detector", F.make_detector()),
                       quality_filter=F.make_filter(), config=DesConfig(root=str(root), **kw))


def _ids(path):
    return [s["id"] for s in read_jsonl(path)]


def test_resume_skips_done_records(tmp_path):
    items = F.make_dataset(tmp_path / "img", 6)
    pipe = _pipe(tmp_path / "img")
    s1 = run_local(pipe, items[:4], tmp_path / "out", batch_size=3, progress=False)
    assert (s1.succeeded, s1.already_done) == (4, 0)
    llm = F.make_llm()
    pipe2 = _pipe(tmp_path / "img", llm=llm)
    s2 = run_local(pipe2, items, tmp_path / "out", batch_size=3, progress=False)
    assert (s2.succeeded, s2.already_done, s2.processed) == (2, 4, 2)
    assert llm.calls == 1  # only the two new records went to the LLM
    assert sorted(_ids(tmp_path / "out" / "samples.jsonl")) == [f"s{i}" for i in range(6)]
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["total_samples"] == 6


def test_resume_reads_no_image_it_has_seen(tmp_path, monkeypatch):
    import giqa.images

    items = F.make_dataset(tmp_path / "img", 4)
    run_local(_pipe(tmp_path / "img"), items, tmp_path / "out", progress=False)
    reads = []
    real = giqa.images.read_image_bytes
    monkeypatch.setattr(giqa.images, "read_image_bytes", lambda *a, **kw: reads.append(a) or real(*a, **kw))
    s = run_local(_pipe(tmp_path / "img"), items, tmp_path / "out", progress=False)
    assert s.already_done == 4 and reads == []  # hashes come from the cache, keyed by size/mtime/inode
    F.write_image(tmp_path / "img" / "img1.png", size=(90, 40))  # a changed image is read again: new key
    s = run_local(_pipe(tmp_path / "img"), items, tmp_path / "out", progress=False)
    assert len(reads) == 1 and (s.already_done, s.processed) == (3, 1)


def test_content_duplicates_run_once_and_are_reported_by_id(tmp_path):
    items = F.make_dataset(tmp_path / "img", 2)
    copies = [{**it, "id": it["id"] + "-copy"} for it in items]
    s = run_local(_pipe(tmp_path / "img"), items + copies + items, tmp_path / "out", progress=False)
    assert s.duplicates == 4 and _ids(tmp_path / "out" / "samples.jsonl") == ["s0", "s1"]
    assert s.duplicate_ids == {"s0": ["s0-copy"], "s1": ["s1-copy"]}


def test_same_id_with_different_content_is_an_input_error(tmp_path):
    items = F.make_dataset(tmp_path / "img", 2)
    clash = [items[0], {**items[1], "id": "s0"}]
    s = run_local(_pipe(tmp_path / "img"), clash, tmp_path / "out", progress=False)
    errors = list(read_jsonl(tmp_path / "out" / "errors.jsonl"))
    assert s.succeeded == 0 and [e["type"] for e in errors] == ["DuplicateIdError"] * 2
    # across runs: an id done before may not come back with other content
    run_local(_pipe(tmp_path / "img"), items[:1], tmp_path / "out2", progress=False)
    changed = {**items[0], "description": F.DESC_SKY}
    s = run_local(_pipe(tmp_path / "img"), [changed], tmp_path / "out2", progress=False)
    (err,) = list(read_jsonl(tmp_path / "out2" / "errors.jsonl"))
    assert s.failed == 1 and err["type"] == "DuplicateIdError" and "already has a sample" in err["message"]
    assert _ids(tmp_path / "out2" / "samples.jsonl") == ["s0"]  # never written twice


def test_bad_inputs_each_give_a_clear_error_record(tmp_path):
    root = tmp_path / "img"
    F.write_image(root / "gray.png", mode="L")
    F.write_image(root / "rgba.png", mode="RGBA")
    F.write_image(root / "cmyk.jpg", mode="CMYK")
    arr16 = np.full((48, 64), 40000, dtype=np.uint16)
    arr16[:14, :19] = 0
    Image.fromarray(arr16).save(root / "deep.png")
    F.write_image(root / "huge.png", size=(400, 300))
    F.write_image(root / "strip.png", size=(500, 2))
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    F.write_image(root / "big.png", size=(128, 96))
    data = (root / "big.png").read_bytes()
    (root / "trunc.png").write_bytes(data[: len(data) * 2 // 3])
    F.write_image(tmp_path / "outside.png")
    os.symlink(tmp_path / "outside.png", root / "link.png")
    os.mkfifo(root / "fifo.jpg")  # opening it blocking would hang the run forever
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
        {"id": "strip", "image": "strip.png", "description": d},
        {"id": "fifo", "image": "fifo.jpg", "description": d},
        {"id": "empty", "image": "gray.png", "description": "   "},
        {"id": "nodesc", "image": "gray.png"},
        {"id": "long", "image": "gray.png", "description": "blurry " * 5000},
        {"id": "dotdot", "image": "../outside.png", "description": d},
        {"id": "abs", "image": str(tmp_path / "outside.png"), "description": d},
        {"id": "link", "image": "link.png", "description": d},
        "not even a dict",
    ]
    pipe = _pipe(root, max_pixels=100_000, max_description_chars=10_000)
    s = run_local(pipe, items, tmp_path / "out", progress=False)
    assert sorted(_ids(tmp_path / "out" / "samples.jsonl")) == ["cmyk", "deep", "gray", "rgba"]
    errors = {e["id"]: e for e in read_jsonl(tmp_path / "out" / "errors.jsonl")}
    expect = {
        "missing": ("input", "not found"), "corrupt": ("input", "not a readable image"),
        "trunc": ("detect", "truncated"), "huge": ("input", "decompression-bomb"),
        "strip": ("input", "aspect ratio of 250:1"), "fifo": ("input", "not a regular file"),
        "empty": ("input", "empty description"), "nodesc": ("input", "empty description"),
        "long": ("input", "above the limit of 10000"),
        "dotdot": ("input", "escapes"), "abs": ("input", "escapes"), "link": ("input", "escapes"),
        "item-16": ("input", "not an object"),
    }
    assert set(errors) == set(expect)
    for rid, (stage, words) in expect.items():
        assert errors[rid]["stage"] == stage and words in errors[rid]["message"], errors[rid]
        assert errors[rid]["key"] and "input" in errors[rid]
        assert " object at 0x" not in errors[rid]["message"]  # paths, not Python objects
    assert s.succeeded == 4 and s.failed == 13 and s.total_errors == 13 and s.input_errors == 12
    # a re-run does not retry failures and loses nothing
    s2 = run_local(pipe, items, tmp_path / "out", progress=False)
    assert (s2.processed, s2.skipped_failed, s2.already_done) == (0, 13, 4)
    assert len(list(read_jsonl(tmp_path / "out" / "errors.jsonl"))) == 13


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
    s = run_local(pipe, items, tmp_path / "out", progress=False)
    assert s.succeeded == 2 and s.failed == 3
    errors = {e["id"]: e["stage"] for e in read_jsonl(tmp_path / "out" / "errors.jsonl")}
    assert errors == {"s1": "tags", "s3": "tags", "late": "input"}
    # fix the causes: the LLM behaves, the missing image arrives (its key changes: new work)
    flaky["on"] = False
    F.write_image(root / "late.png", size=(70, 50))
    calls_before = llm.calls
    s2 = run_local(pipe, items, tmp_path / "out", progress=False, retry_failed=True)
    assert (s2.processed, s2.succeeded, s2.already_done) == (3, 3, 2)
    assert llm.calls == calls_before + 1
    assert sorted(_ids(tmp_path / "out" / "samples.jsonl")) == ["late", "s0", "s1", "s2", "s3"]
    assert list(read_jsonl(tmp_path / "out" / "errors.jsonl")) == []


def test_errors_of_inputs_fixed_or_removed_since_are_dropped(tmp_path):
    root = tmp_path / "img"
    items = F.make_dataset(root, 2) + [{"id": "m1", "image": "m1.png", "description": F.DESC_DOG},
                                       {"id": "m2", "image": "m2.png", "description": F.DESC_DOG}]
    run_local(_pipe(root), items, tmp_path / "out", progress=False)
    assert {e["id"] for e in read_jsonl(tmp_path / "out" / "errors.jsonl")} == {"m1", "m2"}
    F.write_image(root / "m1.png", size=(80, 60))  # fixed: a new key, so it simply runs
    s = run_local(_pipe(root), items[:3], tmp_path / "out", progress=False)  # m2 removed from the inputs
    assert s.succeeded == 1 and list(read_jsonl(tmp_path / "out" / "errors.jsonl")) == []
    assert s.total_errors == 0


def test_retry_failed_keeps_errors_that_fail_again(tmp_path):
    items = [{"id": "m", "image": "missing.png", "description": F.DESC_DOG}]
    pipe = _pipe(tmp_path / "img")
    run_local(pipe, items, tmp_path / "out", progress=False)
    s = run_local(pipe, items, tmp_path / "out", progress=False, retry_failed=True)
    assert s.processed == 1 and s.failed == 1
    errs = list(read_jsonl(tmp_path / "out" / "errors.jsonl"))
    assert len(errs) == 1 and errs[0]["id"] == "m"


def test_torn_and_unindexed_tails_are_cut_and_redone(tmp_path):
    items = F.make_dataset(tmp_path / "img", 3)
    pipe = _pipe(tmp_path / "img")
    out = tmp_path / "out"
    run_local(pipe, items[:2], out, progress=False)
    index = (out / "samples.index").read_text().splitlines(keepends=True)
    # a kill after the second group was written but before its index line was complete
    (out / "samples.index").write_text("".join(index[:-1]) + index[-1][:30])
    with open(out / "samples.jsonl", "a") as f:
        f.write('{"id": "s9", "half a line')
    s = run_local(pipe, items, out, progress=False)
    assert s.already_done == 1 and s.processed == 2
    assert sorted(_ids(out / "samples.jsonl")) == ["s0", "s1", "s2"]
    assert (out / "samples.jsonl").read_text().endswith("\n")


def test_a_corrupt_line_in_the_middle_is_quarantined_and_redone(tmp_path):
    items = F.make_dataset(tmp_path / "img", 3)
    pipe = _pipe(tmp_path / "img")
    out = tmp_path / "out"
    run_local(pipe, items, out, progress=False)
    lines = (out / "samples.jsonl").read_text().splitlines(keepends=True)
    lines[1] = lines[1][:40] + "#" * 10 + lines[1][50:]  # bit rot in the middle of the file
    (out / "samples.jsonl").write_text("".join(lines))
    s = run_local(pipe, items, out, progress=False)
    assert (s.already_done, s.processed, s.quarantined) == (2, 1, 1)
    assert Counter(_ids(out / "samples.jsonl")) == Counter({"s0": 1, "s1": 1, "s2": 1})
    (q,) = list(read_jsonl(out / "samples.quarantine.jsonl"))
    assert "CRC" in q["reason"] and "#" * 10 in q["text"]


def test_a_directory_without_index_is_indexed_once(tmp_path):
    """An output directory of an older giqa (no samples.index): resume reads samples.jsonl once,
    drops a group cut short by a kill and a torn last line, and writes the index."""
    items = F.make_dataset(tmp_path / "img", 3)
    pipe = _pipe(tmp_path / "img")
    out = tmp_path / "out"
    run_local(pipe, items[:2], out, progress=False)
    (out / "samples.index").unlink()
    lines = (out / "samples.jsonl").read_text().splitlines()
    s1 = json.loads(lines[1])
    s1["meta"]["group_size"] = 2
    (out / "samples.jsonl").write_text(lines[0] + "\n" + json.dumps(s1) + "\n" + lines[1][: len(lines[1]) // 2])
    s = run_local(pipe, items, out, progress=False)
    assert s.already_done == 1 and s.processed == 2
    assert sorted(_ids(out / "samples.jsonl")) == ["s0", "s1", "s2"]
    assert len((out / "samples.index").read_text().splitlines()) == 4  # header + 3 groups


def test_a_stage_that_raises_fails_its_batch_not_the_run(tmp_path):
    items = F.make_dataset(tmp_path / "img", 8)
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
    s = run_local(pipe, items, tmp_path / "out", progress=False, batch_size=8)
    errs = {e["id"]: e for e in read_jsonl(tmp_path / "out" / "errors.jsonl")}
    assert set(errs) == {"s0", "s1"} and errs["s0"]["stage"] == "boom"
    assert s.succeeded == 6


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
    pipe = DesPipeline(llm=CallableLLM(slow, model_id="fake-llm"), detector=F.make_detector(),
                       quality_filter=F.make_filter(), config=DesConfig(root={root!r}))
    print("started", flush=True)
    run_local(pipe, items, {out!r}, batch_size=2, progress=False)
    """
)


def _start_kill_script(tmp_path, items, root, out):
    (tmp_path / "items.json").write_text(json.dumps(items))
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(TESTS), items=str(tmp_path / "items.json"), root=str(root), out=str(out)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _wait_for_lines(proc, samples, n):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if samples.exists() and samples.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"runner exited early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.01)
    pytest.fail("the runner wrote nothing in 60 s")


def test_sigkill_midway_then_rerun_gives_every_record_exactly_once(tmp_path):
    root, out = tmp_path / "img", tmp_path / "out"
    items = F.make_dataset(root, 40)
    proc = _start_kill_script(tmp_path, items, root, out)
    samples = out / "samples.jsonl"
    _wait_for_lines(proc, samples, 6)
    # while it runs, a second process on the same directory is refused at once
    with pytest.raises(OutputLockedError, match=f"pid {proc.pid}"):
        run_local(_pipe(root), items, out, progress=False)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = samples.read_text().count("\n")
    assert 6 <= n_before < 40
    s = run_local(_pipe(root), items, out, progress=False)  # the lock died with its process
    assert s.already_done >= 6 and s.already_done + s.processed == 40
    assert Counter(_ids(samples)) == Counter(f"s{i}" for i in range(40))
    assert list(read_jsonl(out / "errors.jsonl")) == []


def test_another_configuration_in_the_same_directory_is_refused(tmp_path):
    items = F.make_dataset(tmp_path / "img", 1)
    run_local(_pipe(tmp_path / "img"), items, tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match="another configuration"):
        run_local(_pipe(tmp_path / "img", area_thr=0.5), items, tmp_path / "out", progress=False)
    run_local(_pipe(tmp_path / "img", max_retries=5), items, tmp_path / "out", progress=False)  # no result change
    run_json = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_json["fingerprint"] == _pipe(tmp_path / "img").fingerprint()
    assert run_json["backends"]["llm"]["model_id"] == "fake-llm"


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


def test_an_unknown_backend_is_refused_at_construction(tmp_path):
    from giqa.models import BackendSpec

    with pytest.raises(ConfigError, match="no llm backend named 'no-such-llm'"):
        DesPipeline(llm=BackendSpec(role="llm", name="no-such-llm"), detector=F.make_detector())
    with pytest.raises(ConfigError, match="neither a preset"):
        DesPipeline(llm="gpt-17", detector=F.make_detector())
    with pytest.raises(ConfigError, match=r"(?s)invalid settings.*max_concurrency"):
        DesPipeline(llm=BackendSpec(role="llm", name="openai", settings={"max_concurrency": 0}))


def test_a_wrong_backend_is_a_config_error_naming_role_and_method():
    with pytest.raises(ConfigError, match=r"llm backend function has no method generate\(\).*CallableLLM"):
        DesPipeline(llm=F.tag_llm_fn, detector=F.make_detector())
    with pytest.raises(ConfigError, match=r"detector backend CallableLLM has no method detect\(\)"):
        DesPipeline(llm=F.make_llm(), detector=F.make_llm())
    with pytest.raises(ConfigError, match=r"quality_filter backend .* has no method p_yes\(\)"):
        DesPipeline(llm=F.make_llm(), detector=F.make_detector(), quality_filter=object())


def test_a_backend_that_breaks_its_contract_stops_the_run(tmp_path):
    class TupleDetector:
        model_id = "tuples"

        def detect(self, images, phrases):
            return [[[((0.1, 0.1, 0.5, 0.5), 0.9)] for _ in p] for p in phrases]

    items = F.make_dataset(tmp_path / "img", 6)
    pipe = _pipe(tmp_path / "img", detector=TupleDetector())
    with pytest.raises(BackendContractError, match="expected giqa.models.Detection"):
        run_local(pipe, items, tmp_path / "out", progress=False)
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["aborted"].startswith("BackendContractError") and summary["processed"] == 0
    assert list(read_jsonl(tmp_path / "out" / "errors.jsonl")) == []  # no record blamed


def test_fail_fast_when_the_first_records_all_fail(tmp_path):
    items = F.make_dataset(tmp_path / "img", 60)
    calls = []

    def dead(messages):
        calls.append(1)
        raise ConnectionError("connection refused")

    pipe = _pipe(tmp_path / "img", llm=CallableLLM(dead))
    with pytest.raises(RunAborted, match="the first 20 records all failed") as info:
        run_local(pipe, items, tmp_path / "out", progress=False, batch_size=64)
    assert info.value.summary.processed == 20 and len(calls) == 9  # 3 calls per batch of 8, not one per record
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["aborted"] == "the first 20 records all failed" and summary["failed"] == 20


def test_fail_fast_on_the_failure_share(tmp_path):
    items = F.make_dataset(tmp_path / "img", 12)

    def half(messages):  # the sky descriptions (every second record) fail
        return "no json" if F.description_of(messages) == F.DESC_SKY else F.tag_llm_fn(messages)

    pipe = _pipe(tmp_path / "img", llm=CallableLLM(half), max_retries=0)
    with pytest.raises(RunAborted, match="2 of 4 records failed, more than the allowed share 0.25"):
        run_local(pipe, items, tmp_path / "out", progress=False, max_failures=0.25, fail_fast=4)
    s = run_local(pipe, items, tmp_path / "out2", progress=False, max_failures=0.5)
    assert (s.succeeded, s.failed, s.aborted) == (6, 6, None)


def test_output_does_not_depend_on_batching_or_order(tmp_path):
    items = F.make_dataset(tmp_path / "img", 7)
    pipe = _pipe(tmp_path / "img")
    run_local(pipe, items, tmp_path / "a", batch_size=1, progress=False)
    pipe2 = _pipe(tmp_path / "img")
    for stage in pipe2.stages:
        stage.batch_size = 3
    run_local(pipe2, items[::-1], tmp_path / "b", batch_size=5, progress=False)
    a = sorted((tmp_path / "a" / "samples.jsonl").read_text().splitlines())
    b = sorted((tmp_path / "b" / "samples.jsonl").read_text().splitlines())
    assert len(a) == 7 and a == b
