"""An OpenAI-compatible upstream whose token usage is known in advance (stdlib only, a thread).

It stands in for a hosted model behind an ``openai``-runtime Endpoint in the budget tests and
``benchmarks/budget_bench.py``: every chat answer reports ``prompt_tokens = PROMPT_TOKENS``
(below the gateway's estimate of any chat prompt, so holds cover it) and ``completion_tokens =
min(max_completion_tokens or max_tokens, REPLY_TOKENS)``; streamed answers send one chunk per
token and, when asked with ``stream_options.include_usage`` (the gateway always asks), the
usage chunk. ``delay_s`` keeps each request in flight a while, so concurrent
requests really overlap at the gateway. No authentication.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROMPT_TOKENS = 5
REPLY_TOKENS = 12


@dataclass
class MeteredUpstream:
    base_url: str = ""
    delay_s: float = 0.0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self) -> int:
        with self.lock:
            return len(self.bodies)


def reply_tokens(body: dict[str, Any]) -> int:
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or REPLY_TOKENS
    return min(int(limit), REPLY_TOKENS)


@contextmanager
def metered_upstream(delay_s: float = 0.0) -> Iterator[MeteredUpstream]:
    state = MeteredUpstream(delay_s=delay_s)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._json(200, {"object": "list", "data": [{"id": "metered", "object": "model"}]})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                state.bodies.append(body)
            if state.delay_s:
                time.sleep(state.delay_s)
            tokens = reply_tokens(body)
            usage = {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": tokens,
                "total_tokens": PROMPT_TOKENS + tokens,
            }
            if body.get("stream"):
                self._stream(body, tokens, usage)
                return
            message = {"role": "assistant", "content": " ".join(["tok"] * tokens)}
            self._json(
                200,
                {
                    "id": "chatcmpl-metered",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
                    "usage": usage,
                },
            )

        def _json(self, code: int, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, body: dict[str, Any], tokens: int, usage: dict[str, int]) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            base = {"id": "chatcmpl-metered", "object": "chat.completion.chunk", "created": 1}
            base["model"] = body.get("model")
            for _ in range(tokens):
                chunk = {**base, "choices": [{"index": 0, "delta": {"content": "tok "}}]}
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if (body.get("stream_options") or {}).get("include_usage"):
                chunk = {**base, "choices": [], "usage": usage}
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # hundreds of concurrent connections in the exactness runs
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, name="metered-upstream", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
