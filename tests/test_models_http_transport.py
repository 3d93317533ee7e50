"""KeepAliveTransport (the OpenAI client's plain-HTTP transport) against real servers on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

httpx = pytest.importorskip("httpx")

from giqa.errors import BackendError  # noqa: E402
from giqa.models._http_transport import KeepAliveTransport, default_transport  # noqa: E402
from giqa.models.openai_llm import OpenAICompatibleLLM  # noqa: E402


class _Chat(BaseHTTPRequestHandler):
    """Answers chat completions with the last message; behaviour set on the server object."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 - http.server API
        srv = self.server
        with srv.lock:
            srv.peers.add(self.client_address)
            srv.seen.append(dict(self.headers))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if srv.delay:
            time.sleep(srv.delay)
        reply = json.dumps({"choices": [{"message": {"content": body["messages"][-1]["content"]}}]}).encode()
        if srv.gzip:
            reply = gzip.compress(reply)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if srv.gzip:
            self.send_header("Content-Encoding", "gzip")
        if srv.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for k in range(0, len(reply), 7):
                part = reply[k:k + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        if srv.drop_after_reply:  # close without saying so: the client's idle connection goes stale
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    srv.daemon_threads = True
    srv.lock, srv.peers, srv.seen = threading.Lock(), set(), []
    srv.delay, srv.gzip, srv.chunked, srv.drop_after_reply = 0.0, False, False, False
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _convs(n):
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


def _llm(server, **settings):
    return OpenAICompatibleLLM(base_url=f"http://127.0.0.1:{server.server_port}/v1", backoff_s=0.01, **settings)


def test_default_transport_only_for_plain_http():
    assert isinstance(default_transport("http://127.0.0.1:8000/v1", 8), KeepAliveTransport)
    assert default_transport("https://api.example.com/v1", 8) is None
    with pytest.raises(httpx.UnsupportedProtocol):
        KeepAliveTransport().handle_request(httpx.Request("GET", "https://example.com/"))


def test_sequential_requests_share_one_connection(server):
    with _llm(server, max_concurrency=1, api_key="sk-test") as llm:
        assert llm.generate(_convs(20)) == [f"q{i}" for i in range(20)]
        assert llm._http()._transport.connections_opened == 1
    assert len(server.peers) == 1
    headers = {k.lower(): v for k, v in server.seen[0].items()}
    assert headers["authorization"] == "Bearer sk-test" and headers["content-type"] == "application/json"
    assert headers["host"] == f"127.0.0.1:{server.server_port}"


def test_concurrent_requests_open_at_most_max_concurrency_connections(server):
    server.delay = 0.005
    with _llm(server, max_concurrency=6) as llm:
        assert llm.generate(_convs(60)) == [f"q{i}" for i in range(60)]
        assert llm.generate(_convs(30)) == [f"q{i}" for i in range(30)]  # the pool outlives a call
        assert 2 <= llm._http()._transport.connections_opened <= 6
    assert len(server.peers) <= 6


def test_a_connection_the_server_closed_is_replaced_without_a_retry(server):
    server.drop_after_reply = True
    with _llm(server, max_concurrency=1, max_retries=0) as llm:
        assert llm.generate(_convs(5)) == [f"q{i}" for i in range(5)]
        assert llm.requests == 5  # no request counted twice, none failed
    assert len(server.peers) == 5


@pytest.mark.parametrize("mode", ["gzip", "chunked", "both"])
def test_encoded_and_chunked_answers(server, mode):
    server.gzip = mode in ("gzip", "both")
    server.chunked = mode in ("chunked", "both")
    with _llm(server, max_concurrency=2) as llm:
        assert llm.generate(_convs(4)) == [f"q{i}" for i in range(4)]


def test_read_timeout_is_retried_then_reported(server):
    server.delay = 0.5
    with _llm(server, timeout_s=0.1, max_retries=1, cooldown_s=0) as llm:
        with pytest.raises(BackendError, match="after 2 attempts") as info:
            llm.generate(_convs(1))
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


def test_connection_refused_is_a_connect_error():
    probe = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    port = probe.server_port
    probe.server_close()
    transport = KeepAliveTransport()
    with pytest.raises(httpx.ConnectError):
        transport.handle_request(httpx.Request("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json={}))
