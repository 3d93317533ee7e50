"""An ``httpx`` transport on the standard library's ``http.client``: plain-HTTP keep-alive, fast.

:class:`giqa.models.openai_llm.OpenAICompatibleLLM` sends many small requests to a local
inference server (vLLM, SGLang) from up to ``max_concurrency`` threads. httpx's own transport
(httpcore) keeps 20 idle connections by default, so at 64 threads it closes and reopens
connections all the time (and now and then fails a request with ``Bad file descriptor``), and
costs more Python per request: the client topped out at 550-800 requests/s on one core of the
development machine. This transport keeps idle ``http.client`` connections in a shared LIFO
pool bounded by ``max_idle`` and hands httpx the raw body (httpx still builds requests, decodes
``Content-Encoding`` and applies timeouts): 1,200-1,500 requests/s there
(benchmarks/results/llm.md).

Only ``http://`` URLs: HTTPS keeps httpx's transport (its certificate and TLS handling).
Errors are httpx's: ``ConnectError`` / ``ConnectTimeout`` while connecting, ``ReadTimeout``,
``ReadError`` and ``RemoteProtocolError`` after, so callers retry them as before. A request
that fails on a reused keep-alive connection before any answer arrived (the server closed it
while idle) is sent once more on a fresh connection, at once.
"""

from __future__ import annotations

import http.client
import threading
from typing import Any, Optional

import httpx

__all__ = ["KeepAliveTransport"]

_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class KeepAliveTransport(httpx.BaseTransport):
    """Plain-HTTP transport over pooled ``http.client.HTTPConnection`` (thread-safe).

    ``max_idle``: idle connections kept per host (more are closed after their request).
    """

    def __init__(self, max_idle: int = 64) -> None:
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self.connections_opened = 0  # for tests and benchmarks

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"KeepAliveTransport sends http:// only, got {request.url.scheme}://")
        key = (request.url.host, request.url.port or 80)
        timeouts = request.extensions.get("timeout", {})
        body = request.read()
        headers = list(request.headers.multi_items())
        target = request.url.raw_path.decode("ascii")
        while True:
            conn, reused = self._acquire(key, timeouts.get("connect"))
            try:
                conn.sock.settimeout(timeouts.get("read"))
                conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
            except _STALE as exc:
                conn.close()
                if reused:  # the server closed this idle connection: one fresh try, no backoff
                    continue
                raise httpx.ReadError(f"connection to {key[0]}:{key[1]} closed: {exc!r}") from exc
            except TimeoutError as exc:
                conn.close()
                raise httpx.ReadTimeout(f"no answer from {key[0]}:{key[1]} in {timeouts.get('read')} s") from exc
            except http.client.HTTPException as exc:
                conn.close()
                raise httpx.RemoteProtocolError(f"bad HTTP from {key[0]}:{key[1]}: {exc!r}") from exc
            except OSError as exc:
                conn.close()
                raise httpx.ReadError(f"{key[0]}:{key[1]}: {exc!r}") from exc
            if resp.will_close:
                conn.close()
            else:
                self._release(key, conn)
            return httpx.Response(resp.status, headers=resp.getheaders(), stream=httpx.ByteStream(data),
                                  extensions={"http_version": b"HTTP/1.1", "reason_phrase": resp.reason.encode("latin-1", "replace")})

    def _acquire(self, key: tuple[str, int], connect_timeout: Optional[float]) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection to ``key`` (reused: True) or a new, connected one."""
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        conn = http.client.HTTPConnection(key[0], key[1], timeout=connect_timeout)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(f"could not connect to {key[0]}:{key[1]} in {connect_timeout} s") from exc
        except OSError as exc:
            conn.close()
            raise httpx.ConnectError(f"could not connect to {key[0]}:{key[1]}: {exc!r}") from exc
        with self._lock:
            self.connections_opened += 1
        return conn, False

    def _release(self, key: tuple[str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.max_idle:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()

    def __repr__(self) -> str:
        return f"KeepAliveTransport(max_idle={self.max_idle})"


def default_transport(base_url: str, max_concurrency: int) -> Optional[Any]:
    """The transport :class:`OpenAICompatibleLLM` uses for ``base_url`` when none is injected:
    :class:`KeepAliveTransport` for ``http://``, None (httpx's own) for anything else."""
    return KeepAliveTransport(max_idle=max_concurrency) if base_url.lower().startswith("http://") else None
