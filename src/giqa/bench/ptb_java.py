"""The reference tokeniser itself: Stanford CoreNLP 3.4.1's Java ``PTBTokenizer``.

pycocoevalcap ships the jar and runs ``java -cp stanford-corenlp-3.4.1.jar
edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase`` on all captions of a batch
joined by newlines, then drops the tokens in its punctuation list. :class:`JavaPtbTokenizer`
does exactly that: :meth:`~JavaPtbTokenizer.raw_batches` runs one JVM over several batches
(never one per sentence), each batch its own input file; :meth:`~JavaPtbTokenizer.start`
runs one batch in its own JVM in the background (:class:`JavaRun`), as pycocoevalcap's two
calls (references, results) do. The jar is found next to an installed pycocoevalcap, or
named by ``jar=`` / the ``GIQA_PTB_JAR`` environment variable.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union

from giqa.errors import BackendError

__all__ = ["JavaPtbTokenizer", "JavaRun", "find_jar", "java_available"]

JAR_NAME = "stanford-corenlp-3.4.1.jar"
_MAIN = "edu.stanford.nlp.process.PTBTokenizer"
#: JVM options: a run lasts seconds, so the quick compiler alone and the serial collector
#: cost ~25% less CPU than the defaults (which start optimising compiler and GC threads on
#: the other core); they change nothing in the output.
JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


def find_jar() -> Optional[Path]:
    """pycocoevalcap's ``stanford-corenlp-3.4.1.jar`` (or ``$GIQA_PTB_JAR``), None if absent."""
    env = os.environ.get("GIQA_PTB_JAR")
    if env:
        return Path(env) if Path(env).is_file() else None
    try:
        spec = importlib.util.find_spec("pycocoevalcap")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        jar = Path(base) / "tokenizer" / JAR_NAME
        if jar.is_file():
            return jar
    return None


def java_available() -> bool:
    """True when both ``java`` is on PATH and the jar is found."""
    return shutil.which("java") is not None and find_jar() is not None


class JavaPtbTokenizer:
    """Tokenise batches of captions with the Java PTBTokenizer, as pycocoevalcap does.

    Parameters
    ----------
    jar : path to ``stanford-corenlp-3.4.1.jar`` (default: :func:`find_jar`).
    java : the ``java`` executable (default: the one on PATH).
    timeout : seconds one batch may take (default: no limit).
    jvm_options : options before ``-cp`` (default: :data:`JVM_OPTIONS`).
    """

    name = "stanford-corenlp-3.4.1 PTBTokenizer (java)"

    def __init__(self, jar: Union[str, Path, None] = None, java: Optional[str] = None,
                 timeout: Optional[float] = None, jvm_options: Sequence[str] = JVM_OPTIONS) -> None:
        found = Path(jar) if jar is not None else find_jar()
        if found is None or not found.is_file():
            raise BackendError(f"{JAR_NAME} not found: pip install pycocoevalcap, or set GIQA_PTB_JAR")
        exe = java or shutil.which("java")
        if exe is None:
            raise BackendError("java is not on PATH")
        self.jar: Path = found
        self.java: str = exe
        self.jvm_options = list(jvm_options)
        self.timeout = timeout
        self.jvm_runs = 0  # JVMs started by this object

    def raw_batches(self, batches: Sequence[Sequence[str]]) -> list[list[str]]:
        """One JVM over several batches of lines (no line break inside a line): for each
        batch, the lower-cased tokens of each line, space-separated, exactly as the Java
        tool prints them (punctuation still in).

        Each batch is its own input file (``-ioFileList``), so each ends at its own end of
        file, as a separate pycocoevalcap call would; the last line of one batch never sees
        the first line of the next.
        """
        todo = [k for k, b in enumerate(batches) if len(b)]
        out: list[list[str]] = [[] for _ in batches]
        if not todo:
            return out
        with tempfile.TemporaryDirectory(prefix="giqa-ptb-") as tmp:
            listing = []
            for k in todo:
                Path(tmp, f"in{k}").write_bytes("\n".join(batches[k]).encode("utf-8"))
                listing.append(f"in{k} out{k}")
            Path(tmp, "files").write_text("\n".join(listing) + "\n", encoding="utf-8")
            self._run(["-ioFileList", "files"], cwd=tmp)
            for k in todo:
                lines = Path(tmp, f"out{k}").read_bytes().decode("utf-8").split("\n")
                if len(lines) != len(batches[k]):
                    raise BackendError(f"the Java PTBTokenizer returned {len(lines)} lines for {len(batches[k])}")
                out[k] = lines
        return out

    def raw_lines(self, lines: Sequence[str]) -> list[str]:
        """:meth:`raw_batches` of one batch."""
        return self.raw_batches([lines])[0]

    def start(self, lines: Sequence[str]) -> "JavaRun":
        """Start tokenising one batch of lines (no line break inside a line) in its own JVM
        and return at once; :meth:`JavaRun.lines` waits for the output (that of
        :meth:`raw_lines`). Raises :class:`giqa.errors.BackendError` if the JVM cannot start."""
        return JavaRun(self, lines)

    def command(self, args: Sequence[str]) -> list[str]:
        """The JVM command line with the tokeniser's options and ``args`` after them."""
        return [self.java, *self.jvm_options, "-cp", str(self.jar.resolve()), _MAIN, "-preserveLines", "-lowerCase", *args]

    def _run(self, args: list[str], cwd: str) -> None:
        self.jvm_runs += 1
        try:
            proc = subprocess.run(self.command(args), cwd=cwd, capture_output=True, timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"the Java PTBTokenizer did not run: {exc}") from exc
        if proc.returncode != 0:
            raise BackendError(f"the Java PTBTokenizer exited with {proc.returncode}: {_tail(proc.stderr)}")

    def tokenize_batches(self, batches: Sequence[Sequence[str]]) -> list[list[list[str]]]:
        """The words BLEU counts for each text of each batch, as pycocoevalcap gets them
        from one call per batch: the Java tokens (lower case) without its punctuation list,
        joined and split on white space again (its BLEU scorer calls ``str.split()``, which
        also splits at a no-break space). One JVM for all batches.

        Every text is first made one line by :func:`giqa.bench.ptb.one_line` (the step the
        pure-Python port takes too), so both see identical input.
        """
        from giqa.bench.ptb import coco_words, one_line

        raw = self.raw_batches([[one_line(t) for t in b] for b in batches])
        return [[coco_words(line) for line in lines] for lines in raw]

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[str]]:
        """:meth:`tokenize_batches` of one batch."""
        return self.tokenize_batches([texts])[0]


