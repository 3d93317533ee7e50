"""The background COCO BLEU job: the references' JVM starts before the hypotheses exist, the
statistics equal those of one synchronous run, failures fall back (auto) or raise, and a job
that is abandoned leaves no JVM running."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from giqa.bench.bleu import bleu_stats
from giqa.bench.bleu_job import CocoBleuJob
from giqa.bench.ptb import PORT_NAME, coco_words, one_line, ptb_tokenize_batch
from giqa.bench.ptb_java import JavaPtbTokenizer, java_available
from giqa.bench.tokenizers import PortTokenizer
from giqa.errors import BackendError

needs_java = pytest.mark.skipif(not java_available(), reason="java or pycocoevalcap's jar is not installed")

REFS = ["The dog (bottom right) is overexposed.", "Sharpness: high, quality: poor.", "", "it is x."]
HYPS = ["The dog(bottom right) is over- and under-exposed.", "**Sharpness:** high; quality:poor", "Yes.", "etc."]


def _expected(tok_batches) -> np.ndarray:
    refs, hyps = tok_batches
    return bleu_stats(hyps, [[r] for r in refs])


def test_port_job_equals_the_port_on_both_batches():
    job = CocoBleuJob("python")
    job.references(REFS)
    job.hypotheses(HYPS)
    stats, name, notes = job.result()
    assert name == PORT_NAME and notes == []
    np.testing.assert_array_equal(stats, _expected([ptb_tokenize_batch(REFS), ptb_tokenize_batch(HYPS)]))


def test_misuse_is_an_error():
    job = CocoBleuJob("python")
    with pytest.raises(RuntimeError, match="references first"):
        job.hypotheses(HYPS)
    with pytest.raises(RuntimeError, match="first"):
        job.result()
    job.references(REFS)
    with pytest.raises(RuntimeError, match="already"):
        job.references(REFS)
    with pytest.raises(ValueError, match="3 hypotheses for 4 references"):
        job.hypotheses(HYPS[:3])


class _FailingStart:
    """A Java-like tokeniser whose JVM cannot start."""

    name = "failing java"

    def start(self, lines):
        raise BackendError("no JVM today")

    tokenize_batches = start


def test_a_jvm_that_cannot_start_falls_back_under_auto_and_raises_otherwise(monkeypatch):
    job = CocoBleuJob(_FailingStart())
    job.references(REFS)
    job.hypotheses(HYPS)
    with pytest.raises(BackendError, match="no JVM today"):
        job.result()
    import giqa.bench.tokenizers as t

    monkeypatch.setattr(t, "get_tokenizer", lambda kind="auto": _FailingStart() if kind == "auto" else PortTokenizer())
    job = CocoBleuJob("auto")
    job.references(REFS)
    job.hypotheses(HYPS)
    stats, name, notes = job.result()
    assert name == PORT_NAME and "no JVM today" in notes[0]
    np.testing.assert_array_equal(stats, _expected([ptb_tokenize_batch(REFS), ptb_tokenize_batch(HYPS)]))


@needs_java
def test_java_job_equals_one_synchronous_jvm_run_and_starts_early():
    tok = JavaPtbTokenizer()
    job = CocoBleuJob(tok)
    job.references(REFS)
    assert tok.jvm_runs == 1  # the references' JVM runs before the hypotheses are known
    job.hypotheses(HYPS)
    stats, name, notes = job.result()
    assert tok.jvm_runs == 2 and name == JavaPtbTokenizer.name and notes == []
    raw = JavaPtbTokenizer().raw_batches([[one_line(t) for t in REFS], [one_line(t) for t in HYPS]])
    np.testing.assert_array_equal(stats, _expected([[coco_words(x) for x in b] for b in raw]))


@needs_java
def test_an_abandoned_job_stops_its_jvm_and_removes_its_files():
    tok = JavaPtbTokenizer()
    with CocoBleuJob(tok) as job:
        job.references(["a line"] * 200_000)  # long enough to still run at close()
        (run,) = job._runs
        proc, folder = run._proc, Path(run._dir.name)
        assert folder.is_dir()
    assert proc.poll() is not None and not folder.exists()


@needs_java
def test_a_failing_jvm_names_its_exit_code_and_message(tmp_path):
    not_a_jar = tmp_path / "broken.jar"
    not_a_jar.write_bytes(b"not a zip file")
    run = JavaPtbTokenizer(jar=not_a_jar).start(["The dog."])
    folder = Path(run._dir.name)
    with pytest.raises(BackendError, match="exited with [1-9]"):
        run.lines()
    assert not folder.exists()


@needs_java
def test_empty_batches_start_no_jvm():
    tok = JavaPtbTokenizer()
    assert tok.start([]).lines() == [] and tok.jvm_runs == 0
    assert tok.start([""]).lines() == [""] and tok.jvm_runs == 1
