"""``HttpTransport``: the default upstream transport, a pooled keep-alive HTTP/1.1 client.

It sits under the forwarding stage and speaks to model runtimes (llama.cpp, vLLM, any
OpenAI-compatible server). Built on a plain ``asyncio.Protocol`` feeding
``httptools.HttpResponseParser`` as bytes arrive (no stream buffer, one future per wait) because
the gateway's budget per request is a fraction of a millisecond: as the gateway's transport,
``httpx.AsyncClient`` served about a seventh of the requests/s of this client and added about
0.5 ms more per request (``benchmarks/gateway_bench.py --fake``).

What it handles: Content-Length, chunked and read-until-close bodies; keep-alive reuse (LIFO per
origin, dropped before a typical server's 5 s idle timeout); a kept-alive connection the server
closed just as it was reused is retried once on a fresh connection, which is safe because no
response byte arrived. Everything that fails before the response headers is
``UpstreamUnreachable`` so the gateway can try another replica.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections import deque
from typing import NamedTuple

import httptools

from corral.gateway import deadlines
from corral.gateway.transport import Headers, UpstreamError, UpstreamResponse, UpstreamUnreachable

_READ_SIZE = 65536
_NO_BODY_STATUSES = frozenset({204, 304})


class _Origin(NamedTuple):
    host: str
    port: int
    tls: bool
    authority: str


class _Stale(Exception):
    """A reused connection failed before any response byte: the server had already closed it."""


class _ResponseState:
    """Receives httptools' callbacks for one response."""

    __slots__ = (
        "buffered",
        "chunks",
        "complete",
        "headers",
        "headers_done",
        "interim",
        "keep_alive",
        "parser",
        "status",
        "until_eof",
    )

    def __init__(self) -> None:
        self.headers: Headers = []
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.headers_done = False
        self.interim = False
        self.complete = False
        self.keep_alive = False
        self.until_eof = False
        self.status = 0
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            self.interim = True
            self.headers = []
            return
        self.headers_done = True
        self.status = status
        # Neither a length nor chunked framing: the body ends when the server closes.
        framed = any(name in (b"content-length", b"transfer-encoding") for name, _ in self.headers)
        self.until_eof = not framed and self.status not in _NO_BODY_STATUSES

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete = True
        # Only valid now: llhttp resets its flags for the next message once this returns.
        self.keep_alive = bool(self.parser.should_keep_alive())


