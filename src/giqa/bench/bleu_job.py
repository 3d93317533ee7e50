"""COCO BLEU statistics computed in the background while scoring does its other work.

pycocoevalcap tokenises the references and the results in two calls, two JVMs. A
:class:`CocoBleuJob` does the same, but starts each as soon as its texts are known: the
references' JVM runs while the predictions are parsed, the predictions' JVM while grounding
is matched, and the output of each becomes token ids (:class:`giqa.bench.ptb.CocoIds`) as
soon as it is written. The statistics are those of :func:`giqa.bench.bleu.bleu_stats` on
pycocoevalcap's words: :func:`coco_bleu_stats` is this job run to the end at once.

Tokenisers without :meth:`~giqa.bench.ptb_java.JavaPtbTokenizer.start` (the Python port, or
one passed as an object) tokenise both batches once the hypotheses are given. With
``kind="auto"`` a failed Java run falls back to the port and says why in the notes.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any, Optional, Sequence, Union

import numpy as np

from giqa.errors import BackendError

__all__ = ["CocoBleuJob", "coco_bleu_stats"]

BleuStats = tuple[np.ndarray, str, list[str]]


class CocoBleuJob:
    """pycocoevalcap's per-item BLEU statistics of hypotheses against one reference each.

    >>> job = CocoBleuJob("python")
    >>> job.references(["The dog is sharp."])      # starts their tokenisation (Java: a JVM)
    >>> job.hypotheses(["The dog is blurry."])     # the rest runs in a worker thread
    >>> stats, tokenizer_name, notes = job.result()
    >>> stats.shape                                 # (N, 2 + 2n)
    (1, 10)

    Call :meth:`close` (or use it as a context manager) to stop a job whose result is not
    wanted: it ends any JVM still running. ``kind``: ``auto``, ``java``, ``python`` or a
    tokeniser object (:func:`giqa.bench.tokenizers.get_tokenizer`); ``n``: the largest
    n-gram order.
    """

    def __init__(self, kind: Union[str, Any] = "auto", n: int = 4) -> None:
        from giqa.bench.tokenizers import get_tokenizer

        self.kind = kind
        self.n = n
        self.tokenizer = get_tokenizer(kind)
        self._refs: Optional[list[str]] = None
        self._hyps: Optional[list[str]] = None
        self._runs: list[Any] = []  # JavaRun of the references, then of the hypotheses
        self._failure: Optional[BackendError] = None  # a JVM that could not start
        self._future: Optional[Future] = None
        self._closed = threading.Event()

    @property
    def _java(self) -> bool:
        return hasattr(self.tokenizer, "start")

    def references(self, refs: Sequence[str]) -> None:
        """Give the references (raw text, one per item); a Java tokeniser starts on them."""
        if self._refs is not None:
            raise RuntimeError("references were given already")
        self._refs = list(refs)
        self._start(self._refs)

    def hypotheses(self, hyps: Sequence[str]) -> None:
        """Give the hypotheses (one per reference, same order); the rest of the job starts in
        a worker thread."""
        if self._refs is None:
            raise RuntimeError("give the references first")
        if self._hyps is not None:
            raise RuntimeError("hypotheses were given already")
        if len(hyps) != len(self._refs):
            raise ValueError(f"{len(hyps)} hypotheses for {len(self._refs)} references")
        self._hyps = list(hyps)
        self._start(self._hyps)
        self._future = Future()
        threading.Thread(target=self._work, name="giqa-bleu", daemon=True).start()

    def result(self, timeout: Optional[float] = None) -> BleuStats:
        """``(stats (N, 2 + 2n), name of the tokeniser that ran, notes)``; waits for the worker
        (and raises what it raised)."""
        if self._future is None:
            raise RuntimeError("give the references and hypotheses first")
        return self._future.result(timeout)

    def close(self) -> None:
        """Stop any JVM still running and the work left (the result, if not taken yet, is
        then an error)."""
        self._closed.set()
        for run in self._runs:
            run.close()

    def __enter__(self) -> "CocoBleuJob":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the work ----------------------------------------------------------------------------
    def _start(self, texts: list[str]) -> None:
        if not self._java or self._failure is not None:
            return
        from giqa.bench.ptb import one_line

        try:
            self._runs.append(self.tokenizer.start([one_line(t) for t in texts]))
        except BackendError as exc:
            self._failure = exc

    def _work(self) -> None:
        assert self._future is not None
        try:
            self._future.set_result(self._compute())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of result()
            self._future.set_exception(exc)
        finally:
            self.close()

    def _compute(self) -> BleuStats:
        from giqa.bench.tokenizers import port_after_failure, tokenize_batches

        batches = [self._refs or [], self._hyps or []]
        if not self._java:
            (ref_toks, hyp_toks), name, notes = tokenize_batches(batches, self.kind)
            return self._stats(hyp_toks, ref_toks), name, notes
        try:
            return self._from_java()
        except BackendError as exc:
            if self.kind != "auto" or self._closed.is_set():  # closed: a JVM stopped on purpose
                raise
            (ref_toks, hyp_toks), name, notes = port_after_failure(exc, batches)
            return self._stats(hyp_toks, ref_toks), name, notes

    def _from_java(self) -> BleuStats:
        from giqa.bench.bleu import bleu_stats_from_ids
        from giqa.bench.ptb import CocoIds, coco_words

        if self._failure is not None:
            raise self._failure
        ids = CocoIds()
        raw_refs = self._runs[0].lines()
        r_ids, r_len = ids.add(raw_refs)
        raw_hyps = self._runs[1].lines()
        h_ids, h_len = ids.add(raw_hyps)
        stats = bleu_stats_from_ids(h_ids, h_len, r_ids, r_len, ids.vocab, self.n)
        if stats is None:  # n-gram keys too big for int64 even renumbered: count words per item
            stats = self._stats([coco_words(x) for x in raw_hyps], [coco_words(x) for x in raw_refs])
        return stats, self.tokenizer.name, []

    def _stats(self, hyp_toks: Sequence[Sequence[str]], ref_toks: Sequence[Sequence[str]]) -> np.ndarray:
        from giqa.bench.bleu import bleu_stats

        return bleu_stats(hyp_toks, [[r] for r in ref_toks], self.n)


def coco_bleu_stats(
    hyps: Sequence[str], refs: Sequence[str], kind: Union[str, Any] = "auto", n: int = 4
) -> BleuStats:
    """``(stats, tokeniser name, notes)``: pycocoevalcap's per-item BLEU statistics
    (:func:`giqa.bench.bleu.bleu_stats`, ``(N, 2 + 2n)``) of raw texts with one reference
    each, tokenised as two batches (the references, then the hypotheses) as in
    :func:`giqa.bench.tokenizers.tokenize_batches` (same fallback and notes). The Java
    tokeniser runs one JVM per batch, both at once, and hands over token ids instead of word
    lists (:class:`giqa.bench.ptb.CocoIds`): the same numbers with less Python work. This is
    a :class:`CocoBleuJob` run to the end at once.
    """
    with CocoBleuJob(kind, n) as job:
        job.references(refs)
        job.hypotheses(hyps)
        return job.result()
