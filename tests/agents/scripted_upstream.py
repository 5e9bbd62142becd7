"""A scripted OpenAI-compatible upstream on a thread, for agents driven through real corral
processes: it stands behind an ``openai``-runtime Endpoint, so the agent's model calls go
through the gateway as in production while the answers follow a script.

Each chat completion calls the first tool the request offers until the conversation holds
``tool_calls`` tool results, then answers ``counted N`` (N the results seen) or, with
``echo_results``, the last tool result's text. Streamed when asked to (the agents runtime
always is); ``GET /v1/models`` answers so the Endpoint becomes ready.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def scripted_upstream(
    tool_calls: int,
    arguments: Callable[[int], dict[str, Any]] = lambda done: {"label": f"call {done}"},
    *,
    echo_results: bool = False,
) -> Iterator[str]:
    """The upstream's base URL (``http://127.0.0.1:PORT/v1``) while the block runs."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass  # quiet: the test output is for failures

        def do_GET(self) -> None:
            self._json({"object": "list", "data": [{"id": "script", "object": "model"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            messages = body.get("messages") or []
            results = [m.get("content") for m in messages if m.get("role") == "tool"]
            tools = body.get("tools") or []
            delta: dict[str, Any]
            if len(results) < tool_calls and tools:
                call = {
                    "index": 0,
                    "id": f"call_{len(results)}",
                    "type": "function",
                    "function": {
                        "name": tools[0]["function"]["name"],
                        "arguments": json.dumps(arguments(len(results))),
                    },
                }
                delta, finish = {"role": "assistant", "tool_calls": [call]}, "tool_calls"
            else:
                text = str(results[-1]) if echo_results and results else f"counted {len(results)}"
                delta, finish = {"role": "assistant", "content": text}, "stop"
            usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
            if not body.get("stream"):
                choice = {"index": 0, "message": delta, "finish_reason": finish}
                self._json({"object": "chat.completion", "choices": [choice], "usage": usage})
                return
            chunks = [
                {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
                {"choices": [], "usage": usage},
            ]
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _json(self, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="scripted-upstream", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
