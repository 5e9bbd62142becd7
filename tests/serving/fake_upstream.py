"""An OpenAI-compatible upstream that demands its API key, on a thread (stdlib only).

It stands in for a hosted provider behind an ``openai``-runtime Endpoint: ``GET /v1/models``
and ``POST /v1/chat/completions`` (plain or streamed) answer 200 only with
``Authorization: Bearer <key>``, and every request is recorded so tests can check what corral
sent upstream.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeUpstream:
    key: str
    base_url: str = ""
    requests: list[Seen] = field(default_factory=list)

    def chats(self) -> list[Seen]:
        return [seen for seen in self.requests if seen.method == "POST"]


@contextmanager
def fake_upstream(key: str) -> Iterator[FakeUpstream]:
    state = FakeUpstream(key)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass  # quiet: the test output is for failures

        def do_GET(self) -> None:
            seen = self._record({})
            if not self._authorized(seen):
                return
            if self.path != "/v1/models":
                self._json(404, {"error": {"message": "not found", "code": "unknown_url"}})
                return
            self._json(200, {"object": "list", "data": [{"id": "up-model", "object": "model"}]})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            seen = self._record(body)
            if not self._authorized(seen):
                return
            if self.path != "/v1/chat/completions":
                self._json(404, {"error": {"message": "not found", "code": "unknown_url"}})
                return
            text = f"upstream says: {body['messages'][-1]['content']}"
            if body.get("stream"):
                self._stream(body["model"], text)
                return
            self._json(
                200,
                {
                    "id": "chatcmpl-up",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
                },
            )

        def _record(self, body: dict[str, Any]) -> Seen:
            headers = {name.lower(): value for name, value in self.headers.items()}
            seen = Seen(self.command, self.path, headers, body)
            state.requests.append(seen)
            return seen

        def _authorized(self, seen: Seen) -> bool:
            if seen.headers.get("authorization") == f"Bearer {state.key}":
                return True
            self._json(401, {"error": {"message": "bad key", "code": "invalid_api_key"}})
            return False

        def _json(self, code: int, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, model: str, text: str) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            for word in text.split(" "):
                chunk = {
                    "id": "chatcmpl-up",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": word + " "}}],
                }
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, name="fake-upstream", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