class _Connection(asyncio.Protocol):
    """One upstream connection. Bytes go straight from the socket into the response parser
    (no stream buffer in between); the request task waits on one future for "more happened"."""

    __slots__ = (
        "closed",
        "eof",
        "failure",
        "idle_since",
        "origin",
        "paused",
        "received",
        "state",
        "transport",
        "waiter",
    )

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.state: _ResponseState | None = None  # the response being read, if any
        self.waiter: asyncio.Future[None] | None = None
        self.failure: Exception | None = None  # a parse error or the socket's error
        self.received = False  # a byte of the current response arrived
        self.eof = False
        self.closed = False
        self.paused = False
        self.idle_since = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is None:
            # Bytes nobody asked for (a server talking out of turn): never reuse this one.
            self.failure = ConnectionResetError("unexpected data from the upstream")
            self.close()
            return
        self.received = True
        try:
            state.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.failure = error
        if state.buffered > _READ_SIZE * 4 and self.transport is not None:
            # The consumer (a slow client) lags: stop reading until it catches up.
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is not None and self.failure is None:
            self.failure = exc
        self._wake()

    # the request side
    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, within_s: float) -> bool:
        """Wait until something happens on the connection; False after ``within_s`` seconds."""
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        timer = deadlines.arm(within_s, functools.partial(_time_out, waiter))
        try:
            await waiter
        except TimeoutError:
            return False
        finally:
            timer.cancel()
            self.waiter = None
        return True

    @property
    def usable(self) -> bool:
        return not (self.closed or self.eof or self.failure is not None) and (
            self.transport is not None and not self.transport.is_closing()
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class HttpTransport:
    """Pooled HTTP/1.1 client implementing ``UpstreamTransport``.

    ``header_timeout`` bounds the wait for response headers (a non-streamed completion only
    answers once it is generated, so keep it generous); ``read_timeout`` bounds each wait for
    more body.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        header_timeout: float = 300.0,
        read_timeout: float = 300.0,
        max_idle_per_origin: int = 64,
        idle_expiry: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._header_timeout = header_timeout
        self._read_timeout = read_timeout
        self._max_idle = max_idle_per_origin
        self._idle_expiry = idle_expiry
        self._ssl_context = ssl_context
        self._idle: dict[_Origin, deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._locations: dict[str, tuple[_Origin, str]] = {}

    async def send(self, method: str, url: str, headers: Headers, body: bytes) -> UpstreamResponse:
        origin, target = self._locate(url)
        request = _encode_request(method, target, origin.authority, headers, body)
        connection = self._take_idle(origin)
        if connection is not None:
            try:
                return await self._exchange(connection, request)
            except _Stale:
                pass  # fall through to a fresh connection
        connection = await self._connect(origin)
        try:
            return await self._exchange(connection, request)
        except _Stale as error:
            raise UpstreamUnreachable(
                f"{origin.authority} closed the connection before responding"
            ) from error.__cause__

    async def aclose(self) -> None:
        for connection in list(self._open):
            self._drop(connection)
        self._idle.clear()

    def _locate(self, url: str) -> tuple[_Origin, str]:
        located = self._locations.get(url)
        if located is None:
            located = _parse_url(url)
            if len(self._locations) > 4096:
                self._locations.clear()
            self._locations[url] = located
        return located

    async def _connect(self, origin: _Origin) -> _Connection:
        tls = None
        if origin.tls:
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()  # costly: made once, on demand
            tls = self._ssl_context
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
        except TimeoutError as error:
            raise UpstreamUnreachable(
                f"cannot connect to {origin.authority}: no answer within {self._connect_timeout}s"
            ) from error
        except OSError as error:
            raise UpstreamUnreachable(f"cannot connect to {origin.authority}: {error}") from error
        self._open.add(connection)
        return connection

    async def _exchange(self, connection: _Connection, request: bytes) -> UpstreamResponse:
        state = connection.state = _ResponseState()
        connection.received = False
        authority = connection.origin.authority
        try:
            assert connection.transport is not None
            connection.transport.write(request)
            while not state.headers_done:
                failure = connection.failure
                if failure is not None:
                    if isinstance(failure, httptools.HttpParserError):
                        self._drop(connection)
                        raise UpstreamUnreachable(
                            f"{authority} sent a malformed HTTP response: {failure}"
                        ) from failure
                    raise failure
                if connection.closed or connection.eof:
                    raise ConnectionResetError("connection closed by the upstream")
                if not await connection.wait(self._header_timeout):
                    self._drop(connection)
                    raise UpstreamUnreachable(
                        f"{authority} sent no response headers within {self._header_timeout}s"
                    )
        except OSError as error:
            self._drop(connection)
            if not connection.received:
                raise _Stale() from error
            raise UpstreamUnreachable(
                f"{authority} failed while sending headers: {error}"
            ) from error
        except asyncio.CancelledError:
            # The caller gave up (a per-try timeout): a late response must not be read as the next.
            self._drop(connection)
            raise
        body = _Body(self, connection, state)
        return UpstreamResponse(state.status, state.headers, body, body.aclose)

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        oldest_allowed = asyncio.get_running_loop().time() - self._idle_expiry
        while idle:
            connection = idle.pop()
            if connection.idle_since > oldest_allowed and connection.usable:
                return connection
            self._drop(connection)
        return None

    def _release(self, connection: _Connection, state: _ResponseState) -> None:
        connection.state = None
        if not state.keep_alive or state.until_eof or not connection.usable:
            self._drop(connection)
            return
        now = asyncio.get_running_loop().time()
        connection.idle_since = now
        idle = self._idle.setdefault(connection.origin, deque())
        while idle and idle[0].idle_since <= now - self._idle_expiry:
            self._drop(idle.popleft())
        if len(idle) >= self._max_idle:
            self._drop(connection)
            return
        idle.append(connection)

    def _drop(self, connection: _Connection) -> None:
        self._open.discard(connection)
        connection.state = None
        connection.close()


class _Body:
    """The response body as an async iterator; gives its connection back once fully read."""

    __slots__ = ("_connection", "_state", "_transport")

    def __init__(
        self, transport: HttpTransport, connection: _Connection, state: _ResponseState
    ) -> None:
        self._transport = transport
        self._connection: _Connection | None = connection
        self._state = state
        if state.complete:
            self._finish()

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        state = self._state
        while True:
            chunks = state.chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                state.buffered = 0
                return data
            if self._connection is None:
                raise StopAsyncIteration
            await self._read_more(self._connection)

    async def aclose(self) -> None:
        connection = self._connection
        if connection is not None:
            # Abandoned mid-body: the connection holds unread bytes and cannot be reused.
            self._connection = None
            self._transport._drop(connection)

    async def _read_more(self, connection: _Connection) -> None:
        state = self._state
        authority = connection.origin.authority
        failure = connection.failure
        if failure is not None:
            await self.aclose()
            if isinstance(failure, httptools.HttpParserError):
                raise UpstreamError(f"{authority} sent a malformed body: {failure}") from failure
            raise UpstreamError(f"{authority} failed mid-body: {failure}") from failure
        if state.complete:
            self._finish()
            return
        if connection.closed or connection.eof:
            if state.until_eof:
                state.complete = True
                self._finish()
                return
            await self.aclose()
            raise UpstreamError(f"{authority} closed the connection mid-body")
        if not await connection.wait(self._transport._read_timeout):
            await self.aclose()
            raise UpstreamError(f"{authority} sent no data for {self._transport._read_timeout}s")
        if state.complete and not state.chunks:
            self._finish()

    def _finish(self) -> None:
        connection = self._connection
        if connection is not None:
            self._connection = None
            self._transport._release(connection, self._state)
            # The state and its parser point at each other: without this every response would
            # leave a reference cycle for the garbage collector (hundreds a second at load).
            del self._state.parser


def _encode_request(
    method: str, target: str, authority: str, headers: Headers, body: bytes
) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nhost: {authority}\r\ncontent-length: {len(body)}\r\n"
    parts = [head.encode("latin-1")]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts += (b"\r\n", body)
    return b"".join(parts)


def _parse_url(url: str) -> tuple[_Origin, str]:
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("http", "https"):
        raise ValueError(f"upstream URL {url!r}: must start with http:// or https://")
    slash = rest.find("/")
    authority, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    host, port = authority, 443 if scheme == "https" else 80
    if authority.startswith("["):
        bracket = authority.find("]")
        host, after = authority[1:bracket], authority[bracket + 1 :]
        if after.startswith(":"):
            port = _port(after[1:], url)
    elif ":" in authority:
        host, _, port_text = authority.rpartition(":")
        port = _port(port_text, url)
    if not host:
        raise ValueError(f"upstream URL {url!r}: has no host")
    return _Origin(host, port, scheme == "https", authority), target


def _port(text: str, url: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"upstream URL {url!r}: port {text!r} is not 1..65535")
    return int(text)
