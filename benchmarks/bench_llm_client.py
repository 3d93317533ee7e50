"""Requests/s of giqa's OpenAI-compatible client against a stub server that answers at once.

    .venv/bin/python benchmarks/bench_llm_client.py [--requests 3000] [--repeat 3]

The LLM steps of the paper preset run at server speed when the client is never the limit.
A stub chat-completions server (this script with ``--serve``: a raw asyncio protocol on
127.0.0.1, HTTP/1.1 keep-alive, one canned tag-extraction answer, no uvicorn) runs in a
subprocess, so client and server each have a core. Every request is a real DES
tag-extraction request (the ``tag_extraction`` prompt on a sample description, the TagList
JSON schema as ``response_format``). Contenders, at 64 requests in flight unless said:

- ``giqa generate``: ``OpenAICompatibleLLM.generate`` (``max_concurrency`` threads, the
  keep-alive ``http.client`` transport for ``http://``), the target: >= 500 requests/s;
- ``giqa generate, httpx transport``: the same client on httpx's own transport with its
  default pool (20 idle connections), which is how the client ran before;
- ``raw http.client``: 64 threads each with one keep-alive ``http.client`` connection posting
  the same bytes and parsing the JSON answer: the floor of HTTP from Python, and proof that the
  stub server is not the limit.

Each figure is the median of ``--repeat`` runs of ``--requests`` requests, after a warm-up.

``--in-process`` measures the fallback instead: ``TransformersLLM.generate`` on 32
tag-extraction conversations with the CPU-scale Llama of benchmarks/paper_configs.py (4
layers, width 512, Llama-3's 128k vocabulary; random weights), greedy, ``--new-tokens`` new
tokens, with the dynamic KV cache (transformers' default), the static cache, and the static
cache with ``torch.compile``, the three interleaved: the first call (compilation included) and
the median of the next ``--repeat``, new tokens/s, and whether the answers equal the dynamic
cache's.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ANSWER = json.dumps({"tags": [{"name": "sky", "phrase": "the sky", "quality": "overexposed", "effect": "negative"}]})


# -- the stub server ---------------------------------------------------------------------------
def serve() -> None:
    """Answer every POST at once with one chat completion (keep-alive); print the port first."""
    body = json.dumps({"id": "stub", "object": "chat.completion", "model": "stub", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}]}).encode()
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body

    class Chat(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""

        def data_received(self, data):
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                head = self.buffer[:end].lower()
                at = head.find(b"content-length:")
                length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length:]
                self.transport.write(reply)

    async def main():
        server = await asyncio.get_running_loop().create_server(Chat, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


# -- contenders --------------------------------------------------------------------------------
def conversations(n: int) -> list:
    from giqa import prompts

    sample = Path(__file__).resolve().parents[1] / "examples" / "sample" / "descriptions.jsonl"
    descriptions = [json.loads(x)["description"] for x in sample.read_text().splitlines() if x.strip()]
    prompt = prompts.load("tag_extraction")
    return [prompt.messages(description=descriptions[i % len(descriptions)]) for i in range(n)]


def giqa_rate(port: int, convs: list, concurrency: int, httpx_transport: bool = False) -> tuple[float, int]:
    """Requests/s of one ``generate`` over ``convs`` and the connections it opened."""
    import httpx

    from giqa.models.openai_llm import OpenAICompatibleLLM
    from giqa.pipeline.des import TagList

    transport = httpx.HTTPTransport() if httpx_transport else None
    llm = OpenAICompatibleLLM(base_url=f"http://127.0.0.1:{port}/v1", max_concurrency=concurrency,
                              batch_size=len(convs), transport=transport, max_retries=3)
    schema = TagList.model_json_schema()
    try:
        llm.generate(convs[:200], json_schema=schema, max_new_tokens=256)  # warm-up: connections, imports
        start = time.perf_counter()
        out = llm.generate(convs, json_schema=schema, max_new_tokens=256)
        rate = len(convs) / (time.perf_counter() - start)
        assert out == [ANSWER] * len(convs)
        pool = getattr(llm._http()._transport, "connections_opened", None)
        return rate, (llm.requests - 200 - len(convs)) if pool is None else pool
    finally:
        llm.close()


def raw_rate(port: int, convs: list, concurrency: int) -> float:
    """Requests/s of plain ``http.client`` keep-alive posts of the same bodies (one connection per thread)."""
    from giqa.models.hf_llm import with_schema
    from giqa.pipeline.des import TagList

    schema = TagList.model_json_schema()
    bodies = [json.dumps({"model": "m", "messages": with_schema(c, schema), "max_tokens": 256, "temperature": 0.0,
                          "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}})
              .encode() for c in convs]
    local = threading.local()

    def post(body: bytes) -> str:
        conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", port)
        local.conn = conn
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read())["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, bodies[:200]))
        start = time.perf_counter()
        out = list(pool.map(post, bodies))
        rate = len(bodies) / (time.perf_counter() - start)
    assert out == [ANSWER] * len(bodies)
    return rate


# -- the in-process fallback ---------------------------------------------------------------------
def in_process(args) -> None:
    import tempfile

    import torch
    import transformers

    import paper_configs as pc
    from giqa.models import create

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    convs = conversations(32)
    modes = {"dynamic": {}, "static": {"cache_implementation": "static", "compile": False},
             "static + torch.compile": {"cache_implementation": "static", "compile": True}}
    with tempfile.TemporaryDirectory() as tmp, pc.random_init():
        model_dir = pc.build_llama(Path(tmp) / "llama_cpu", "cpu")
        llms = {name: create("llm", "transformers", model_id=str(model_dir), random_weights=True, batch_size=32,
                             **settings).load() for name, settings in modes.items()}
        tallies = {name: count_new_tokens(llm) for name, llm in llms.items()}
        times: dict = {name: [] for name in modes}
        answers: dict = {}
        for _ in range(1 + args.repeat):  # the modes interleaved, so load drifts hit them alike
            for name, llm in llms.items():
                tallies[name].clear()
                start = time.perf_counter()
                answers[name] = llm.generate(convs, max_new_tokens=args.new_tokens)
                times[name].append(time.perf_counter() - start)
                print(json.dumps({"mode": name, "seconds": round(times[name][-1], 2), "new_tokens": sum(tallies[name])}),
                      flush=True)
        for llm in llms.values():
            llm.close()
    rates = {name: sum(tallies[name]) / statistics.median(times[name][1:]) for name in modes}
    print(f"\nTransformersLLM.generate, CPU-scale Llama (4 layers, width 512), 32 conversations, <= {args.new_tokens} "
          f"new tokens, greedy; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{args.threads} thread(s), load average {os.getloadavg()[0]:.1f}\n")
    print("| KV cache | first call s | then s (median) | new tokens/s | vs dynamic | answers identical |")
    print("|---|---:|---:|---:|---:|---|")
    for name in modes:
        print(f"| {name} | {times[name][0]:.1f} | {statistics.median(times[name][1:]):.1f} | {rates[name]:.1f} | "
              f"{rates[name] / rates['dynamic']:.2f}x | {answers[name] == answers['dynamic']} |")


def count_new_tokens(llm) -> list:
    """Wrap ``llm.model.generate`` to tally the new non-padding tokens it returns (per call)."""
    tally: list = []
    generate = llm.model.generate
    pad = llm.tokenizer.pad_token_id

    def counted(**kwargs):
        ids = generate(**kwargs)
        tally.append(int((ids[:, kwargs["input_ids"].shape[1]:] != pad).sum()))
        return ids

    llm.model.generate = counted
    return tally


# -- main --------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--in-process", action="store_true", help="measure TransformersLLM's cache modes instead")
    ap.add_argument("--new-tokens", type=int, default=64, help="new tokens per conversation (--in-process)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (--in-process)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve()
        return
    if args.in_process:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        in_process(args)
        return
    import httpx

    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        convs = conversations(args.requests)
        cases = [("giqa generate", 64, lambda: giqa_rate(port, convs, 64)),
                 ("giqa generate", 8, lambda: giqa_rate(port, convs, 8)),
                 ("giqa generate", 1, lambda: giqa_rate(port, convs, 1)),
                 ("giqa generate, httpx transport (before)", 64, lambda: giqa_rate(port, convs, 64, True)),
                 ("raw http.client (floor; the stub's capacity)", 64, lambda: (raw_rate(port, convs, 64), 64))]
        rows = []
        for name, concurrency, run in cases:
            runs = [run() for _ in range(args.repeat)]
            rows.append((name, concurrency, statistics.median(r[0] for r in runs), max(r[1] for r in runs)))
            print(json.dumps({"case": name, "concurrency": concurrency, "rates": [round(r[0]) for r in runs]}),
                  flush=True)
    finally:
        server.kill()
    floor = rows[-1][2]
    print(f"\nOpenAI-compatible client against an instant stub server, {args.requests} tag-extraction requests, "
          f"median of {args.repeat}; python {platform.python_version()}, httpx {httpx.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
    print("| client | in flight | requests/s | vs raw http.client | connections opened (or retries*) |")
    print("|---|---:|---:|---:|---:|")
    for name, concurrency, rate, conns in rows:
        print(f"| {name} | {concurrency} | {rate:.0f} | {rate / floor:.2f}x | {conns} |")
    print("\n*httpx's own transport does not count connections: the column holds the retries that run needed.")


if __name__ == "__main__":
    main()