def _tail(stderr: bytes) -> str:
    return stderr.decode("utf-8", "replace")[-500:]


class JavaRun:
    """One batch tokenised by its own JVM in the background (:meth:`JavaPtbTokenizer.start`).

    The batch is written to a temporary directory, the JVM reads it from there and writes its
    output and messages there (nothing is piped, so it never blocks on a full pipe).
    :meth:`lines` waits for it (at most the tokeniser's ``timeout`` seconds) and removes the
    directory; :meth:`close` stops it if it is still running. Also a context manager.
    """

    def __init__(self, tok: JavaPtbTokenizer, lines: Sequence[str]) -> None:
        self._n = len(lines)
        self._timeout = tok.timeout
        self._proc: Optional[subprocess.Popen] = None
        self._dir = tempfile.TemporaryDirectory(prefix="giqa-ptb-")
        if not self._n:
            return
        tmp = Path(self._dir.name)
        (tmp / "in").write_bytes("\n".join(lines).encode("utf-8"))
        (tmp / "files").write_text("in out\n", encoding="utf-8")
        tok.jvm_runs += 1
        try:
            with (tmp / "stderr").open("wb") as err:
                self._proc = subprocess.Popen(tok.command(["-ioFileList", "files"]), cwd=tmp,
                                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        except OSError as exc:
            self._dir.cleanup()
            raise BackendError(f"the Java PTBTokenizer did not run: {exc}") from exc

    def lines(self) -> list[str]:
        """The batch's output lines (lower-cased tokens, space-separated, punctuation still in)."""
        try:
            if self._proc is None:
                return []
            try:
                rc = self._proc.wait(timeout=self._timeout)
            except subprocess.TimeoutExpired as exc:
                raise BackendError(f"the Java PTBTokenizer did not run: {exc}") from exc
            tmp = Path(self._dir.name)
            if rc != 0:
                raise BackendError(f"the Java PTBTokenizer exited with {rc}: {_tail((tmp / 'stderr').read_bytes())}")
            out = (tmp / "out").read_bytes().decode("utf-8").split("\n")
            if len(out) != self._n:
                raise BackendError(f"the Java PTBTokenizer returned {len(out)} lines for {self._n}")
            return out
        finally:
            self.close()

    def close(self) -> None:
        """Stop the JVM if it still runs and remove the temporary directory."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._dir.cleanup()

    def __enter__(self) -> "JavaRun":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
