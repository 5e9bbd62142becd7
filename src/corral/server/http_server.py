"""corral's HTTP/1.1 server: the ASGI host of the one listening port of ``corral serve``.

It sits under :class:`corral.server.http.Dispatcher` and replaced uvicorn there because the
port's hot path is the gateway's, where every microsecond per request counts: uvicorn's
per-request work (a regex over every response header, the status line and headers written
apart from the body, a proxy-headers middleware frame, a keep-alive timer armed and cancelled
per request) was about a sixth of a saturated gateway's CPU. What this server does instead:

- one ``httptools`` parser per connection and a plain ``asyncio.Protocol`` (uvloop's fast
  path); the ASGI scope built once per request with the fields the apps read;
- the response head is held until the first body message and written with it (one ``send``
  system call for a whole answer); a head the app sends alone is written on the next loop
  turn anyway, so a watch or event stream still opens at once;
- an answer the app sends without a length gets a ``Content-Length`` when its first body
  message is also its last (an answer screened whole before it is sent), and is chunked
  otherwise;
- idle keep-alive connections (75 s) and request heads that never finish (slow-loris, 30 s,
  answered 408) are swept once a second instead of by a timer per request;
- ``X-Forwarded-For``/``-Proto`` believed only from a loopback peer (a local reverse proxy), the
  rightmost untrusted address becoming the client, as uvicorn did by default;
- pipelined requests answered in order, request bodies buffered up to 64 KiB before reading
  pauses, writes that the peer does not take pausing the app in ``send``;
- graceful stop: stop accepting, close idle connections, let requests in flight finish within
  the grace period, then cut the rest (long-lived watch streams) with one log line.

What it does not do: TLS (terminate it in front), HTTP/2, WebSocket (an upgrade request is
answered as plain HTTP/1.1 and the connection closed after it), lifespan (the composition root
starts and closes the apps itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast

import httptools

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

KEEP_ALIVE_TIMEOUT_S = 75.0
"""An idle keep-alive connection is closed after this long. Longer than the idle expiry of
common clients (httpx and the openai client: 5 s) and load balancers (60 s), so the client side
closes first: a server that closes first races a request sent on the closing connection, and
the client sees a reset (a 502 behind a load balancer). nginx uses the same 75 s."""
HEAD_TIMEOUT_S = 30.0
"""A request head (request line and headers) must be complete this long after it started."""
MAX_HEAD_BYTES = 64 * 1024
"""Request line plus headers beyond this are refused with 431."""
BODY_HIGH_WATER = 64 * 1024
"""Request body bytes buffered ahead of the app before the connection stops reading."""
_TRUSTED_PROXIES = frozenset({"127.0.0.1", "::1"})
_ASGI = {"version": "3.0", "spec_version": "2.3"}
_NO_BODY_STATUSES = frozenset({204, 304})

_log = logging.getLogger("corral.http")


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


_STATUS_LINES = {status.value: _status_line(status.value) for status in HTTPStatus}


_CHECKED_NAMES: set[bytes] = set()
"""Response header names already found free of ':' (an app sends few distinct names)."""


def _check_name(name: bytes) -> None:
    if b":" in name or not name:
        raise RuntimeError(f"invalid response header name {name!r}")
    if len(_CHECKED_NAMES) < 1024:
        _CHECKED_NAMES.add(name)


def _refuse_header_breaks(headers: Iterable[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
            raise RuntimeError(f"invalid response header {name!r}: {value!r}")
    raise RuntimeError("invalid response head: a line break the server did not write")


def _plain_response(status: int, text: str) -> bytes:
    body = text.encode()
    return (
        _status_line(status)
        + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


class HttpServer:
    """Serves ``app`` on listening sockets; ``should_exit = True`` starts the graceful stop."""

    def __init__(
        self,
        app: App,
        *,
        graceful_shutdown_s: float = 3.0,
        keep_alive_timeout_s: float = KEEP_ALIVE_TIMEOUT_S,
        head_timeout_s: float = HEAD_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.graceful_shutdown_s = graceful_shutdown_s
        self.keep_alive_timeout_s = keep_alive_timeout_s
        self.head_timeout_s = head_timeout_s
        self.started = False
        self.listening = asyncio.Event()  # set with ``started``, for those who await it
        self.connections: set[_Connection] = set()
        self.running: set[asyncio.Task[None]] = set()
        self.date_header = b""
        self.stopping = False
        self._exit: asyncio.Event | None = None
        self._should_exit = False

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if value and self._exit is not None:
            self._exit.set()

    def tasks(self) -> list[asyncio.Task[None]]:
        """The request tasks still running (after a stop: those being cut)."""
        return list(self.running)

    async def serve(self, sockets: list[socket.socket]) -> None:
        """Listen on ``sockets`` (bound, not yet listening) until ``should_exit``."""
        loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        if self._should_exit:
            self._exit.set()
        self._refresh_date()
        servers = [
            await loop.create_server(lambda: _Connection(self), sock=sock, backlog=2048)
            for sock in sockets
        ]
        self.started = True
        self.listening.set()
        sweeper = asyncio.create_task(self._sweep(), name="http idle sweeper")
        try:
            await self._exit.wait()
        finally:
            sweeper.cancel()
            await self._shutdown(servers)

    def _refresh_date(self) -> None:
        self.date_header = b"date: " + formatdate(usegmt=True).encode() + b"\r\n"

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            self._refresh_date()
            now = loop.time()
            for connection in list(self.connections):
                connection.close_if_idle(now)

    async def _shutdown(self, servers: list[asyncio.Server]) -> None:
        self.stopping = True
        for server in servers:
            server.close()
        for connection in list(self.connections):
            connection.close_if_idle(None)
        if self.running:
            await asyncio.wait(set(self.running), timeout=self.graceful_shutdown_s)
        cut = self.tasks()
        if cut:
            _log.info(
                "closed %d open request(s) (watch streams) after the shutdown grace period",
                len(cut),
            )
            for task in cut:
                task.cancel()
        for connection in list(self.connections):
            connection.abort()
        for server in servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and runs one ``_Cycle`` at a time."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.cycle: _Cycle | None = None  # the request being answered
        self.parsing: _Cycle | None = None  # the request whose body is arriving
        self.pipeline: deque[_Cycle] = deque()  # parsed requests waiting their turn
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.head_started: float | None = None  # set while a request head is incomplete
        self.forwarded = False
        self.upgrade = False
        self.last_active = self.loop.time()
        self.reading_paused = False
        self.writing_paused = False
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.closed = False
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport has Transport's methods without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.client = _address(transport.get_extra_info("peername"))
        self.local = _address(transport.get_extra_info("sockname"))
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.upgrade = True  # answered as plain HTTP/1.1; nothing after it is read
        except httptools.HttpParserError as error:
            cause = error.__context__
            if isinstance(cause, _HeadTooLarge):
                self._refuse(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
            elif isinstance(cause, UnicodeDecodeError):
                self._refuse(400, "request target is not ASCII")
            else:
                self._refuse(400, f"invalid HTTP request: {error}")

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 (asyncio's signature)
        self.closed = True
        self.server.connections.discard(self)
        for cycle in (self.cycle, self.parsing, *self.pipeline):
            if cycle is not None:
                cycle.disconnected = True
                cycle.wake()
        self.pipeline.clear()
        self._wake_drainers()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_drainers()

    # --- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_size = 0
        self.forwarded = False
        self.head_started = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)
        if self.head_size > MAX_HEAD_BYTES:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEAD_BYTES:
            raise _HeadTooLarge
        name = name.lower()
        if name.startswith(b"x-forwarded-"):
            self.forwarded = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_started = None
        parser = self.parser
        parsed = httptools.parse_url(self.url)
        raw_path: bytes = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        method = parser.get_method().decode("ascii")
        scope: Scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": parser.get_http_version(),
            "server": self.local,
            "client": self.client,
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "headers": self.headers,
            # No "state": nothing here runs a lifespan that fills it, and Starlette creates
            # it on first use.
        }
        if self.forwarded and self.client is not None and self.client[0] in _TRUSTED_PROXIES:
            _apply_forwarded(scope, self.headers)
        keep_alive = bool(parser.should_keep_alive()) and not self.upgrade
        cycle = _Cycle(self, scope, keep_alive, method == "HEAD")
        if (b"expect", b"100-continue") in self.headers:
            cycle.expect_continue = True
        self.parsing = cycle
        if self.cycle is None:
            self.start(cycle)
        else:
            self.pipeline.append(cycle)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is None or cycle.response_complete:
            return  # the answer went out already: the rest of the body is not wanted
        cycle.body += body
        if len(cycle.body) > BODY_HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.parsing
        if cycle is not None:
            cycle.more_body = False
            cycle.wake()
        self.parsing = None

    # --- running requests -------------------------------------------------------------------

    def start(self, cycle: _Cycle) -> None:
        self.cycle = cycle
        task = cycle.task = self.loop.create_task(cycle.run())
        running = self.server.running
        running.add(task)
        task.add_done_callback(running.discard)

    def response_done(self, cycle: _Cycle) -> None:
        if self.cycle is not cycle:
            return
        self.cycle = None
        self.last_active = self.loop.time()
        if not cycle.keep_alive or self.server.stopping:
            self.close()
            return
        if self.pipeline:
            self.start(self.pipeline.popleft())
        self.resume_reading()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    async def drain(self) -> None:
        waiter = self.loop.create_future()
        self.drain_waiters.append(waiter)
        await waiter

    def _wake_drainers(self) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self, now: float | None) -> None:
        """Close when no request runs and the connection idled too long (``now`` None: at all);
        a request head still incomplete after the head timeout is answered 408."""
        if self.cycle is not None or self.pipeline or self.closed:
            return
        if self.head_started is not None:
            if now is not None and now - self.head_started > self.server.head_timeout_s:
                self._refuse(408, "the request head did not arrive in time")
            return
        if now is None or now - self.last_active > self.server.keep_alive_timeout_s:
            self.close()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request that never reached the app, and close the connection."""
        if self.cycle is None or not self.cycle.response_started:
            self.write(_plain_response(status, reason))
        self.close()


