"""LLM judge for LLM-Score, Acc(W) and the optional Yes/No fallback.

Prompts are versioned package data (``giqa/bench/prompts/<name>.<version>.txt``). Every answer
is cached under a key made of the judge model id, its server URL (``base_url``, for HTTP
judges), prompt name, prompt version, the prompt template's hash, the generation parameters
and the inputs, so a second identical call never reaches the model. Each readable reply is
cached as soon as its batch returns, so replies already received survive a later failure.
Output that does not parse is retried (up to ``max_retries`` more times, with a reminder of
the expected format); what still fails is returned with ``score=None`` and
an ``error``, and the scorer reports it (it is left out of the mean, never silently zeroed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from giqa.errors import BackendError

__all__ = ["Judge", "JudgeCache", "JudgeResult", "load_prompt", "parse_score", "parse_yes_no", "PROMPT_VERSION"]

PROMPT_VERSION = "v1"
_REMINDER = 'Your reply could not be read. Reply with only the JSON object, for example {"score": 3}.'
_REMINDER_YN = 'Your reply could not be read. Reply with only the JSON object, for example {"answer": "no"}.'


def load_prompt(name: str, version: str = PROMPT_VERSION) -> str:
    """The template ``giqa/bench/prompts/<name>.<version>.txt`` (``str.format`` fields)."""
    try:
        return (resources.files("giqa.bench") / "prompts" / f"{name}.{version}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"no judge prompt {name!r} version {version!r}") from None


SCALE = 4.0  # judge scores are 0..4
_NUMBER = r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)"
_OUT_OF = rf"\s*(?:/|out\s+of)\s*({_NUMBER})"
_SCORE_KEY = re.compile(rf'"?score"?\s*(?:[:=]|is|of)?[\s*"]*({_NUMBER})(?:{_OUT_OF})?', re.IGNORECASE)
_WHOLE = re.compile(rf"\W*({_NUMBER})(?:{_OUT_OF})?\W*", re.IGNORECASE)
_ANY_OUT_OF = re.compile(rf"({_NUMBER}){_OUT_OF}", re.IGNORECASE)
_log = logging.getLogger(__name__)


def parse_score(text: str) -> Optional[float]:
    """A score on the 0..4 scale from judge output, or None when there is none.

    Read, in this order: JSON ``{"score": n}`` (a number or a numeric string), ``score: n``
    / ``score = n`` anywhere, a reply that is just a number, and ``N out of M`` / ``N/M``
    anywhere. Decimals are kept (``2.5``); ``N out of M`` (or ``N/M``) is put on the 0..4
    scale as ``4 * N / M``; a value off the scale is clamped to 0 or 4. Every rescaled or
    clamped reading is logged (``giqa.bench.judge``, level WARNING).
    """
    s = text.strip()
    if s.startswith("```"):
        s = s.strip("`").strip()
        s = s[4:].strip() if s.lower().startswith("json") else s
    got = _from_json(s)
    if got is None:
        m = _SCORE_KEY.search(s) or _WHOLE.fullmatch(s) or _ANY_OUT_OF.search(s)
        got = (m.group(1), m.group(2)) if m else None
    if got is None:
        return None
    value, out_of = got
    try:
        v = float(value)
        m_ = float(out_of) if out_of is not None else None
    except ValueError:
        return None
    if m_ is not None:
        if m_ <= 0:
            return None
        if m_ != SCALE:
            _log.warning("judge reply %r read as %s out of %s: %.3f on the 0-4 scale", text[:80], value, out_of, v * SCALE / m_)
        v = v * SCALE / m_
    if not 0.0 <= v <= SCALE:
        clamped = min(max(v, 0.0), SCALE)
        _log.warning("judge score %s in %r is off the 0-4 scale; clamped to %s", v, text[:80], clamped)
        v = clamped
    return v


def _from_json(s: str) -> Optional[tuple[str, Optional[str]]]:
    """``(value, out_of)`` from a JSON reply ``{"score": ...}`` or a bare JSON number."""
    try:
        obj = json.loads(s)
    except ValueError:
        return None
    if isinstance(obj, dict):
        v = next((val for key, val in obj.items() if str(key).lower() == "score"), None)
    else:
        v = obj
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return repr(float(v)), None
    if isinstance(v, str):
        m = _WHOLE.fullmatch(v.strip())
        return (m.group(1), m.group(2)) if m else None
    return None


def parse_yes_no(text: str) -> Optional[str]:
    """``"yes"``, ``"no"`` or ``"unknown"`` from the yes/no judge; ``None`` if unreadable."""
    s = text.strip()
    try:
        obj = json.loads(s)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("answer"), str):
        v = obj["answer"].strip().lower()
        return v if v in ("yes", "no", "unknown") else None
    m = re.fullmatch(r'\W*(yes|no|unknown)\W*', s.lower())
    return m.group(1) if m else None


@dataclass(frozen=True)
class JudgeResult:
    """``score``: 0..4, decimals allowed (or for yes/no: 1 yes, 0 no, None unknown); ``raw``:
    the last reply; ``attempts``: model calls made for it (0 when cached); ``error``: why it
    failed, if it did."""

    score: Optional[float]
    raw: str
    attempts: int
    cached: bool
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None


class JudgeCache:
    """Judge answers by key, in memory (``path=None``) or in an SQLite file (safe on crashes)."""

    def __init__(self, path: Union[str, Path, None] = None) -> None:
        self.path = Path(path) if path is not None else None
        self._mem: dict[str, str] = {}
        self._lock = threading.Lock()
        self._db: Optional[sqlite3.Connection] = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS judge (key TEXT PRIMARY KEY, raw TEXT NOT NULL)")
            self._db.commit()

    def get(self, key: str) -> Optional[str]:
        with self._lock:
            if self._db is None:
                return self._mem.get(key)
            row = self._db.execute("SELECT raw FROM judge WHERE key = ?", (key,)).fetchone()
            return row[0] if row else None

    def put(self, key: str, raw: str) -> None:
        with self._lock:
            if self._db is None:
                self._mem[key] = raw
            else:
                self._db.execute("INSERT OR REPLACE INTO judge (key, raw) VALUES (?, ?)", (key, raw))
                self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            if self._db is None:
                return len(self._mem)
            return int(self._db.execute("SELECT COUNT(*) FROM judge").fetchone()[0])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class Judge:
    """Scores with an :class:`giqa.models.protocols.LLM`.

    Parameters
    ----------
    llm : LLM
        Any backend (``TransformersLLM``, ``OpenAICompatibleLLM``, ``CallableLLM``).
    cache : JudgeCache, path or None
        Where answers are kept; a path opens an SQLite cache, ``None`` an in-memory one.
    prompt_version : str
        Version of the prompt files to use (``"v1"``).
    max_retries : int
        Extra attempts for output that does not parse.
    temperature, max_new_tokens : generation parameters (part of the cache key).
    """

    def __init__(
        self,
        llm: Any,
        *,
        cache: Union[JudgeCache, str, Path, None] = None,
        prompt_version: str = PROMPT_VERSION,
        max_retries: int = 2,
        temperature: float = 0.0,
        max_new_tokens: int = 32,
        batch_size: int = 16,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.llm = llm
        self.cache = cache if isinstance(cache, JudgeCache) else JudgeCache(cache)
        self.prompt_version = prompt_version
        self.max_retries = max_retries
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = max(1, int(batch_size))
        self.model_calls = 0  # conversations sent to the model (retries included)

    @property
    def model_id(self) -> str:
        return str(getattr(self.llm, "model_id", "unknown"))

    @property
    def base_url(self) -> Optional[str]:
        """The server URL of an HTTP judge (None for a local model)."""
        url = getattr(getattr(self.llm, "settings", None), "base_url", None) or getattr(self.llm, "base_url", None)
        return str(url) if url else None

    @property
    def random_weights(self) -> bool:
        return bool(getattr(self.llm, "random_weights", False))

    # -- public scoring -------------------------------------------------------------------
    def score_descriptions(self, candidates: Sequence[str], references: Sequence[str]) -> list[JudgeResult]:
        """0..4 per (candidate, reference) description pair (LLM-Score = mean x 25)."""
        _same_len(candidates, references)
        inputs = [{"candidate": c, "reference": r} for c, r in zip(candidates, references)]
        return self._run("judge_des", inputs, parse_score, _REMINDER)

    def score_answers(
        self, questions: Sequence[str], candidates: Sequence[str], references: Sequence[str]
    ) -> list[JudgeResult]:
        """0..4 per open-ended VQA answer (Acc(W) = mean / 4)."""
        _same_len(candidates, references, questions)
        inputs = [{"question": q, "candidate": c, "reference": r} for q, c, r in zip(questions, candidates, references)]
        return self._run("judge_vqa", inputs, parse_score, _REMINDER)

    def yes_no(self, questions: Sequence[str], candidates: Sequence[str]) -> list[JudgeResult]:
        """Fallback for answers the word rule cannot read: score 1 = yes, 0 = no, None = unknown."""
        _same_len(candidates, questions)
        inputs = [{"question": q, "candidate": c} for q, c in zip(questions, candidates)]

        def parse(text: str) -> Optional[int]:
            v = parse_yes_no(text)
            return None if v is None else {"yes": 1, "no": 0, "unknown": -1}[v]

        out = self._run("judge_yes_no", inputs, parse, _REMINDER_YN)
        return [
            JudgeResult(None if r.score == -1 else r.score, r.raw, r.attempts, r.cached, r.error) for r in out
        ]

    # -- machinery ------------------------------------------------------------------------
    def _key(self, name: str, template: str, inputs: dict[str, str]) -> str:
        payload = {
            "model": self.model_id,
            "base_url": self.base_url,
            "prompt": name,
            "version": self.prompt_version,
            "template_sha256": hashlib.sha256(template.encode()).hexdigest(),
            "params": {"temperature": self.temperature, "max_new_tokens": self.max_new_tokens},
            "inputs": inputs,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _generate(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        """One ``generate`` call for a batch (its size at most ``batch_size``)."""
        self.model_calls += len(conversations)
        try:
            got = self.llm.generate(conversations, max_new_tokens=self.max_new_tokens, temperature=self.temperature)
        except BackendError:
            raise
        except Exception as exc:  # wrap at the boundary, keep the cause
            raise BackendError(f"judge model {self.model_id!r} failed: {exc}") from exc
        if len(got) != len(conversations):
            raise BackendError(f"judge returned {len(got)} answers for {len(conversations)} prompts")
        return list(got)

    def _run(self, name: str, inputs: list[dict[str, str]], parse, reminder: str) -> list[JudgeResult]:
        template = load_prompt(name, self.prompt_version)
        keys = [self._key(name, template, inp) for inp in inputs]
        results: list[Optional[JudgeResult]] = [None] * len(inputs)
        pending: list[int] = []
        for i, key in enumerate(keys):
            raw = self.cache.get(key)
            score = parse(raw) if raw is not None else None
            if raw is not None and score is not None:
                results[i] = JudgeResult(score, raw, 0, True)
            else:
                pending.append(i)
        convs = {i: [{"role": "user", "content": template.format(**inputs[i])}] for i in pending}
        attempts = {i: 0 for i in pending}
        last: dict[int, str] = {}
        for _ in range(self.max_retries + 1):
            still: list[int] = []
            for start in range(0, len(pending), self.batch_size):
                batch = pending[start : start + self.batch_size]
                for i, raw in zip(batch, self._generate([convs[i] for i in batch])):
                    attempts[i] += 1
                    last[i] = raw
                    score = parse(raw)
                    if score is not None:  # cached at once: a later failing batch loses nothing
                        self.cache.put(keys[i], raw)
                        results[i] = JudgeResult(score, raw, attempts[i], False)
                    else:
                        convs[i] = convs[i] + [{"role": "assistant", "content": raw}, {"role": "user", "content": reminder}]
                        still.append(i)
            pending = still
            if not pending:
                break
        for i in pending:
            results[i] = JudgeResult(None, last[i], attempts[i], False, error=f"unparseable judge output after {attempts[i]} attempts")
        return [r for r in results if r is not None]


def _same_len(*seqs: Sequence[Any]) -> None:
    lens = {len(s) for s in seqs}
    if len(lens) > 1:
        raise ValueError(f"inputs have different lengths: {[len(s) for s in seqs]}")
