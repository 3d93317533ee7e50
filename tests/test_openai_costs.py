"""What a failing OpenAI-compatible server costs: no doubled requests, bounded time, fail fast."""

from __future__ import annotations

import json

import pytest

httpx = pytest.importorskip("httpx")

import pipeline_fakes as F  # noqa: E402
from giqa.errors import BackendError, PartialBatchError  # noqa: E402
from giqa.models.openai_llm import OpenAICompatibleLLM, OpenAISettings  # noqa: E402
from giqa.pipeline import DesConfig, DesPipeline, DesRecord  # noqa: E402


def _answer(content: str) -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"message": {"content": content}}]})


def _client(handler, clock=None, **settings):
    kw = {"clock": clock} if clock is not None else {}
    sleeps: list[float] = []
    llm = OpenAICompatibleLLM(transport=httpx.MockTransport(handler), sleep=sleeps.append, **kw, **settings)
    return llm, sleeps


def test_one_http_400_in_a_batch_of_8_costs_8_requests():
    seen = []

    def handler(request):
        body = json.loads(request.content)
        desc = F.description_of(body["messages"])
        seen.append(desc)
        if desc.startswith("BAD"):
            return httpx.Response(400, text="prompt too long")
        return _answer(json.dumps({"tags": F.TAGS[F.DESC_DOG]}))

    llm, _ = _client(handler, max_concurrency=8)
    stage = DesPipeline(llm=llm, config=DesConfig(max_retries=2)).stage("tags")
    records = [DesRecord(key=f"{i:064x}", id=str(i), description=("BAD " if i == 3 else "") + F.DESC_DOG)
               for i in range(8)]
    out = stage(records)
    assert len(seen) == 8 and llm.requests == 8  # not 8 + 8 record-by-record retries
    assert [r.ok for r in out] == [True, True, True, False, True, True, True, True]
    assert out[3].error.stage == "tags" and "HTTP 400" in out[3].error.message and "prompt too long" in out[3].error.message


def test_generate_keeps_the_answers_of_a_partly_failed_batch():
    def handler(request):
        text = json.loads(request.content)["messages"][-1]["content"]
        return httpx.Response(400, text="no") if text == "b" else _answer(text.upper())

    llm, _ = _client(handler, max_concurrency=4)
    with pytest.raises(PartialBatchError) as info:
        llm.generate([[{"role": "user", "content": c}] for c in "abc"])
    assert info.value.results[0] == "A" and info.value.results[2] == "C"
    assert isinstance(info.value.results[1], BackendError) and llm.requests == 3


def test_an_unreachable_server_fails_further_requests_at_once():
    def handler(request):
        raise httpx.ConnectError("connection refused", request=request)

    llm, sleeps = _client(handler, max_retries=2, max_concurrency=1)
    convs = [[{"role": "user", "content": str(i)}] for i in range(8)]
    with pytest.raises(PartialBatchError) as info:
        llm.generate(convs)
    assert llm.requests == 3  # the first request tried 3 times; the other 7 were not sent
    messages = [str(e) for e in info.value.results]
    assert "after 3 attempts" in messages[0] and all("unreachable" in m for m in messages[1:])
    with pytest.raises(BackendError, match="unreachable"):
        llm.generate(convs[:1])
    assert llm.requests == 3


def test_a_hung_server_costs_at_most_the_deadline():
    now = [0.0]

    def handler(request):
        now[0] += 60.0  # every attempt waits out the read timeout
        raise httpx.ReadTimeout("timed out", request=request)

    llm = OpenAICompatibleLLM(transport=httpx.MockTransport(handler), sleep=lambda s: now.__setitem__(0, now[0] + s),
                              clock=lambda: now[0], max_retries=5, timeout_s=60, deadline_s=120)
    with pytest.raises(BackendError, match="ReadTimeout"):
        llm.generate([[{"role": "user", "content": "x"}]])
    assert llm.requests == 2 and now[0] <= 125


def test_defaults_are_sane():
    s = OpenAISettings()
    assert s.timeout_s <= 60 and s.connect_timeout_s <= 5 and s.max_retries <= 2 and s.deadline_s <= 120
    assert s.cooldown_s > 0