class _HeadTooLarge(Exception):
    pass


class _Cycle:
    """One request and its response: the ``receive`` and ``send`` the app gets."""

    __slots__ = (
        "body",
        "body_delivered",
        "chunked",
        "connection",
        "disconnected",
        "expect_continue",
        "head",
        "is_head",
        "keep_alive",
        "length_open",
        "more_body",
        "remaining",
        "response_complete",
        "response_started",
        "scope",
        "task",
        "waiter",
    )

    def __init__(self, connection: _Connection, scope: Scope, keep_alive: bool, is_head: bool):
        self.connection = connection
        self.scope = scope
        self.keep_alive = keep_alive
        self.is_head = is_head
        self.body = b""
        self.more_body = True
        self.body_delivered = False
        self.disconnected = False
        self.expect_continue = False
        self.response_started = False
        self.response_complete = False
        self.head: bytes | None = None  # the response head, until it is written
        self.chunked = False
        # No length given and none decided yet: the head waits for the first body message,
        # which settles it (see _frame).
        self.length_open = False
        self.remaining: int | None = None  # Content-Length bytes still to send
        self.task: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None

    @property
    def whole_body_buffered(self) -> bool:
        """The request body arrived whole and is unread: ``receive()`` answers without waiting
        (the gateway then spares itself the body-read deadline)."""
        return not self.more_body and not self.body_delivered and not self.disconnected

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self.waiter = self.connection.loop.create_future()
        await waiter

    async def run(self) -> None:
        connection = self.connection
        scope = self.scope
        try:
            await connection.server.app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            connection.abort()
            raise
        except Exception:
            _log.exception("%s %s failed", *_what(scope))
            if not self.response_started and not self.disconnected:
                self.keep_alive = False
                connection.write(_plain_response(500, "Internal Server Error"))
                self._finish()
            else:
                connection.close()
        else:
            if not self.response_complete and not self.disconnected:
                if not self.response_started:
                    _log.error("%s %s: the app returned without answering", *_what(scope))
                    self.keep_alive = False
                    connection.write(_plain_response(500, "Internal Server Error"))
                    self._finish()
                else:
                    _log.error("%s %s: the app returned mid-response", *_what(scope))
                    connection.close()
        finally:
            if connection.cycle is self and self.disconnected:
                connection.cycle = None

    async def receive(self) -> Message:
        if self.body_delivered:
            # ASGI: once the body is read, receive() waits for the client to go away.
            if not self.disconnected and not self.response_complete:
                await self._wait()
            return {"type": "http.disconnect"}
        if self.expect_continue:
            self.expect_continue = False
            if not self.response_started:
                self.connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while self.more_body and not self.body and not self.disconnected:
            self.connection.resume_reading()
            await self._wait()
        if self.disconnected:
            return {"type": "http.disconnect"}
        body, self.body = self.body, b""
        more_body = self.more_body
        if not more_body:
            self.body_delivered = True
        else:
            self.connection.resume_reading()
        return {"type": "http.request", "body": body, "more_body": more_body}

    async def send(self, message: Message) -> None:
        connection = self.connection
        if connection.writing_paused and not self.disconnected:
            await connection.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            self._start(message)
            return
        if self.response_complete:
            raise RuntimeError(f"{kind!r} sent after the response was complete")
        if kind != "http.response.body":
            raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        head = self.head
        if head is not None:
            self.head = None
            if self.length_open:
                head = self._frame(head, None if more_body else len(body))
        if self.is_head:
            data = b""
        elif self.chunked:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            data = body
            if self.remaining is not None:
                self.remaining -= len(body)
                if self.remaining < 0:
                    raise RuntimeError("response body longer than its Content-Length")
        if head is not None:
            data = head + data
        if data:
            connection.write(data)
        if not more_body:
            if self.remaining and not self.is_head:
                raise RuntimeError("response body shorter than its Content-Length")
            self._finish()

    def _start(self, message: Message) -> None:
        status: int = message["status"]
        status_line = _STATUS_LINES.get(status) or _status_line(status)
        parts = [status_line, self.connection.server.date_header]
        length_given = False
        connection_header = False
        headers = message.get("headers", ())
        if type(headers) is not list:  # any iterable (ASGI): it is walked twice below
            headers = list(headers)
        for name, value in headers:
            name = name.lower()
            if name == b"content-length":
                length_given = True
                self.remaining = int(value)
            elif name == b"transfer-encoding":
                if value.lower() == b"chunked":
                    self.chunked = True
            elif name == b"connection":
                connection_header = True
                if b"close" in value.lower():
                    self.keep_alive = False
            parts += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not connection_header:
            parts.append(b"connection: close\r\n")
        if (
            not length_given
            and not self.chunked
            and not self.is_head
            and status not in _NO_BODY_STATUSES
            and status >= 200
        ):
            self.length_open = True
        if self.chunked:
            self.remaining = None
        parts.append(b"\r\n")
        head = b"".join(parts)
        # Every line break the head may hold is one this method wrote: ``parts`` is the status
        # line, the date line (empty before the first tick), four pieces per header (one line),
        # one piece per header line added here, and the blank line. A CR or LF inside a name or
        # value is one more, counted by two scans in C instead of four tests per header.
        lines = len(parts) - 3 * len(headers) - (0 if parts[1] else 1)
        if head.count(b"\n") != lines or head.count(b"\r") != lines:
            _refuse_header_breaks(headers)
        for name, _value in headers:
            if name not in _CHECKED_NAMES:
                _check_name(name)
        # An open head is kept without its blank line: _frame adds the framing header first.
        self.head = head[:-2] if self.length_open else head
        self.response_started = True
        self.expect_continue = False
        # Held for the first body message; written on the next loop turn if none comes first.
        self.connection.loop.call_soon(self._flush_head)

    def _flush_head(self) -> None:
        head = self.head
        if head is not None and not self.disconnected:
            self.head = None
            if self.length_open:
                head = self._frame(head, None)
            self.connection.write(head)

    def _frame(self, head: bytes, length: int | None) -> bytes:
        """Finish a head that names no length: ``length`` when the whole body is known (the
        first body message is also the last, as for an answer screened whole), else chunked."""
        self.length_open = False
        if length is not None:
            return head + b"content-length: %d\r\n\r\n" % length
        self.chunked = True
        return head + b"transfer-encoding: chunked\r\n\r\n"

    def _finish(self) -> None:
        self.response_complete = True
        self.wake()
        self.connection.response_done(self)


def _what(scope: Scope) -> tuple[str, str]:
    return scope["method"], scope["path"]


def _address(value: object) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


def _apply_forwarded(scope: Scope, headers: list[tuple[bytes, bytes]]) -> None:
    """What a loopback reverse proxy says of the client: the rightmost untrusted address."""
    for name, value in headers:
        if name == b"x-forwarded-proto":
            proto = value.decode("latin-1").strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto
        elif name == b"x-forwarded-for":
            hosts = [host.strip() for host in value.decode("latin-1").split(",") if host.strip()]
            for host in reversed(hosts):
                if host not in _TRUSTED_PROXIES:
                    scope["client"] = (host, 0)
                    break
