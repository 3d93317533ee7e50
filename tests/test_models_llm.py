"""TransformersLLM on a tiny random Llama; OpenAICompatibleLLM against MockTransport and a local server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

httpx = pytest.importorskip("httpx")

from giqa.errors import BackendError  # noqa: E402
from giqa.models import LLM, create  # noqa: E402
from giqa.models.hf_llm import check_conversations, schema_instruction, with_schema  # noqa: E402
from giqa.models.openai_llm import OpenAICompatibleLLM  # noqa: E402

CONVS = [
    [{"role": "user", "content": "Describe the sky."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How is the image quality?"}],
    [{"role": "user", "content": "a"}],
]
SCHEMA = {"type": "object", "properties": {"tags": {"type": "array"}}, "required": ["tags"]}


# -- shared helpers ------------------------------------------------------------------------
def test_with_schema_adds_or_extends_system_prompt():
    plain = [{"role": "user", "content": "hi"}]
    assert with_schema(plain, None) is plain
    added = with_schema(plain, SCHEMA)
    assert added[0]["role"] == "system" and json.dumps(SCHEMA, separators=(",", ":")) in added[0]["content"]
    extended = with_schema(CONVS[1], SCHEMA)
    assert len(extended) == 2 and extended[0]["content"].startswith("Be brief.")
    assert extended[0]["content"].endswith(schema_instruction(SCHEMA))
    assert CONVS[1][0]["content"] == "Be brief."  # input not mutated


@pytest.mark.parametrize(
    "bad, exc",
    [
        ("hello", TypeError),
        ([[]], ValueError),
        ([[{"role": "robot", "content": "x"}]], ValueError),
        ([[{"role": "user", "content": 3}]], ValueError),
        ([["user: hi"]], ValueError),
    ],
)
def test_bad_conversations(bad, exc):
    with pytest.raises(exc):
        check_conversations(bad)


# -- TransformersLLM -------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["llama-3", "qwen2.5"])
def hf_llm(request, tiny_llama_dir, tiny_qwen2_dir):
    """TransformersLLM on a tiny model with Llama-3-Instruct's or Qwen2.5-Instruct's real template."""
    pytest.importorskip("torch")
    from giqa.models.hf_llm import TransformersLLM

    path = tiny_llama_dir if request.param == "llama-3" else tiny_qwen2_dir
    llm = TransformersLLM(model_id=str(path), batch_size=2)
    yield llm
    llm.close()


@pytest.mark.slow
def test_transformers_llm_deterministic_and_batch_invariant(hf_llm):
    assert isinstance(hf_llm, LLM) and hf_llm.random_weights
    a = hf_llm.generate(CONVS, max_new_tokens=6)
    b = hf_llm.generate(CONVS, max_new_tokens=6)
    assert a == b and len(a) == 3 and all(isinstance(t, str) for t in a)
    single = [hf_llm.generate([c], max_new_tokens=6)[0] for c in CONVS]
    assert single == a  # left padding does not change greedy output
    assert hf_llm.generate([], max_new_tokens=3) == []


@pytest.mark.slow
def test_transformers_llm_schema_changes_prompt(hf_llm):
    plain = hf_llm.generate(CONVS[:1], max_new_tokens=6)
    structured = hf_llm.generate(CONVS[:1], max_new_tokens=6, json_schema=SCHEMA)
    assert isinstance(structured[0], str)
    assert plain != structured  # the schema instruction reached the model


@pytest.mark.slow
def test_transformers_llm_sampling_with_seed(tiny_llama_dir):
    from giqa.models.hf_llm import TransformersLLM

    llm = TransformersLLM(model_id=str(tiny_llama_dir), seed=3)
    assert llm.generate(CONVS, max_new_tokens=5, temperature=1.0) == llm.generate(CONVS, max_new_tokens=5, temperature=1.0)
    with pytest.raises(ValueError):
        llm.generate(CONVS, temperature=-1)
    llm.close()
    assert not llm.loaded


@pytest.mark.slow
def test_transformers_llm_close_and_reload(hf_llm):
    before = hf_llm.generate(CONVS[:1], max_new_tokens=4)
    hf_llm.close()
    assert not hf_llm.loaded
    assert hf_llm.generate(CONVS[:1], max_new_tokens=4) == before


def test_transformers_llm_defaults():
    from giqa.models.hf_llm import TransformersLLM

    llm = create("llm", "transformers")
    assert isinstance(llm, TransformersLLM)
    assert llm.model_id == "meta-llama/Meta-Llama-3-8B-Instruct" and llm.random_weights is False


# -- OpenAICompatibleLLM: MockTransport ----------------------------------------------------------
def _ok(content: str) -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": content}}]})


class Script:
    """A MockTransport handler answering from a script; records the requests it saw."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if callable(step):
            return step(request)
        return step


