"""Shared pieces for the gateway tests (pytest puts this folder on sys.path).

- ``endpoint``/``replica``: Endpoint objects as the Endpoint controller fills them;
- ``drive``: calls the ASGI app in-process and records what it sends;
- ``ScriptedTransport``: an ``UpstreamTransport`` that is a function (the network swapped out);
- ``serve_asgi``: any ASGI app under a real uvicorn on a loopback port;
- ``FakeOpenAIServer``: a small OpenAI-compatible upstream (chat, completions, SSE);
- ``raw_server``: a TCP server whose handler writes raw HTTP bytes (protocol edge cases).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

from corral.gateway import Gateway, Headers, UpstreamResponse, gateway_server_config

TOKEN = "test-admin-token"


def accept_test_token(token: str | None) -> bool:
    return token == TOKEN


def replica(
    model: str,
    address: str,
    *,
    ready: bool = True,
    state: str = "Ready",
    name: str = "",
    api_base: str | None = None,
):
    """A replica entry as the controller writes it: ``apiBase`` defaults to ``address + /v1``."""
    return {
        "name": name or f"{model}-{address.rsplit(':', 1)[-1]}",
        "model": model,
        "address": address,
        "apiBase": api_base if api_base is not None else f"{address}/v1",
        "ready": ready,
        "state": state,
    }


def endpoint(
    name: str,
    weights: dict[str, int],
    replicas: list[dict[str, Any]],
    *,
    namespace: str | None = None,
    strategy: str | None = None,
    routing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"models": [{"model": m, "weight": w} for m, w in weights.items()]}
    if strategy or routing:
        spec["routing"] = {**({"strategy": strategy} if strategy else {}), **(routing or {})}
    metadata: dict[str, Any] = {"name": name, "creationTimestamp": "2026-01-02T03:04:05.000000Z"}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Endpoint",
        "metadata": metadata,
        "spec": spec,
        "status": {"replicas": replicas, "readyReplicas": sum(r["ready"] for r in replicas)},
    }


# --- in-process ASGI driver ------------------------------------------------------------------


@dataclass
class Exchange:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    completed: bool = False
    first_chunk: asyncio.Event = field(default_factory=asyncio.Event)
    disconnect: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def json(self) -> Any:
        return orjson.loads(self.body)


async def drive(
    app: Callable[..., Awaitable[None]],
    method: str,
    path: str,
    *,
    body: bytes | dict[str, Any] = b"",
    pieces: list[bytes] | None = None,
    token: str | None = TOKEN,
    headers: list[tuple[bytes, bytes]] | None = None,
    root_path: str = "",
    exchange: Exchange | None = None,
) -> Exchange:
    """Call ``app`` once; ``pieces`` sends the body in several messages without Content-Length."""
    raw = orjson.dumps(body) if isinstance(body, dict) else body
    sent = pieces if pieces is not None else [raw]
    request_headers = [(b"content-type", b"application/json")]
    if pieces is None:
        request_headers.append((b"content-length", str(len(raw)).encode()))
    if token is not None:
        request_headers.append((b"authorization", f"Bearer {token}".encode()))
    request_headers += headers or []
    result = exchange or Exchange()
    messages = [
        {"type": "http.request", "body": piece, "more_body": index < len(sent) - 1}
        for index, piece in enumerate(sent)
    ]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await result.disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            if message.get("body"):
                result.chunks.append(message["body"])
                result.first_chunk.set()
            if not message.get("more_body", False):
                result.completed = True

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": request_headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }
    await app(scope, receive, send)
    return result


# --- a transport that is a function ----------------------------------------------------------

Respond = Callable[[str], Awaitable[UpstreamResponse]]


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedTransport:
    """``send`` answers with ``respond(url)``; records each call as (method, url, headers, body)."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.calls: list[tuple[str, str, Headers, bytes]] = []
        self.closed = False

    async def send(self, method: str, url: str, headers: Headers, body: bytes) -> UpstreamResponse:
        self.calls.append((method, url, headers, body))
        return await self.respond(url)

    async def aclose(self) -> None:
        self.closed = True


async def iterate(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def json_response(payload: dict[str, Any], status: int = 200) -> UpstreamResponse:
    body = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return UpstreamResponse(status, headers, iterate(body))


# --- real servers on loopback ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn (httptools) on a free loopback port; yields its base URL.

    A ``Gateway`` runs with the settings production uses (``gateway_server_config``).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "warning", "timeout_graceful_shutdown": 5}
    if isinstance(app, Gateway):
        config = gateway_server_config(app, host="127.0.0.1", port=port, **options)
    else:
        options.update(http="httptools", ws="none", lifespan="off")
        config = uvicorn.Config(app, host="127.0.0.1", port=port, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class FakeOpenAIServer:
    """An OpenAI-compatible upstream: answers echo the last message so tests can check bodies.

    When ``hold`` is set, a streamed answer sends its first chunk and then waits for the event.
    """

    def __init__(self, words: tuple[str, ...] = ("Hello", " from", " upstream")) -> None:
        self.words = words
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.hold: asyncio.Event | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append((scope["path"], headers, body))
        request = orjson.loads(body)
        chat = scope["path"] == "/v1/chat/completions"
        prompt = request["messages"][-1]["content"] if chat else request["prompt"]
        if request.get("stream"):
            await self._stream(send, chat, request["model"])
            return
        text = f"echo: {prompt}"
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if chat:
            answer = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": request["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        else:
            answer = {
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 1,
                "model": request["model"],
                "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
                "usage": usage,
            }
        payload = orjson.dumps(answer)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _stream(self, send: Any, chat: bool, model: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for index, word in enumerate(self.words):
            if chat:
                choice = {"index": 0, "delta": {"content": word}, "finish_reason": None}
                chunk = {"object": "chat.completion.chunk", "choices": [choice]}
            else:
                choice = {"index": 0, "text": word, "finish_reason": None, "logprobs": None}
                chunk = {"object": "text_completion", "choices": [choice]}
            chunk.update({"id": "stream-1", "created": 1, "model": model})
            event = b"data: " + orjson.dumps(chunk) + b"\n\n"
            await send({"type": "http.response.body", "body": event, "more_body": True})
            if index == 0 and self.hold is not None:
                await self.hold.wait()
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawServer:
    url: str
    connections: int = 0


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One HTTP/1.1 request with a Content-Length body, or None when the client closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def raw_server(handler: RawHandler) -> AsyncIterator[RawServer]:
    """A TCP server on loopback that runs ``handler`` per connection and closes it afterwards."""
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []
    state = RawServer(url="")

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-script: what some tests do on purpose
        except asyncio.CancelledError:
            pass  # torn down with the server; ending quietly keeps asyncio from logging it
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        server.close()
        for writer in writers:
            writer.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
