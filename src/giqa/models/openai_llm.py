"""A client for any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, Ollama, llama.cpp).

This is how Llama-3 runs at throughput: start a server (``vllm serve
meta-llama/Meta-Llama-3-8B-Instruct``, ``ollama serve``, ``llama-server -m model.gguf``) and
point ``base_url`` at it. Requests of a batch run concurrently (``max_concurrency``), each
retried with exponential backoff on connection errors, timeouts, HTTP 429 and 5xx (bounded by
``max_retries`` and by ``deadline_s`` per request; ``Retry-After`` is honoured up to
``backoff_max_s``). Other HTTP errors fail that request at once.

Costs are bounded:

- A request never takes longer than ``deadline_s`` (default 120 s) over all its attempts.
- A failed request does not cost the others of its batch: ``generate`` returns every answer
  it got and raises :class:`giqa.errors.PartialBatchError` (a ``BackendError``) whose
  ``results`` hold each conversation's answer or exception, so one HTTP 400 in a batch of 8
  costs 8 requests, not 16.
- When a request ends on connection errors or timeouts only, the server is taken as
  unreachable for ``cooldown_s`` (default 30 s): further requests fail at once instead of
  waiting out their own timeouts and retries (a dead server costs seconds, not hours).

Throughput: the client is never the limit. Against a stub server that answers at once it
sustains well over 500 requests/s at 64 in flight on one core (benchmarks/bench_llm_client.py,
benchmarks/results/llm.md): ``http://`` servers are reached through
:class:`giqa.models._http_transport.KeepAliveTransport` (``http.client`` connections kept
alive in a pool of ``max_concurrency``), HTTPS through httpx's own transport with as many
keep-alive connections. Proxies from the environment (``HTTP_PROXY``, ``NO_PROXY``) apply as
in httpx.

``transport`` (an ``httpx.BaseTransport``, e.g. ``httpx.MockTransport``) can be injected, so
tests never touch the network.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

from pydantic import Field, SecretStr

from giqa.errors import BackendError, PartialBatchError, require
from giqa.models._hf import resolve_settings
from giqa.models.hf_llm import check_conversations, with_schema
from giqa.models.protocols import ChatMessage
from giqa.models.settings import BackendSettings

__all__ = ["OpenAISettings", "OpenAICompatibleLLM"]

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAISettings(BackendSettings):
    """Settings of :class:`OpenAICompatibleLLM`.

    - ``model_id``: the model name the server knows (sent as ``"model"``).
    - ``base_url``: up to and including ``/v1``; requests go to ``{base_url}/chat/completions``.
    - ``api_key``: given here, or read from the environment variable ``api_key_env``
      (``OPENAI_API_KEY``); local servers usually need none.
    - ``response_format``: how ``json_schema`` reaches the server: ``"json_schema"`` (OpenAI
      structured outputs; vLLM, Ollama, llama.cpp server, OpenAI), ``"json_object"`` (JSON mode
      only) or ``"none"`` (prompt only). The schema is always also written into the system
      prompt (``schema_in_prompt``), which helps servers that ignore ``response_format``.
    - ``max_retries``: retries after the first try (so at most ``1 + max_retries`` requests),
      all within ``deadline_s`` seconds per request.
    - ``timeout_s``: seconds to wait for an answer (a long completion at a busy server takes
      tens of seconds); ``connect_timeout_s``: seconds to connect.
    - ``cooldown_s``: after a request ends on connection errors or timeouts only, further
      requests fail at once for this long (0 disables this).
    - ``batch_size``: conversations submitted at once; ``max_concurrency`` requests in flight.
    """

    model_id: str = "meta-llama/Meta-Llama-3-8B-Instruct"
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: Optional[SecretStr] = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(60.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    deadline_s: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0, le=20)
    backoff_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(10.0, ge=0)
    cooldown_s: float = Field(30.0, ge=0)
    max_concurrency: int = Field(8, ge=1, le=256)
    batch_size: int = Field(64, ge=1, le=100_000)
    response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    schema_in_prompt: bool = True
    seed: Optional[int] = None
    extra_body: dict[str, Any] = Field(default_factory=dict)


class OpenAICompatibleLLM:
    """:class:`giqa.models.LLM` over HTTP. ``random_weights`` is False unless set in settings."""

    settings_cls = OpenAISettings

    def __init__(
        self,
        settings: Optional[Any] = None,
        *,
        transport: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        **overrides: Any,
    ) -> None:
        self.settings = resolve_settings(OpenAISettings, settings, overrides)
        self.model_id = self.settings.model_id
        self.random_weights = bool(self.settings.random_weights)
        self._transport = transport
        self._sleep = sleep
        self._clock = clock
        self._client: Any = None
        self._lock = threading.Lock()
        self.requests = 0  # HTTP requests sent (including retries)
        self._count_lock = threading.Lock()
        self._down_until = 0.0  # monotonic time until which the server counts as unreachable
        self._down_reason = ""

    # -- lifecycle -------------------------------------------------------------------------
    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                httpx = require("httpx", "models")
                s = self.settings
                key = s.api_key.get_secret_value() if s.api_key is not None else os.environ.get(s.api_key_env)
                headers = {"Content-Type": "application/json"}
                if key:
                    headers["Authorization"] = f"Bearer {key}"
                transport = self._transport
                if transport is None:
                    from giqa.models._http_transport import default_transport

                    transport = default_transport(s.base_url, s.max_concurrency)
                self._client = httpx.Client(
                    base_url=s.base_url.rstrip("/") + "/",
                    headers=headers,
                    timeout=httpx.Timeout(s.timeout_s, connect=s.connect_timeout_s),
                    transport=transport,
                    # httpx's own transport (https://, proxies): keep every thread's connection alive
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=s.max_concurrency),
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> "OpenAICompatibleLLM":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM(model_id={self.model_id!r}, base_url={self.settings.base_url!r})"

    # -- public ----------------------------------------------------------------------------
    def generate(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        *,
        json_schema: Optional[Mapping[str, Any]] = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
    ) -> list[str]:
        """One completion per conversation, in order.

        Raises :class:`PartialBatchError` when any request fails (its ``results`` keep the
        answers that came back), :class:`BackendError` for a batch of one."""
        convs = check_conversations(conversations)
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        bodies = [self._body(c, json_schema, max_new_tokens, temperature) for c in convs]
        if not bodies:
            return []
        client = self._http()
        workers = min(self.settings.max_concurrency, len(bodies))
        if len(bodies) == 1:
            return [self._complete(client, bodies[0])]
        results: list[Any] = []
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="giqa-openai") as pool:
            for start in range(0, len(bodies), self.settings.batch_size):
                results.extend(pool.map(lambda b: self._outcome(client, b), bodies[start : start + self.settings.batch_size]))
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise PartialBatchError(f"{len(failed)} of {len(results)} requests failed; first: {failed[0]}", results)
        return results

    def _outcome(self, client: Any, body: dict[str, Any]) -> "str | BaseException":
        try:
            return self._complete(client, body)
        except BackendError as exc:
            return exc

    # -- internals -------------------------------------------------------------------------
    def _body(self, messages: list[ChatMessage], json_schema: Optional[Mapping[str, Any]], max_new_tokens: int,
              temperature: float) -> dict[str, Any]:
        s = self.settings
        if json_schema is not None and s.schema_in_prompt:
            messages = with_schema(messages, json_schema)
        body: dict[str, Any] = {
            "model": s.model_id,
            "messages": messages,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "stream": False,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if json_schema is not None and s.response_format == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "giqa_output", "schema": dict(json_schema), "strict": False},
            }
        elif json_schema is not None and s.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        body.update(s.extra_body)
        return body

    def _delay(self, attempt: int, retry_after: Optional[str]) -> float:
        s = self.settings
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), s.backoff_max_s)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        base = min(s.backoff_s * (2**attempt), s.backoff_max_s)
        return base * (0.5 + random.random() / 2)  # jitter, so concurrent retries spread out

    def _check_reachable(self) -> None:
        if self._clock() < self._down_until:
            raise BackendError(f"{self.settings.base_url} is unreachable ({self._down_reason}); "
                               f"not retrying for {self._down_until - self._clock():.0f} s")

    def _complete(self, client: Any, body: dict[str, Any]) -> str:
        httpx = require("httpx", "models")
        s = self.settings
        last: Optional[BaseException] = None
        retry_after: Optional[str] = None
        transport_only = True
        deadline = self._clock() + s.deadline_s
        attempts = 0
        for attempt in range(s.max_retries + 1):
            if attempt:
                delay = self._delay(attempt - 1, retry_after)
                if self._clock() + delay >= deadline:
                    break
                self._sleep(delay)
            self._check_reachable()
            retry_after = None
            attempts += 1
            try:
                with self._count_lock:
                    self.requests += 1
                resp = client.post("chat/completions", json=body)
            except httpx.TransportError as exc:  # connection refused, timeouts, protocol errors
                last = exc
                continue
            if resp.status_code in _RETRY_STATUS:
                retry_after = resp.headers.get("retry-after")
                last = BackendError(f"HTTP {resp.status_code} from {resp.request.url}: {_snippet(resp)}")
                transport_only = False
                continue
            self._down_until = 0.0
            if resp.status_code >= 400:
                raise BackendError(
                    f"OpenAI-compatible server refused the request: HTTP {resp.status_code} from "
                    f"{resp.request.url}: {_snippet(resp)}"
                )
            return _content(resp)
        if transport_only and s.cooldown_s > 0:
            self._down_until = self._clock() + s.cooldown_s
            self._down_reason = f"{type(last).__name__}: {last}"
        raise BackendError(
            f"no answer from {s.base_url} after {attempts} attempts; last error: {type(last).__name__}: {last}"
        ) from last


def _snippet(resp: Any, limit: int = 300) -> str:
    text = resp.text
    return text if len(text) <= limit else text[:limit] + "..."


def _content(resp: Any) -> str:
    try:
        data = resp.json()
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BackendError(f"malformed chat completion from {resp.request.url}: {_snippet(resp)}") from exc
    if content is None:
        return ""
    if not isinstance(content, str):
        raise BackendError(f"chat completion content is {type(content).__name__}, expected a string")
    return content