def _client(handler, **settings) -> tuple[OpenAICompatibleLLM, list[float]]:
    sleeps: list[float] = []
    llm = OpenAICompatibleLLM(transport=httpx.MockTransport(handler), sleep=sleeps.append, **settings)
    return llm, sleeps


def test_openai_request_body_and_answer(monkeypatch):
    monkeypatch.setenv("GIQA_TEST_KEY", "sk-test")
    handler = Script(lambda req: _ok(json.loads(req.content)["messages"][-1]["content"].upper()))
    llm, _ = _client(handler, base_url="http://server:9/v1/", model_id="llama3", api_key_env="GIQA_TEST_KEY", max_concurrency=1)
    assert isinstance(llm, LLM)
    out = llm.generate(CONVS, json_schema=SCHEMA, max_new_tokens=33, temperature=0.0)
    assert out == ["DESCRIBE THE SKY.", "HOW IS THE IMAGE QUALITY?", "A"]
    req = handler.requests[0]
    assert str(req.url) == "http://server:9/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test"
    body = json.loads(req.content)
    assert body["model"] == "llama3" and body["max_tokens"] == 33 and body["temperature"] == 0.0
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert body["messages"][0]["role"] == "system" and "JSON schema" in body["messages"][0]["content"]
    llm.close()


@pytest.mark.parametrize("mode, expected", [("json_object", {"type": "json_object"}), ("none", None)])
def test_openai_response_format_modes(mode, expected):
    handler = Script(_ok("{}"))
    llm, _ = _client(handler, response_format=mode, schema_in_prompt=False)
    llm.generate(CONVS[:1], json_schema=SCHEMA)
    body = json.loads(handler.requests[0].content)
    assert body.get("response_format") == expected
    assert body["messages"] == CONVS[0]


def test_openai_retries_then_succeeds():
    handler = Script(
        httpx.ConnectError("refused"),
        httpx.Response(503, text="busy"),
        httpx.Response(429, headers={"Retry-After": "2"}, text="slow down"),
        _ok("fine"),
    )
    llm, sleeps = _client(handler, max_retries=3, backoff_s=0.1)
    assert llm.generate(CONVS[:1]) == ["fine"]
    assert len(handler.requests) == 4 and llm.requests == 4
    assert len(sleeps) == 3 and sleeps[2] == 2.0  # Retry-After honoured
    assert 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2  # exponential backoff with jitter


def test_openai_gives_up_after_bounded_retries():
    handler = Script(httpx.Response(500, text="boom"))
    llm, sleeps = _client(handler, max_retries=2, backoff_s=0.01)
    with pytest.raises(BackendError, match="after 3 attempts") as info:
        llm.generate(CONVS[:1])
    assert len(handler.requests) == 3 and len(sleeps) == 2
    assert "HTTP 500" in str(info.value.__cause__)


def test_openai_timeout_is_retried_then_wrapped():
    handler = Script(httpx.ReadTimeout("slow"))
    llm, _ = _client(handler, max_retries=1)
    with pytest.raises(BackendError) as info:
        llm.generate(CONVS[:1])
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


def test_openai_client_errors_fail_fast():
    handler = Script(httpx.Response(400, json={"error": "bad model"}))
    llm, sleeps = _client(handler, max_retries=5)
    with pytest.raises(BackendError, match="HTTP 400.*bad model"):
        llm.generate(CONVS[:1])
    assert len(handler.requests) == 1 and sleeps == []


@pytest.mark.parametrize("payload", [{"choices": []}, {"nope": 1}, "not json"])
def test_openai_malformed_response(payload):
    resp = httpx.Response(200, json=payload) if not isinstance(payload, str) else httpx.Response(200, text=payload)
    llm, _ = _client(Script(resp), max_retries=0)
    with pytest.raises(BackendError, match="malformed"):
        llm.generate(CONVS[:1])


