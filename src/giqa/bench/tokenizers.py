"""Which PTB tokeniser COCO BLEU uses: the Java reference when it can run, the port otherwise.

``"java"``: Stanford CoreNLP 3.4.1's PTBTokenizer, run as pycocoevalcap runs it (exact by
definition; needs ``java`` on PATH and pycocoevalcap's jar); ``"python"``: giqa's port of it
(:mod:`giqa.bench.ptb`, no Java; the residue is in ``docs/bench.md``); ``"auto"`` (default):
Java when both are there, the port otherwise, and the port too if the Java run fails (the
reason is returned as a note). Reports name the tokeniser that ran.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence, Union

from giqa.bench.ptb import PORT_NAME, ptb_tokenize_batch
from giqa.errors import BackendError

__all__ = ["TOKENIZERS", "PortTokenizer", "get_tokenizer", "tokenize_batches", "port_after_failure"]

TOKENIZERS = ("auto", "java", "python")
_log = logging.getLogger(__name__)


class PortTokenizer:
    """The pure-Python port (:func:`giqa.bench.ptb.ptb_tokenize_batch` per batch)."""

    name = PORT_NAME

    def tokenize_batches(self, batches: Sequence[Sequence[str]]) -> list[list[list[str]]]:
        return [ptb_tokenize_batch(list(b)) for b in batches]


def get_tokenizer(kind: Union[str, Any] = "auto") -> Any:
    """The tokeniser for ``kind`` (``auto``, ``java``, ``python``), or ``kind`` itself when it
    is already a tokeniser (anything with ``name`` and ``tokenize_batches``).

    ``"java"`` raises :class:`giqa.errors.BackendError` when Java or the jar is missing.
    """
    if not isinstance(kind, str):
        if not hasattr(kind, "tokenize_batches"):
            raise TypeError(f"expected a tokenizer name or object, got {type(kind).__name__}")
        return kind
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown PTB tokenizer {kind!r}; choose one of {', '.join(TOKENIZERS)}")
    if kind == "python":
        return PortTokenizer()
    from giqa.bench.ptb_java import JavaPtbTokenizer, java_available

    if kind == "java" or java_available():
        return JavaPtbTokenizer()
    return PortTokenizer()


def tokenize_batches(
    batches: Sequence[Sequence[str]], kind: Union[str, Any] = "auto"
) -> tuple[list[list[list[str]]], str, list[str]]:
    """``(tokens per text per batch, name of the tokeniser that ran, notes)``.

    With ``kind="auto"``, a Java run that fails falls back to the port and says why in the
    notes; an explicit ``"java"`` raises instead.
    """
    tok = get_tokenizer(kind)
    try:
        return tok.tokenize_batches(batches), tok.name, []
    except BackendError as exc:
        if kind != "auto":
            raise
        return port_after_failure(exc, batches)


def port_after_failure(exc: BackendError, batches: Sequence[Sequence[str]]) -> tuple[list[list[list[str]]], str, list[str]]:
    """:func:`tokenize_batches`' answer when the Java run of ``"auto"`` failed: the port's
    tokens, its name and a note saying why."""
    _log.warning("Java PTB tokenizer failed (%s); using the Python port", exc)
    port = PortTokenizer()
    return port.tokenize_batches(batches), port.name, [f"Java PTB tokenizer failed ({exc}); used the Python port"]
