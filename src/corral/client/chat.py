"""Streaming chat completions through the gateway: ``POST {URL}/v1/chat/completions``.

``corral chat`` (and the serving benchmark) call an Endpoint the way any OpenAI client would,
without depending on the ``openai`` package: :class:`GatewayClient` sends the request with
``stream: true`` over httpx and :class:`ChatStream` yields the reply's text pieces as the SSE
events arrive (parsed by :mod:`corral.client.sse`). Every failure surfaces as one typed error:
an OpenAI-shaped error body as :class:`CompletionError` with its message, a reply cut short as
:class:`IncompleteStream`, no answer at all as :class:`ServerUnreachable`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from corral.client.errors import CompletionError, IncompleteStream, ServerUnreachable
from corral.client.sse import iter_sse

ChatMessage = dict[str, str]
"""``{"role": "system" | "user" | "assistant", "content": TEXT}``."""

CHAT_COMPLETIONS = "/chat/completions"
DONE = "[DONE]"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0
"""The longest silence between two pieces of a reply (a long prompt delays the first)."""


def openai_base_url(server_url: str) -> str:
    """The OpenAI base URL of a corral server: the gateway shares the API server's port."""
    return server_url.rstrip("/") + "/v1"


class GatewayClient:
    """OpenAI-compatible calls to one gateway; close it (or use ``with``).

    ``transport`` replaces the network (``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        read_timeout: float = READ_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT_S),
            transport=transport,
        )

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def model(self, model: str) -> dict[str, Any]:
        """The OpenAI model object of Endpoint ``model``; CompletionError (404) when unknown."""
        url = f"{self.base_url}/models/{quote(model, safe='/')}"
        try:
            response = self._http.get(url, timeout=CONNECT_TIMEOUT_S)
        except httpx.HTTPError as error:
            raise _unreachable(url, error) from None
        if response.status_code >= 400:
            raise error_of_response(response.status_code, response.content, response.reason_phrase)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise CompletionError(f"GET {url}: expected a JSON object", status=response.status_code)
        return body

    def stream_chat(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ChatStream:
        """Start a streamed chat completion; use the result in a ``with`` block, iterate it."""
        body: dict[str, Any] = {"model": model, "messages": list(messages), "stream": True}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        request = self._http.build_request(
            "POST",
            self.base_url + CHAT_COMPLETIONS,
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        )
        return ChatStream(self._http, request)


class ChatStream:
    """One streamed reply: iterate for the text pieces; then ``text``, ``finish_reason``, ``usage``.

    Entering sends the request and raises :class:`CompletionError` when the gateway refuses it,
    so nothing is printed for a request that never started. Leaving closes the connection,
    also when the caller stops early.
    """

    def __init__(self, http: httpx.Client, request: httpx.Request) -> None:
        self._http = http
        self._request = request
        self._response: httpx.Response | None = None
        self._pieces: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.done = False
        """True once the stream ended as it should: a finish reason, then ``[DONE]`` or EOF."""

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def __enter__(self) -> ChatStream:
        try:
            response = self._http.send(self._request, stream=True)
        except httpx.HTTPError as error:
            raise _unreachable(str(self._request.url), error) from None
        if response.status_code >= 400:
            try:
                response.read()
            except httpx.HTTPError as error:
                raise _unreachable(str(self._request.url), error) from None
            finally:
                response.close()
            raise error_of_response(response.status_code, response.content, response.reason_phrase)
        self._response = response
        return self

    def __exit__(self, *_: object) -> None:
        if self._response is not None:
            self._response.close()

    def __iter__(self) -> Iterator[str]:
        if self._response is None:
            raise RuntimeError("use the ChatStream in a `with` block before iterating it")
        status = self._response.status_code
        try:
            for event in iter_sse(self._response.iter_lines()):
                if event.data.strip() == DONE:
                    break
                piece = self._take(event.event, event.data, status)
                if piece:
                    self._pieces.append(piece)
                    yield piece
        except httpx.HTTPError as error:
            raise IncompleteStream(
                f"the reply was cut off after {len(self.text)} characters: {error}", status=status
            ) from None
        if self.finish_reason is None:
            # Every complete reply says why it ended; a server that gives up on a reply (say,
            # llama.cpp interrupting it for a newer request) may still send [DONE].
            raise IncompleteStream(
                f"the reply ended without a finish reason after {len(self.text)} characters "
                "(the model server cut it short)",
                status=status,
            )
        self.done = True

    def _take(self, event: str, data: str, status: int) -> str:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            if event == "error":
                message = data.strip() or "the gateway sent an error"
                raise CompletionError(message, status=status) from None
            raise IncompleteStream(
                f"the stream sent an event that is not JSON: {data[:120]!r}", status=status
            ) from None
        if not isinstance(chunk, dict):
            raise IncompleteStream(
                f"the stream sent {type(chunk).__name__}, not an object", status=status
            )
        if "error" in chunk or event == "error":
            raise _error_of_body(chunk, status, "the gateway reported an error mid-stream")
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return ""
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) else ""


def error_of_response(status: int, content: bytes, reason_phrase: str = "") -> CompletionError:
    """The error an HTTP error answer means: its OpenAI message when it has one."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = None
    text = content.decode("utf-8", errors="replace").strip()[:200]
    return _error_of_body(body, status, f"HTTP {status}: {text or reason_phrase}")


def _error_of_body(body: Any, status: int, fallback: str) -> CompletionError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return CompletionError(error, status=status)
    if not isinstance(error, dict):
        # A Status from the API server (say, a path it does not know) carries `message`.
        message = body.get("message") if isinstance(body, dict) else None
        return CompletionError(str(message or fallback), status=status)
    code = error.get("code")
    error_type = error.get("type")
    return CompletionError(
        str(error.get("message") or fallback),
        status=status,
        error_type=str(error_type) if error_type is not None else None,
        code=str(code) if code is not None else None,
    )


def _unreachable(url: str, error: httpx.HTTPError) -> ServerUnreachable:
    if isinstance(error, httpx.TimeoutException):
        return ServerUnreachable(f"the gateway at {url} did not answer in time ({error})")
    return ServerUnreachable(
        f"cannot reach the gateway at {url}: is `corral up` running? ({error})"
    )