def test_openai_concurrent_keeps_order():
    def echo(req):
        return _ok(json.loads(req.content)["messages"][-1]["content"])

    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(40)]
    llm, _ = _client(Script(echo), max_concurrency=8, batch_size=16)
    assert llm.generate(convs) == [f"q{i}" for i in range(40)]


# -- OpenAICompatibleLLM: a real HTTP server on 127.0.0.1 ------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self):  # noqa: N802 - http.server API
        type(self).calls += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).calls == 1:  # first request fails: the client must retry
            self.send_response(502)
            self.end_headers()
            return
        reply = json.dumps({"choices": [{"message": {"content": f"{self.path}|{body['messages'][-1]['content']}"}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply.encode())

    def log_message(self, *args):
        pass


def test_openai_against_local_http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with OpenAICompatibleLLM(base_url=f"http://127.0.0.1:{server.server_port}/v1", backoff_s=0.01, max_concurrency=1) as llm:
            assert llm.generate(CONVS[:2]) == ["/v1/chat/completions|Describe the sky.", "/v1/chat/completions|How is the image quality?"]
            assert llm.requests == 3
    finally:
        server.shutdown()
        server.server_close()


def test_openai_connection_refused_gives_backend_error():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_port
    server.server_close()  # nothing listens there any more
    llm = OpenAICompatibleLLM(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, sleep=lambda s: None)
    with pytest.raises(BackendError, match="after 2 attempts"):
        llm.generate(CONVS[:1])


def test_openai_registry_create():
    llm = create("llm", "openai", base_url="http://h/v1", api_key="sk-secret-123")
    assert isinstance(llm, OpenAICompatibleLLM) and "sk-secret-123" not in repr(llm.settings)
    assert llm.model_id == "meta-llama/Meta-Llama-3-8B-Instruct" and llm.random_weights is False


# -- TransformersLLM: static KV cache and torch.compile give the same greedy answers ---------------
@pytest.mark.slow
def test_transformers_llm_static_cache_gives_identical_answers(hf_llm):
    from giqa.models.hf_llm import TransformersLLM

    expected = hf_llm.generate(CONVS, max_new_tokens=6)
    static = TransformersLLM(model_id=hf_llm.model_id, batch_size=2, cache_implementation="static", compile=False)
    try:
        assert static.generate(CONVS, max_new_tokens=6) == expected
        assert static._cache_kwargs() == {"cache_implementation": "static", "disable_compile": True}
    finally:
        static.close()


@pytest.mark.slow
def test_transformers_llm_compiled_static_cache_gives_identical_answers(tiny_llama_dir):
    """torch.compile of the decoding step on the CPU (transformers does it on CUDA by itself)."""
    pytest.importorskip("torch")
    from giqa.models.hf_llm import TransformersLLM

    import torch._dynamo

    plain = TransformersLLM(model_id=str(tiny_llama_dir), batch_size=3)
    compiled = TransformersLLM(model_id=str(tiny_llama_dir), batch_size=3, cache_implementation="static", compile=True)
    try:
        expected = plain.generate(CONVS, max_new_tokens=4)
        torch._dynamo.utils.counters.clear()
        assert compiled.generate(CONVS, max_new_tokens=4) == expected
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it really was compiled
        assert compiled._cache_kwargs()["compile_config"]._compile_all_devices is True
    finally:
        plain.close()
        compiled.close()


def test_transformers_llm_compile_needs_a_static_cache():
    from giqa.models.hf_llm import TransformersLLM

    with pytest.raises(ValueError, match="compile=True needs"):
        TransformersLLM(compile=True)
    assert TransformersLLM().settings.cache_implementation == "dynamic"  # off by default


def test_cache_and_compile_settings_keep_record_keys():
    from giqa.models import BackendSpec

    plain = BackendSpec(role="llm", name="transformers", settings={"model_id": "m"})
    fast = BackendSpec(role="llm", name="transformers",
                       settings={"model_id": "m", "cache_implementation": "static", "compile": True})
    assert plain.fingerprint() == fast.fingerprint()
